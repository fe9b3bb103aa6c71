"""The batch write path: set-based per chunk, with exactly the item-by-item path's outcome and ledger."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from compliance import services
from compliance.models import ConsentEvent, ConsentState, Contact, EventPersonalData, OutboxEntry
from compliance.services import (
    ConsentDecision,
    ConsentRejected,
    ContactIdentity,
    IdempotencyConflict,
    RecordResult,
)
from compliance.verification import ledger_verify

pytestmark = pytest.mark.ledger

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
ANA = ContactIdentity(email="ana@example.com", app_user_id="u-ana")
EVE = ContactIdentity(email="eve@example.com")
BO = ContactIdentity(phone="+4915100000001")
# The mixed batch written set-based: purposes, policy, contacts and earlier keys read, then a
# statement or two for each table (see test_a_chunks_queries_do_not_grow_with_its_items).
SET_BASED_QUERIES = 30
TABLES = (
    "compliance_contact",
    "compliance_consentevent",
    "compliance_consentstate",
    "compliance_outboxentry",
)


class _Undo(Exception):
    pass


def _sequences() -> dict[str, Any]:
    """Where the id sequences stand (PostgreSQL does not roll them back with the data)."""
    if connection.vendor != "postgresql":
        return {}
    with connection.cursor() as cursor:
        positions = {}
        for table in TABLES:
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
            sequence = cursor.fetchone()[0]
            cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
            positions[sequence] = cursor.fetchone()
        return positions


def _restore(positions: dict[str, Any]) -> None:
    with connection.cursor() as cursor:
        for sequence, (last_value, is_called) in positions.items():
            cursor.execute("SELECT setval(%s, %s, %s)", [sequence, last_value, is_called])


def _ledger() -> dict[str, list[tuple[Any, ...]]]:
    event_columns = [f.attname for f in ConsentEvent._meta.concrete_fields]
    return {
        "contacts": list(
            Contact.objects.order_by("id").values_list(
                "id", "email", "phone", "app_user_id", "zoho_id", "first_name", "last_name"
            )
        ),
        "events": list(ConsentEvent.objects.order_by("id").values_list(*event_columns)),
        # The personal values kept apart, in event order.
        "personal": list(EventPersonalData.objects.order_by("event_id").values_list("values", flat=True)),
        "states": list(
            ConsentState.objects.order_by("contact_id", "purpose_id").values_list(
                "contact_id",
                "purpose_id",
                "status",
                "frequency",
                "event_id",
                "occurred_at",
                "version",
                "head_hash",
                "refresh_due_at",
            )
        ),
        "outbox": list(
            OutboxEntry.objects.order_by("id").values_list("contact_id", "purpose_id", "event_id", "priority")
        ),
    }


def _described(outcome: services.Outcome) -> tuple[Any, ...]:
    if isinstance(outcome, RecordResult):
        return ("created" if outcome.created else "replayed", outcome.event.pk, outcome.event.version)
    if isinstance(outcome, IdempotencyConflict):
        return ("conflict", outcome.event.pk)
    return (type(outcome).__name__, outcome.field, outcome.message)


def _one_by_one(items: list[tuple[ContactIdentity, ConsentDecision]], client: Any) -> list[services.Outcome]:
    """Each item recorded on its own with consent_ingest: what the batch must give."""
    outcomes: list[services.Outcome] = []
    for identity, decision in items:
        try:
            outcomes.append(services.consent_ingest(identity=identity, decision=decision, api_client=client))
        except (ConsentRejected, IdempotencyConflict) as exc:
            outcomes.append(exc)
    return outcomes


def _written_and_undone(write: Callable[[], list[services.Outcome]]) -> tuple[Any, Any]:
    """Write, note the outcome and the whole ledger, then roll it all back.

    Event ids are given as their rank: on PostgreSQL the one-by-one path spends ids on
    inserts it rolls back (a replay is first tried as an insert), so the same events can
    get other ids. Contact ids appear in the hashes, so the batches below put the refused
    items that would create a contact last, where a spent id moves nothing.
    """
    positions = _sequences()
    try:
        with transaction.atomic():
            outcomes = write()
            ledger = _ledger()
            raise _Undo
    except _Undo:
        pass
    _restore(positions)
    rank = {row[0]: n for n, row in enumerate(ledger["events"], start=1)}
    ledger["events"] = [(rank[row[0]], *row[1:]) for row in ledger["events"]]
    ledger["states"] = [(*row[:4], rank.get(row[4]), *row[5:]) for row in ledger["states"]]
    ledger["outbox"] = [(*row[:2], rank.get(row[2]), row[3]) for row in ledger["outbox"]]
    described = []
    for outcome in outcomes:
        kind, *rest = _described(outcome)
        if kind in ("created", "replayed", "conflict"):
            rest[0] = rank[rest[0]]
        described.append((kind, *rest))
    return described, ledger


@pytest.fixture
def mixed_batch(decide, mobile_app) -> list[tuple[ContactIdentity, ConsentDecision]]:
    """Before: Eve exists with one profiling opt-in (key "seen"). Then a batch of every kind of item."""
    client, _ = mobile_app

    def at(minutes: int, key: str | None = None, **overrides: Any) -> ConsentDecision:
        if key:
            overrides["idempotency_key"] = key
        return decide(occurred_at=NOW - timedelta(minutes=minutes), **overrides)

    seen = at(90, "seen", purpose="profiling")
    services.consent_ingest(identity=EVE, decision=seen, api_client=client)
    ana_first = at(60, "ana-1")
    out = {"status": "opted_out", "policy_version": None}
    eve_phone = "+4915122223333"
    return [
        (ANA, ana_first),  # 0 new contact, new chain: created
        (ANA, at(30, "ana-2", **out)),  # 1 the chain's next version: created
        (ANA, at(80, "ana-3")),  # 2 older than 1: created, the state stays opted_out
        (ContactIdentity(email="eve@example.com", phone="+49 151 2222 3333"), at(20)),  # 3 Eve gains a phone
        (EVE, seen),  # 4 the earlier request again: replayed
        (EVE, at(10, "seen", purpose="profiling", **out)),  # 5 its key, other content: conflict
        (ANA, ana_first),  # 6 item 0 again, in the same chunk: replayed
        (ANA, at(60, "ana-1", **out)),  # 7 item 0's key, other content: conflict
        (ContactIdentity(email="not-an-email"), at(5)),  # 8 malformed identifier
        (ContactIdentity(email="ana@example.com", phone=eve_phone), at(5, "ana-4")),  # 9 Ana shares it
        (ContactIdentity(email="eve@example.com", app_user_id="u-ana"), at(5)),  # 10 two people
        (BO, at(15, purpose="phone_marketing")),  # 11 new contact by phone only
        (BO, at(14, purpose="profiling")),  # 12 found by that phone
        (ANA, at(5, source="customer_service")),  # 13 a source this client may not write
        (ContactIdentity(email="eve@example.com", app_user_id="u-ana"), at(5, purpose="pigeons")),  # 14
        (ContactIdentity(app_user_id="u-ana", last_name="Ruiz"), at(4, purpose="third_party_sharing")),
        (ContactIdentity(email="ana@example.com"), at(2, "ana-5", **out)),  # 16 the latest decision
        (ContactIdentity(phone=eve_phone), at(2, purpose="profiling")),  # 17 a phone two people share
        (ContactIdentity(email="zed@example.com"), at(5, purpose="pigeons")),  # 18 no contact left
        (ContactIdentity(email="new@example.com"), at(3, "seen")),  # 19 a new person, a used key
    ]


@pytest.mark.django_db
def test_a_mixed_batch_gives_the_ledger_the_one_by_one_path_gives(mixed_batch, mobile_app, same_secrets):
    client, _ = mobile_app
    with time_machine.travel(NOW, tick=False):
        set_based = _written_and_undone(
            lambda: services.consent_ingest_batch(items=mixed_batch, api_client=client)
        )
        one_by_one = _written_and_undone(lambda: _one_by_one(mixed_batch, client))

    assert set_based[0] == one_by_one[0]
    assert set_based[1] == one_by_one[1]
    assert [o[0] for o in set_based[0]] == [
        *["created"] * 4,
        "replayed",
        "conflict",
        "replayed",
        "conflict",
        "ConsentRejected",
        "created",
        "IdentityConflict",
        "created",
        "created",
        "ConsentForbidden",
        "IdentityConflict",
        "created",
        "created",
        *["ConsentRejected"] * 2,
        "conflict",
    ]
    refused = {i: set_based[0][i][1] for i in (8, 10, 13, 14, 17, 18)}
    assert refused == {
        8: "contact.email",
        10: "contact.email",
        13: "source",
        14: "contact.email",
        17: "contact.phone",
        18: "purpose",
    }
    assert set_based[0][6][1] == set_based[0][0][1], "the replay answers with item 0's event"
    assert set_based[0][4][1] == 1, "item 4 replays the event recorded before the batch"
    assert len(set_based[1]["events"]) == 1 + 9


@pytest.mark.django_db
def test_a_chunk_the_set_based_path_cannot_mirror_goes_one_by_one_with_the_same_ledger(
    mixed_batch, mobile_app, same_secrets
):
    """contact_resolve reads at most 10 contacts that share an identifier; a chunk naming a phone
    that 11 share could be answered otherwise in memory, so the whole chunk goes item by item."""
    client, _ = mobile_app
    shared = "+4915199990000"
    Contact.objects.bulk_create(Contact(phone=shared, app_user_id=f"u-shared-{n}") for n in range(11))
    items = [*mixed_batch, (ContactIdentity(phone=shared), mixed_batch[0][1])]
    with time_machine.travel(NOW, tick=False):
        batch = _written_and_undone(lambda: services.consent_ingest_batch(items=items, api_client=client))
        one_by_one = _written_and_undone(lambda: _one_by_one(items, client))

    assert batch == one_by_one
    assert batch[0][-1][:2] == ("ConsentRejected", "contact.phone")
    assert len(batch[1]["events"]) == 1 + 9


@pytest.mark.django_db
def test_a_set_based_batch_is_intact_and_follows_the_latest_decision(mixed_batch, mobile_app):
    client, _ = mobile_app
    with time_machine.travel(NOW, tick=False), CaptureQueriesContext(connection) as queries:
        services.consent_ingest_batch(items=mixed_batch, api_client=client)

    # Item by item, 20 items take well over a hundred queries.
    assert len(queries) <= SET_BASED_QUERIES, "the chunk was written set-based"

    ana = Contact.objects.get(app_user_id="u-ana")
    assert (ana.email, ana.phone, ana.last_name) == ("ana@example.com", "+4915122223333", "Ruiz")
    assert Contact.objects.get(email="eve@example.com").phone == "+4915122223333"
    assert not Contact.objects.filter(email__in=["zed@example.com", "new@example.com"]).exists()
    sms = ConsentState.objects.get(contact=ana, purpose__code="sms_marketing")
    assert (sms.version, sms.status, sms.event.idempotency_key) == (5, "opted_out", "ana-5")
    chain = list(ana.events.filter(purpose__code="sms_marketing").order_by("version"))
    assert [e.idempotency_key for e in chain] == ["ana-1", "ana-2", "ana-3", "ana-4", "ana-5"]
    assert [e.previous_status for e in chain] == ["", "opted_in", "opted_out", "opted_out", "opted_in"]
    assert [e.prev_hash for e in chain[1:]] == [e.hash for e in chain[:-1]]
    assert sms.head_hash == chain[-1].hash
    assert OutboxEntry.objects.filter(contact=ana, purpose__code="sms_marketing").count() == 4
    assert ledger_verify().ok


@pytest.mark.django_db
def test_a_chunks_queries_do_not_grow_with_its_items(decide, mobile_app):
    client, _ = mobile_app

    def queries_for(people: range) -> int:
        items = [
            (ContactIdentity(email=f"p{n}@example.com"), decide(purpose=purpose))
            for n in people
            for purpose in ("sms_marketing", "profiling")
        ]
        with CaptureQueriesContext(connection) as queries:
            outcomes = services.consent_ingest_batch(items=items, api_client=client)
        assert all(isinstance(o, RecordResult) and o.created for o in outcomes)
        return len(queries)

    # About a dozen for a chunk of any size: 2 purposes and 1 policy looked up; contacts and
    # earlier keys read; contacts, their first identity events (SQLite: 47 a statement), states,
    # events (SQLite: 45 a statement), outbox inserted; states updated; the chunk's savepoint
    # (the test's transaction is around it); the new contacts' identity personal data and events'
    # personal data inserted, and the erased identifiers looked up (issue 14: one of each a chunk);
    # the identifiers nobody had locked and read again (PostgreSQL: two a chunk).
    assert queries_for(range(3)) <= 18
    assert queries_for(range(3, 53)) <= 20


@pytest.mark.django_db
def test_chunks_commit_separately_and_see_each_others_contacts(decide, mobile_app):
    client, _ = mobile_app
    others = [
        (ContactIdentity(email=f"other{n}@example.com"), decide(purpose="profiling"))
        for n in range(services.BATCH_COMMIT_EVERY - 2)
    ]
    first_chunk = [(ANA, decide(purpose="sms_marketing")), *others, (ANA, decide(purpose="profiling"))]
    second_chunk = [
        (ANA, decide(purpose="phone_marketing")),
        (
            ContactIdentity(app_user_id="u-ana"),
            decide(purpose="sms_marketing", status="opted_out", policy_version=None),
        ),
    ]

    outcomes = services.consent_ingest_batch(items=first_chunk + second_chunk, api_client=client)

    anas = [o.event for o in outcomes if isinstance(o, RecordResult) and o.event.contact.email == ANA.email]
    assert [e.contact_id for e in anas] == [Contact.objects.get(email=ANA.email).pk] * 4
    assert [e.version for e in anas] == [1, 1, 1, 2]
    assert Contact.objects.count() == 1 + len(others)


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_over_the_same_chains_lose_nothing_and_record_each_key_once(decide, mobile_app):
    """Four writers send overlapping batches (the same people, chains and some identical requests)."""
    client, _ = mobile_app
    people = [ContactIdentity(email=f"busy{n}@example.com", app_user_id=f"u-busy{n}") for n in range(12)]
    purposes = ("sms_marketing", "profiling", "phone_marketing")
    shared = [(people[n], decide(purpose="profiling", idempotency_key=f"shared-{n}")) for n in range(12)]

    def batch(writer: int) -> list[tuple[ContactIdentity, ConsentDecision]]:
        items = []
        for n in range(60):
            status = "opted_in" if (writer + n) % 2 else "opted_out"
            decision = decide(
                purpose=purposes[(writer + n) % 3],
                status=status,
                policy_version="2026-03" if status == "opted_in" else None,
                idempotency_key=f"w{writer}-{n}",
            )
            items.append((people[(n * 7 + writer) % 12], decision))
        return items + shared

    writers = 4
    start = threading.Barrier(writers)

    def write(writer: int) -> list[services.Outcome]:
        start.wait()
        try:
            return services.consent_ingest_batch(items=batch(writer), api_client=client)
        finally:
            connection.close()

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(write, range(writers)))

    assert all(isinstance(o, RecordResult) for outcomes in results for o in outcomes)
    created = [o for outcomes in results for o in outcomes if isinstance(o, RecordResult) and o.created]
    assert len(created) == writers * 60 + 12 == ConsentEvent.objects.count()
    assert ConsentEvent.objects.filter(idempotency_key__startswith="shared-").count() == 12
    assert Contact.objects.count() == 12
    for state in ConsentState.objects.all():
        versions = list(
            ConsentEvent.objects.filter(contact=state.contact_id, purpose=state.purpose_id)
            .order_by("version")
            .values_list("version", flat=True)
        )
        assert versions == list(range(1, state.version + 1))
    assert ledger_verify().ok


@pytest.mark.postgres  # (SQLite lets one writer in at a time: nothing changes between read and write)
@pytest.mark.django_db(transaction=True)
def test_a_batch_fills_in_only_what_it_brings_and_keeps_a_concurrent_change(decide, mobile_app):
    """The sync links Eve to her CRM record while a batch that gives her last name is under way:
    the batch read Eve before the link committed, and must not write its stale copy back."""
    client, _ = mobile_app
    services.consent_ingest(identity=EVE, decision=decide(), api_client=client)

    def the_sync_links_eve() -> None:
        Contact.objects.filter(email="eve@example.com").update(zoho_id="5725767000000412001")

    with _open_in_another_session(the_sync_links_eve) as waited_for:
        identity = ContactIdentity(email="eve@example.com", last_name="Stone")
        services.consent_ingest_batch(items=[(identity, decide(purpose="profiling"))], api_client=client)
        assert waited_for(), "the batch never waited for the sync's row lock"

    eve = Contact.objects.get(email="eve@example.com")
    assert (eve.last_name, eve.zoho_id) == ("Stone", "5725767000000412001")


@pytest.mark.postgres  # (SQLite lets one writer in at a time)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "newcomer",
    [
        # A phone number may be shared: no unique index would stop a second contact.
        ContactIdentity(phone="+4915100000077"),
        # An address is unique: a second batch met the first's row and did its chunk again.
        ContactIdentity(email="newcomer@example.com", phone="+4915100000078"),
    ],
    ids=["phone", "email"],
)
@pytest.mark.parametrize(
    "first, second", [("batch", "batch"), ("one", "batch"), ("batch", "one"), ("one", "one")]
)
def test_a_writer_waits_for_another_giving_the_same_new_person_and_records_on_its_contact(
    decide, mobile_app, caplog, newcomer, first, second
):
    client, _ = mobile_app
    caplog.set_level(logging.INFO, logger="compliance.services.consent_batch")

    def write(path: str, decision: ConsentDecision) -> services.Outcome:
        if path == "one":
            return services.consent_ingest(identity=newcomer, decision=decision, api_client=client)
        (outcome,) = services.consent_ingest_batch(items=[(newcomer, decision)], api_client=client)
        return outcome

    with _open_in_another_session(lambda: write(first, decide(purpose="profiling"))) as waited_for:
        outcome = write(second, decide(purpose="sms_marketing", status="opted_out", policy_version=None))
        assert waited_for(), "the second writer never waited for the first"

    (contact,) = Contact.objects.all()
    assert isinstance(outcome, RecordResult) and outcome.event.contact_id == contact.pk
    assert sorted(ConsentEvent.objects.values_list("contact_id", flat=True)) == [contact.pk] * 2
    assert "concurrent writer" not in caplog.text  # no chunk was done twice
    assert ledger_verify().ok


@contextmanager
def _open_in_another_session(work: Callable[[], object]) -> Iterator[Callable[[], bool]]:
    """`work` done in a transaction of another session, left open while the block runs: it
    commits once someone comes to wait for one of its locks (or after 30 s). The block gets a
    function that says whether someone did."""
    done = threading.Event()

    def run() -> bool:
        try:
            with transaction.atomic():
                work()
                done.set()
                return _blocked_someone_within(seconds=30)
        finally:
            done.set()
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        session = pool.submit(run)
        assert done.wait(timeout=30), "the other session never did its work"
        yield session.result


def _blocked_someone_within(*, seconds: float) -> bool:
    """Whether another session comes to wait for a lock this one holds (PostgreSQL) in time."""
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.01)
    return False
