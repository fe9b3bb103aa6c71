"""A contact's identity history is part of the ledger: insert-only, hash-chained, verified."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from compliance import chain, services
from compliance.models import ConsentEvent, Contact, IdentityEvent
from compliance.services import ContactIdentity
from compliance.verification import ledger_verify
from tests.compliance.test_verify_ledger import behind_the_triggers

pytestmark = [pytest.mark.django_db, pytest.mark.ledger]


def _raw(sql: str, params: list | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


@pytest.fixture
def ana(decide) -> Contact:
    """Ana, known by email and app user id, who later gives her phone (filled in)."""
    services.consent_ingest(
        identity=ContactIdentity(email="ana@example.com", app_user_id="u-ana", first_name="Ana"),
        decision=decide(),
    )
    services.consent_ingest(
        identity=ContactIdentity(app_user_id="u-ana", phone="+4915112345678"),
        decision=decide(purpose="profiling", reason="phone given in the app"),
    )
    return Contact.objects.get(app_user_id="u-ana")


def test_a_new_contacts_first_identifiers_are_its_first_identity_event(decide):
    given = decide(ip_address="203.0.113.7")
    services.consent_ingest(
        identity=ContactIdentity(email="Bo@Example.com", first_name="Bo"),
        decision=given,
        api_client=services.api_client_create(name="app", sources=["mobile_app"])[0],
    )

    contact = Contact.objects.get()
    first = IdentityEvent.objects.get()
    assert (first.contact, first.version, first.kind) == (contact, 1, IdentityEvent.Kind.CREATED)
    assert (first.shown_email, first.shown_first_name, first.shown_phone) == ("bo@example.com", "Bo", None)
    assert (first.source, first.actor, first.shown_ip_address) == ("mobile_app", "api:app", "203.0.113.7")
    assert first.request_key == given.idempotency_key
    assert first.prev_hash == chain.GENESIS_HASH
    assert contact.identity_version == 1


def test_each_change_chains_to_the_one_before(ana):
    created, filled_in = ana.identity_events.order_by("version")
    assert [created.kind, filled_in.kind] == [IdentityEvent.Kind.CREATED, IdentityEvent.Kind.FILLED_IN]
    assert (created.shown_phone, filled_in.shown_phone) == (None, "+4915112345678")
    assert filled_in.shown_email == "ana@example.com", "an event holds every identifier after the change"
    assert filled_in.reason == "phone given in the app"
    assert filled_in.prev_hash == created.hash
    assert ana.identity_version == 2
    assert ledger_verify().ok


def test_recording_consent_for_known_identifiers_adds_no_identity_event(ana, decide):
    services.consent_ingest(identity=ContactIdentity(email="ana@example.com"), decision=decide())
    services.consent_ingest(
        identity=ContactIdentity(app_user_id="u-ana", email="ANA@example.com", phone="+49 151 12345678"),
        decision=decide(purpose="profiling"),
    )
    assert ana.identity_events.count() == 2


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE compliance_identityevent SET email = 'eve@example.com' WHERE id = %s",
        "UPDATE compliance_identityevent SET hash = 'x' WHERE id = %s",
        "DELETE FROM compliance_identityevent WHERE id = %s",
    ],
)
def test_the_database_refuses_to_change_or_remove_an_identity_event(ana, sql):
    event = ana.identity_events.get(version=1)
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(sql, [event.pk])
    assert IdentityEvent.objects.get(pk=event.pk).hash == event.hash


def test_a_loaded_identity_event_refuses_to_be_saved_again_or_deleted(ana):
    event = ana.identity_events.get(version=1)
    event.email = "eve@example.com"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        IdentityEvent.objects.filter(pk=event.pk).update(email="eve@example.com")


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_to_empty_the_identity_history(decide):
    services.consent_ingest(identity=ContactIdentity(email="ana@example.com"), decision=decide())
    table = IdentityEvent._meta.db_table
    statement = f"TRUNCATE {table} CASCADE" if connection.vendor == "postgresql" else f"DELETE FROM {table}"
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(statement)
    assert IdentityEvent.objects.count() == 1


def test_verify_ledger_names_a_tampered_identity_event(ana):
    event = ana.identity_events.get(version=1)
    behind_the_triggers(
        ("UPDATE compliance_identityevent SET email = %s WHERE id = %s", ["eve@example.com", event.pk])
    )

    verdict = ledger_verify()

    assert not verdict.ok
    assert verdict.problem == (
        f"identity event {event.pk} (contact {ana.pk}) was altered (its hash does not match its content)"
    )
    with pytest.raises(CommandError, match=f"identity event {event.pk} .* was altered"):
        call_command("verify_ledger")


def test_verify_ledger_finds_identifiers_changed_outside_the_ledger(ana):
    Contact.objects.filter(pk=ana.pk).update(email="someone-else@example.com")

    verdict = ledger_verify()

    assert not verdict.ok
    assert f"contact {ana.pk}: its identifiers differ from its newest identity event" in verdict.problem


def test_verify_ledger_finds_a_deleted_newest_identity_event(ana):
    newest = ana.identity_events.get(version=2)
    behind_the_triggers(("DELETE FROM compliance_identityevent WHERE id = %s", [newest.pk]))

    verdict = ledger_verify()

    assert not verdict.ok
    assert (
        f"contact {ana.pk}: the identity chain ends at version 1 but version 2 was recorded"
        in verdict.problem
    )


def test_verify_ledger_finds_a_contact_whose_identity_history_is_gone(ana):
    behind_the_triggers(("DELETE FROM compliance_identityevent WHERE contact_id = %s", [ana.pk]))

    verdict = ledger_verify()

    assert not verdict.ok
    assert f"contact {ana.pk} has no identity history" in verdict.problem


def test_verify_ledger_finds_an_identity_event_that_no_longer_chains(ana):
    newest = ana.identity_events.get(version=2)
    behind_the_triggers(
        ("UPDATE compliance_identityevent SET prev_hash = %s WHERE id = %s", ["0" * 64, newest.pk])
    )

    verdict = ledger_verify()

    assert verdict.problem == f"identity event {newest.pk} does not chain to the identity event before it"


def test_verify_ledger_finds_an_identity_event_whose_predecessor_was_deleted(ana):
    # Every remaining row still hashes to what it stores and the contact still holds its newest
    # event's identifiers: only the link back shows the gap.
    first, second = ana.identity_events.get(version=1), ana.identity_events.get(version=2)
    behind_the_triggers(("DELETE FROM compliance_identityevent WHERE id = %s", [first.pk]))

    if connection.vendor == "postgresql":
        from compliance.identity_verification import _identity_intact_in_database

        assert _identity_intact_in_database() is None
    assert ledger_verify().problem == (
        f"identity event {second.pk} (contact {ana.pk}) has version 2 after version 0: an identity event "
        "is missing or was moved"
    )


def test_a_merge_is_recorded_on_both_contacts_and_both_consent_histories_still_verify(
    ana, decide, admin_user
):
    services.consent_ingest(
        identity=ContactIdentity(
            email="ana.ruiz@work.example", zoho_id="5725767000000412001", last_name="Ruiz"
        ),
        decision=decide(purpose="profiling"),
    )
    duplicate = Contact.objects.get(email="ana.ruiz@work.example")
    consent_before = list(ConsentEvent.objects.order_by("id").values_list("id", "contact_id", "hash"))

    kept, gone = services.contact_merge(
        primary=ana,
        merged=duplicate,
        actor_user=admin_user,
        reason="Same person (ticket 4711)",
        ip_address="192.0.2.1",
    )

    ana.refresh_from_db()
    duplicate.refresh_from_db()
    assert (ana.email, ana.zoho_id, ana.last_name) == ("ana@example.com", "5725767000000412001", "Ruiz")
    assert (duplicate.email, duplicate.zoho_id, duplicate.merged_into) == (None, None, ana)
    assert (kept.kind, kept.other_contact, kept.actor, kept.source) == (
        IdentityEvent.Kind.MERGED_FROM,
        duplicate,
        f"user:{admin_user.username}",
        "admin",
    )
    assert (gone.kind, gone.other_contact, gone.reason, gone.shown_ip_address) == (
        IdentityEvent.Kind.MERGED_INTO,
        ana,
        "Same person (ticket 4711)",
        "192.0.2.1",
    )
    assert list(ConsentEvent.objects.order_by("id").values_list("id", "contact_id", "hash")) == consent_before
    verdict = ledger_verify()
    assert verdict.ok, verdict.summary()
    assert verdict.identity_events_checked == 2 + 1 + 2


def test_a_merge_needs_a_reason_and_two_contacts_not_merged_before(ana, decide, admin_user):
    services.consent_ingest(identity=ContactIdentity(email="bo@example.com"), decision=decide())
    bo = Contact.objects.get(email="bo@example.com")
    with pytest.raises(services.ConsentRejected, match="reason"):
        services.contact_merge(primary=ana, merged=bo, actor_user=admin_user, reason=" ")
    services.contact_merge(primary=ana, merged=bo, actor_user=admin_user, reason="duplicate")
    with pytest.raises(services.ConsentRejected, match="merged already"):
        services.contact_merge(primary=ana, merged=bo, actor_user=admin_user, reason="again")
    assert bo.identity_events.count() == 2


@pytest.mark.postgres
def test_postgresql_confirms_intact_identity_chains_as_the_row_by_row_pass_does(decide, admin_user):
    """verify_ledger's quick path on PostgreSQL: the database hashes identity events exactly as
    chain.identity_event_hash does (unicode, empty and missing values, an address), so an intact
    ledger needs no row-by-row pass."""
    from compliance.identity_verification import _identity_intact_in_database

    services.consent_ingest(
        identity=ContactIdentity(email="zoe@exämple.com", first_name="Zoë", last_name="Ñúñez 日本"),
        decision=decide(ip_address="2001:db8::1", reason='quotes " and \\ backslash, newline\n'),
    )
    services.consent_ingest(
        identity=ContactIdentity(phone="+4915112345678"), decision=decide(ip_address=None)
    )
    zoe, other = Contact.objects.order_by("id")
    services.contact_merge(primary=zoe, merged=other, actor_user=admin_user, reason="same")

    assert _identity_intact_in_database() == (IdentityEvent.objects.count(), True)
    assert IdentityEvent.objects.count() == 4
    behind_the_triggers(
        ("UPDATE compliance_identityevent SET reason = 'x' WHERE contact_id = %s", [other.pk])
    )
    assert _identity_intact_in_database() is None
    assert "was altered" in ledger_verify().problem


@pytest.mark.django_db(transaction=True)
def test_concurrent_changes_of_one_contact_chain_one_after_another(decide):
    """Five requests at once, each filling in another identifier of the same contact: every one
    recorded, versions 2 to 6 without gap or repeat, the contact holding all of them."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    services.consent_ingest(identity=ContactIdentity(email="busy@example.com"), decision=decide())
    fills = [
        {"phone": "+4915112345678"},
        {"app_user_id": "u-busy"},
        {"zoho_id": "5725767000000412001"},
        {"first_name": "Busy"},
        {"last_name": "Bee"},
    ]
    start = threading.Barrier(len(fills))

    def writer(fill: dict[str, str]) -> str:
        start.wait()
        try:
            identity = ContactIdentity(email="busy@example.com", **fill)
            services.consent_ingest(identity=identity, decision=decide(purpose="profiling"))
            return "recorded"
        finally:
            connection.close()

    with ThreadPoolExecutor(len(fills)) as pool:
        outcomes = list(pool.map(writer, fills))

    assert outcomes == ["recorded"] * len(fills)
    contact = Contact.objects.get()
    assert list(contact.identity_events.order_by("version").values_list("version", flat=True)) == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert (contact.phone, contact.app_user_id, contact.zoho_id, contact.first_name, contact.last_name) == (
        "+4915112345678",
        "u-busy",
        "5725767000000412001",
        "Busy",
        "Bee",
    )
    assert contact.identity_version == 6
    assert ledger_verify().ok
