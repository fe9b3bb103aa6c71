"""verify_ledger finds any edit, deletion, swap or truncation made behind the triggers' back."""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import multiprocessing.util
import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from compliance import canonical, chain, chain_fingerprint, ledger_guard, services
from compliance.models import ConsentEvent, Seal
from compliance.services import ConsentDecision, ContactIdentity
from compliance.verification import Verdict, ledger_verify

pytestmark = [pytest.mark.django_db, pytest.mark.ledger]

PURPOSES = ["sms_marketing", "phone_marketing", "profiling", "third_party_sharing"]
EMAILS = [f"person{n}@example.com" for n in range(4)]


def behind_the_triggers(*statements: tuple[str, list]) -> None:
    """Run SQL as someone with owner rights would: triggers off, change, triggers on."""
    ledger_guard.drop(connection)
    try:
        with connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
    finally:
        ledger_guard.install(connection)


def delete_events(ids: list[int]) -> None:
    """Delete events, unhooking the rows that point at them so constraints hold."""
    placeholders = ", ".join(["%s"] * len(ids))
    behind_the_triggers(
        (f"UPDATE compliance_outboxentry SET event_id = NULL WHERE event_id IN ({placeholders})", ids),
        (f"UPDATE compliance_consentstate SET event_id = NULL WHERE event_id IN ({placeholders})", ids),
        (f"DELETE FROM compliance_consentevent WHERE id IN ({placeholders})", ids),
    )


def record(email: str, purpose: str, status: str, key: str, minutes_ago: int) -> None:
    services.consent_ingest(
        identity=ContactIdentity(email=email),
        decision=ConsentDecision(
            purpose=purpose,
            status=status,
            source="web_portal",
            occurred_at=timezone.now() - timedelta(minutes=minutes_ago),
            idempotency_key=key,
            policy_version="2026-03" if status == "opted_in" else None,
            ip_address="198.51.100.4",
        ),
    )


class LedgerMachine(RuleBasedStateMachine):
    """Appends, withdraws, seals and tampers; verify_ledger must be ok exactly while untampered."""

    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        services.policy_version_publish(label="2026-03", effective_at="2026-03-01", text="notice")
        self.keys = itertools.count()
        self.minutes = itertools.count(100000, -1)
        self.hashes = itertools.count()
        self.written: dict[int, tuple] = {}

    def rows(self) -> dict[int, tuple]:
        columns = ("id", "hash", "prev_hash", *chain.EVENT_HASHED_FIELDS)
        return {row[0]: row for row in ConsentEvent.objects.values_list(*columns)}

    def remember_new_rows(self) -> None:
        for event_id, row in self.rows().items():
            self.written.setdefault(event_id, row)

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    def event_ids(self) -> list[int]:
        return list(ConsentEvent.objects.order_by("id").values_list("id", flat=True))

    @rule(email=st.sampled_from(EMAILS), purpose=st.sampled_from(PURPOSES))
    def append_opt_in(self, email: str, purpose: str) -> None:
        record(email, purpose, "opted_in", f"k{next(self.keys)}", next(self.minutes))
        self.remember_new_rows()

    @rule(email=st.sampled_from(EMAILS), purpose=st.sampled_from(PURPOSES))
    def withdraw(self, email: str, purpose: str) -> None:
        record(email, purpose, "opted_out", f"k{next(self.keys)}", next(self.minutes))
        self.remember_new_rows()

    @rule()
    def seal(self) -> None:
        services.ledger_seal()

    @precondition(lambda self: ConsentEvent.objects.exists())
    @rule(data=st.data(), column=st.sampled_from(["status", "ip_address", "occurred_at", "reason", "hash"]))
    def tamper_edit(self, data: st.DataObject, column: str) -> None:
        event = ConsentEvent.objects.get(pk=data.draw(st.sampled_from(self.event_ids())))
        new_value = {
            "status": "opted_in" if event.status != "opted_in" else "opted_out",
            "ip_address": "192.0.2.99",
            "occurred_at": event.occurred_at - timedelta(days=1),
            "reason": "edited later",
            "hash": f"{next(self.hashes):064x}",
        }[column]
        behind_the_triggers(
            (f"UPDATE compliance_consentevent SET {column} = %s WHERE id = %s", [new_value, event.pk])
        )

    @precondition(lambda self: ConsentEvent.objects.exists())
    @rule(data=st.data())
    def tamper_delete(self, data: st.DataObject) -> None:
        delete_events([data.draw(st.sampled_from(self.event_ids()))])

    @precondition(lambda self: ConsentEvent.objects.count() >= 2)
    @rule(data=st.data())
    def tamper_swap(self, data: st.DataObject) -> None:
        first, second = data.draw(
            st.lists(st.sampled_from(self.event_ids()), min_size=2, max_size=2, unique=True)
        )
        a, b = ConsentEvent.objects.get(pk=first), ConsentEvent.objects.get(pk=second)
        behind_the_triggers(
            ("UPDATE compliance_consentevent SET occurred_at = %s WHERE id = %s", [b.occurred_at, a.pk]),
            ("UPDATE compliance_consentevent SET occurred_at = %s WHERE id = %s", [a.occurred_at, b.pk]),
        )

    @precondition(lambda self: ConsentEvent.objects.exists())
    @rule(count=st.integers(min_value=1, max_value=3))
    def tamper_truncate_tail(self, count: int) -> None:
        delete_events(self.event_ids()[-count:])

    @invariant()
    def verify_agrees(self) -> None:
        # Tampered means: the events are no longer exactly what the write path wrote
        # (two swaps of the same pair, say, put everything back).
        tampered = self.rows() != self.written
        verdict = ledger_verify()
        assert verdict.ok == (not tampered), verdict.summary()
        if connection.vendor == "postgresql":
            # The database's quick check vouches exactly while untampered
            # (none of these tamperings needs a seal to show).
            assert database_vouches(parts=2) == (not tampered)


def database_vouches(*, parts: int) -> bool:
    """chain_fingerprint's quick check, on this connection, in `parts` parts (ids cut in ranges,
    chains by ranges of contacts), vouches for the ledger."""
    raw = connection.connection
    for statement in canonical.SESSION_SQL:
        raw.execute(statement)
    ids = list(ConsentEvent.objects.order_by("id").values_list("id", flat=True)) or [0]
    cuts = [0, *(ids[len(ids) * part // parts] for part in range(1, parts)), ids[-1]]
    answers = chain_fingerprint.vouched(
        chain_fingerprint.fingerprint_part(raw, events=(low, high), contacts=contacts)
        for (low, high), contacts in zip(
            itertools.pairwise(cuts), chain_fingerprint.contact_bounds(parts), strict=True
        )
    )
    if answers is None:
        return False
    assert sum(answer["events"] for answer in answers) == ConsentEvent.objects.count()
    return True


def test_verify_ledger_finds_every_kind_of_tampering():
    run_state_machine_as_test(
        LedgerMachine,
        settings=hypothesis_settings(max_examples=30, stateful_step_count=25, deadline=None),
    )


@pytest.fixture
def ledger(policy, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    for n in range(3):
        record(f"p{n}@example.com", "sms_marketing", "opted_in", f"fixture-{n}", 60 - n)
    with django_capture_on_commit_callbacks(execute=True):
        services.ledger_seal()
    record("p0@example.com", "sms_marketing", "opted_out", "fixture-late", 1)
    return settings.LEDGER_SEAL_LOG


def test_the_command_prints_one_line_and_exits_zero_when_intact(ledger, capsys):
    call_command("verify_ledger")
    out = capsys.readouterr().out.strip()
    assert out == "ledger intact: 4 events, 3 chains, 1 seals, 3 identity events verified"


def test_the_command_names_the_first_altered_event_and_fails(ledger):
    target = ConsentEvent.objects.order_by("id")[1]
    behind_the_triggers(
        ("UPDATE compliance_consentevent SET ip_address = %s WHERE id = %s", ["192.0.2.1", target.pk])
    )

    with pytest.raises(CommandError, match=f"event {target.pk} was altered"):
        call_command("verify_ledger")


def test_a_deleted_tail_event_shows_against_the_current_state(ledger):
    last = ConsentEvent.objects.order_by("-id").first()
    delete_events([last.pk])

    verdict = ledger_verify()
    assert not verdict.ok
    assert "newest events were deleted" in verdict.problem


def test_rewriting_sealed_history_with_recomputed_hashes_is_caught_by_the_seal(ledger):
    # A careful forger deletes a sealed event and fixes up the chain state, so
    # only the seal can tell.
    first = ConsentEvent.objects.order_by("id").first()
    delete_events([first.pk])
    behind_the_triggers(
        ("DELETE FROM compliance_consentstate WHERE contact_id = %s", [first.contact_id]),
    )

    verdict = ledger_verify()
    assert not verdict.ok
    assert "seal 1" in verdict.problem


def test_seals_rewritten_in_the_database_differ_from_the_copy_outside_it(ledger):
    seal = Seal.objects.get()
    behind_the_triggers(("DELETE FROM compliance_seal WHERE id = %s", [seal.pk]))

    assert ledger_verify().ok, "without the outside copy the database alone looks consistent"
    verdict = ledger_verify(seal_log=ledger)
    assert not verdict.ok
    assert "seal 1 is in the seal log" in verdict.problem
    with pytest.raises(CommandError, match="seal 1 is in the seal log"):
        call_command("verify_ledger", "--seal-log", str(ledger))


@pytest.mark.django_db(transaction=True)
def test_the_parallel_verifier_gives_the_serial_verdict_before_and_after_tampering(
    policy, settings, tmp_path
):
    # Outside a transaction on PostgreSQL, workers=2 forks processes that share the
    # snapshot; on SQLite it falls back to the single pass. Either way: same verdict.
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    for n in range(30):
        record(
            f"par{n % 7}@example.com",
            PURPOSES[n % 4],
            "opted_in" if n % 3 else "opted_out",
            f"par-{n}",
            500 - n,
        )
    services.ledger_seal()
    for n in range(30, 40):
        record(f"par{n % 7}@example.com", PURPOSES[n % 4], "opted_out", f"par-{n}", 500 - n)

    def verdicts() -> tuple[Verdict, Verdict]:
        return ledger_verify(workers=1), ledger_verify(workers=2)

    serial, parallel = verdicts()
    assert serial.ok and parallel == serial

    ids = list(ConsentEvent.objects.order_by("id").values_list("id", flat=True))
    behind_the_triggers(("UPDATE compliance_consentevent SET reason = %s WHERE id = %s", ["forged", ids[33]]))
    serial, parallel = verdicts()
    assert not serial.ok and f"event {ids[33]} was altered" in serial.problem
    assert parallel == serial

    delete_events([ids[5]])
    serial, parallel = verdicts()
    assert not serial.ok and parallel == serial


class _AfterFork:
    """Stands for kombu's broker pool, which multiprocessing's after-fork hooks close in a child."""

    def __init__(self, marks: Path) -> None:
        self.marks = marks


def _after_fork_mark(holder: _AfterFork) -> None:
    with holder.marks.open("a") as out:
        out.write(f"{os.getpid()}\n")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_parallel_workers_run_no_after_fork_hook_of_the_parents(policy, settings, tmp_path):
    # In a Celery worker (or anything that sent a task), kombu registers its broker pool with
    # multiprocessing's after-fork hooks; run in a verify worker, closing the inherited Redis
    # connection blocked on the parent's socket for good. The workers are forked without them.
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    for n in range(12):
        record(f"fork{n % 4}@example.com", PURPOSES[n % 2], "opted_in", f"fork-{n}", 300 - n)
    marks = tmp_path / "after-fork"
    holder = _AfterFork(marks)
    multiprocessing.util.register_after_fork(holder, _after_fork_mark)

    verdict = ledger_verify(workers=2)

    assert verdict.ok and verdict.events_checked == 12
    assert not marks.exists(), "a verify worker ran the parent's after-fork hooks"
    # And the hook is live: a multiprocessing child runs it.
    child = multiprocessing.get_context("fork").Process(target=os.getpid)
    child.start()
    child.join(10)
    assert marks.read_text().strip() == str(child.pid)


@pytest.mark.django_db(transaction=True)
def test_the_parallel_verifiers_int_keyed_heads_and_streamed_states_give_the_serial_verdict(
    policy, settings, tmp_path
):
    """The workers key each chain's head by one int and stream the state rows past the heads:
    a previous hash that is no hash, versions swapped within a chain, a state row that no longer
    matches its chain, a chain left without its state row and a state row whose chain is gone
    each give the single pass's verdict."""
    from compliance.models import ConsentState

    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    for n in range(36):
        record(
            f"chain{n % 6}@example.com",
            PURPOSES[n % 3],
            "opted_in" if n % 2 else "opted_out",
            f"cb-{n}",
            900 - n,
        )

    def verdicts() -> tuple[Verdict, Verdict]:
        return ledger_verify(workers=1), ledger_verify(workers=2)

    serial, parallel = verdicts()
    assert serial.ok and parallel == serial

    # A previous hash that is no hash at all, then one in capitals: judged as the text it is.
    target = ConsentEvent.objects.filter(version=2).order_by("id").first()
    for forged in ("not a hash", target.prev_hash.upper()):
        behind_the_triggers(
            ("UPDATE compliance_consentevent SET prev_hash = %s WHERE id = %s", [forged, target.pk])
        )
        serial, parallel = verdicts()
        assert not serial.ok and f"event {target.pk}" in serial.problem
        assert parallel == serial
    behind_the_triggers(
        ("UPDATE compliance_consentevent SET prev_hash = %s WHERE id = %s", [target.prev_hash, target.pk])
    )
    assert ledger_verify(workers=2).ok

    # Versions 1 and 2 of one chain swapped: the ids of the chain run backwards.
    first, second = ConsentEvent.objects.filter(version__lte=2).order_by(
        "contact_id", "purpose_id", "version"
    )[:2]
    assert (first.contact_id, first.purpose_id, first.version, second.version) == (
        second.contact_id,
        second.purpose_id,
        1,
        2,
    )
    swap = "UPDATE compliance_consentevent SET version = %s WHERE id = %s"
    behind_the_triggers((swap, [1000, first.pk]), (swap, [1, second.pk]), (swap, [2, first.pk]))
    serial, parallel = verdicts()
    assert not serial.ok and f"event {first.pk}" in serial.problem
    assert parallel == serial
    behind_the_triggers((swap, [1000, first.pk]), (swap, [2, second.pk]), (swap, [1, first.pk]))
    assert ledger_verify(workers=2).ok

    state = ConsentState.objects.filter(version__gt=1).order_by("contact_id", "purpose_id").first()
    behind_the_triggers(
        ("UPDATE compliance_consentstate SET version = version + 1 WHERE id = %s", [state.pk])
    )
    serial, parallel = verdicts()
    assert not serial.ok and "the chain ends at version" in serial.problem
    assert parallel == serial
    behind_the_triggers(
        ("UPDATE compliance_consentstate SET version = version - 1 WHERE id = %s", [state.pk])
    )

    # A chain's state row deleted: every chain's events are there, one state row is missing.
    deleted = ConsentState.objects.filter(version__gt=0).order_by("-contact_id", "-purpose_id").first()
    behind_the_triggers(("DELETE FROM compliance_consentstate WHERE id = %s", [deleted.pk]))
    serial, parallel = verdicts()
    assert not serial.ok and "have events but no current state" in serial.problem
    assert parallel == serial

    # Another chain's events all deleted while its state row stays.
    last = (
        ConsentEvent.objects.exclude(contact_id=deleted.contact_id, purpose_id=deleted.purpose_id)
        .order_by("-id")
        .first()
    )
    delete_events(
        list(
            ConsentEvent.objects.filter(contact_id=last.contact_id, purpose_id=last.purpose_id).values_list(
                "id", flat=True
            )
        )
    )
    serial, parallel = verdicts()
    assert not serial.ok and parallel == serial


# Content the canonical JSON must write exactly: quotes, backslashes, control characters,
# non-ASCII (accents, combining marks, emoji, U+2028), nulls, numbers, keys whose code point
# order is not PostgreSQL's (shorter first) order, timestamps with trailing zero microseconds.
FLAT_EVIDENCE: list[dict] = [
    {},
    {"double_opt_in_confirmed_at": "2026-03-02T10:00:00+00:00"},
    {"b": 1, "aa": 2, "ab": "x", "": "empty key"},
    {"é": "ü", "e": "u", "e\u0301": "combining", "😀": "emoji key", "z": None},
    {"yes": True, "no": False, "big": 12345678901234567890, "neg": -7, "half": 0.5, "one": 1.0, "tenth": 0.1},
    {'k"ey': "va\\lue\n\t\r\b\f", "ctrl": "\x01\x1f\x7f", "sep": "a\u2028b\u2029c"},
    {"opt_in_event": 12, "validity_months": 24},
]
# What hash version 2's JSON form could not have PostgreSQL write (its spacing inside containers,
# its digits for numbers Python writes with an exponent); version 3's text it writes as Python does.
OTHER_EVIDENCE: list[dict] = [
    {"form": {"fields": ["email", "sms"], "accepted": True}, "a": []},
    {"tiny": 1e-7},
]
USER_AGENTS = ['Mozilla/5.0 "quoted" \\ (X11)', "Ünïcödé ☃ 😀 \u2028 end", "tab\there\x01", ""]
REASONS = ["", "line one\nline two\r\n", 'said "stop" \\o/']


def record_varied(evidence: dict, n: int, minutes_ago: int) -> None:
    opt_in = n % 2 == 0
    occurred = timezone.now() - timedelta(minutes=minutes_ago)
    services.consent_ingest(
        identity=ContactIdentity(email=f"varied{n % 5}@example.com"),
        decision=ConsentDecision(
            purpose=PURPOSES[n % 4],
            status="opted_in" if opt_in else "opted_out",
            source="web_portal",
            # Every third one on a whole second, every third with trailing zero microseconds.
            occurred_at=occurred.replace(microsecond=[0, 120000, occurred.microsecond][n % 3]),
            idempotency_key=f"varied-{n}-ключ-🔑",
            policy_version="2026-03" if opt_in else None,
            ip_address=[None, "198.51.100.4", "2001:db8::1"][n % 3],
            user_agent=USER_AGENTS[n % len(USER_AGENTS)],
            evidence=evidence,
            reason=REASONS[n % len(REASONS)],
        ),
    )


@pytest.mark.postgres
def test_postgresql_hashes_an_event_exactly_as_the_ledger_does(policy, evidence_in_events):
    # given events of every kind of content, hashed by the write path (chain.event_hash)
    for n, evidence in enumerate(FLAT_EVIDENCE * 3 + OTHER_EVIDENCE):
        record_varied(evidence, n, 500 - n)

    # when PostgreSQL hashes the stored rows
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, hash, {chain.event_hash_sql()} FROM compliance_consentevent ORDER BY id")
        rows = cursor.fetchall()

    # then it gives the stored hash for every event, nested and exponent evidence included
    assert len(rows) == len(FLAT_EVIDENCE) * 3 + len(OTHER_EVIDENCE)
    assert [computed == stored for _id, stored, computed in rows] == [True] * len(rows)


@pytest.mark.django_db(transaction=True)
def test_the_parallel_verifier_judges_what_postgresql_hashes_differently(
    policy, settings, tmp_path, evidence_in_events
):
    # given a ledger of varied evidence, nested included
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    for n, evidence in enumerate(FLAT_EVIDENCE + OTHER_EVIDENCE + FLAT_EVIDENCE):
        record_varied(evidence, n, 500 - n)
    services.ledger_seal()
    serial, parallel = ledger_verify(workers=1), ledger_verify(workers=2)
    assert serial.ok and parallel == serial

    # when a nested value of evidence is changed (the database's quick check is not sure, and
    # Python's reference judges the rows it does not confirm)
    nested = ConsentEvent.objects.filter(evidence__form__accepted=True).get()
    changed = {**nested.evidence, "form": {**nested.evidence["form"], "accepted": False}}
    behind_the_triggers(
        ("UPDATE compliance_consentevent SET evidence = %s WHERE id = %s", [json.dumps(changed), nested.pk])
    )

    # then both name that event
    serial, parallel = ledger_verify(workers=1), ledger_verify(workers=2)
    assert not serial.ok and f"event {nested.pk} was altered" in serial.problem
    assert parallel == serial


@pytest.mark.postgres
def test_the_seals_digests_are_the_hashes_in_id_order_with_or_without_the_aggregates_sort(ledger):
    # (Unordered, the aggregate takes the primary key's range as it comes: in id order.)
    from compliance.verification import _seal_coverage, _seal_digests

    record("p1@example.com", "profiling", "opted_in", "fixture-later", 0)
    hashes = list(ConsentEvent.objects.order_by("id").values_list("id", "hash"))
    bounds = [(1, 0, hashes[1][0]), (2, hashes[1][0], hashes[-1][0])]
    expected = [
        (len(part), part[0][0], hashlib.sha256("".join(h for _id, h in part).encode()).hexdigest())
        for part in (hashes[:2], hashes[2:])
    ]
    assert _seal_digests(bounds, ordered=False) == expected
    assert _seal_digests(bounds, ordered=True) == expected
    # The seal's own digest agrees: the one sealed range, its first and last id.
    seal = Seal.objects.get()
    ((high, covered, first, digest),) = _seal_coverage([seal])
    assert (high, covered, first, digest) == (
        seal.last_event_id,
        seal.event_count,
        seal.first_event_id,
        seal.events_digest,
    )
