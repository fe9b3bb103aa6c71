"""The one write path: versions, previous status, hashes, states, outbox, idempotency, rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.utils import timezone

from compliance import chain, personal, services
from compliance.models import ConsentEvent, ConsentState, Contact, OutboxEntry, Purpose
from compliance.services import ConsentForbidden, ConsentRejected, ContactIdentity, IdempotencyConflict
from compliance.verification import ledger_verify

pytestmark = [pytest.mark.django_db, pytest.mark.ledger]

ANA = ContactIdentity(email="Ana@Example.com", phone="+49 151 12345678", app_user_id="u-1842")


def test_it_appends_versions_with_previous_status_and_a_hash_chain(decide):
    first = services.consent_ingest(identity=ANA, decision=decide(status="opted_in")).event
    second = services.consent_ingest(
        identity=ANA, decision=decide(status="opted_out", policy_version=None)
    ).event

    assert (first.version, first.previous_status, first.status) == (1, "", "opted_in")
    assert (second.version, second.previous_status, second.status) == (2, "opted_in", "opted_out")
    assert first.prev_hash == chain.GENESIS_HASH
    assert second.prev_hash == first.hash
    stored = ConsentEvent.objects.get(pk=second.pk)
    values = tuple(getattr(stored, f) for f in chain.EVENT_HASHED_FIELDS_V4)
    assert values[0] == stored.hash_version == 4
    assert chain.event_hash(first.hash, values) == second.hash


def test_it_normalises_identifiers_and_finds_the_same_contact_by_any_of_them(decide):
    services.consent_ingest(identity=ANA, decision=decide())
    services.consent_ingest(
        identity=ContactIdentity(phone="+4915112345678"), decision=decide(purpose="profiling")
    )
    services.consent_ingest(
        identity=ContactIdentity(app_user_id="u-1842"), decision=decide(purpose="phone_marketing")
    )

    contact = Contact.objects.get()
    assert contact.email == "ana@example.com"
    assert contact.phone == "+4915112345678"
    assert contact.events.count() == 3


def test_it_refuses_identifiers_that_belong_to_two_people(decide):
    services.consent_ingest(identity=ContactIdentity(email="a@example.com"), decision=decide())
    services.consent_ingest(identity=ContactIdentity(app_user_id="u-2"), decision=decide())

    with pytest.raises(ConsentRejected) as caught:
        services.consent_ingest(
            identity=ContactIdentity(email="a@example.com", app_user_id="u-2"), decision=decide()
        )
    assert caught.value.field == "contact.email"
    assert ConsentEvent.objects.count() == 2


def test_the_current_state_follows_the_latest_decision_and_the_outbox_hears_of_changes(decide):
    services.consent_ingest(identity=ANA, decision=decide(status="opted_in", frequency="weekly"))
    services.consent_ingest(identity=ANA, decision=decide(status="opted_out", policy_version=None))

    state = ConsentState.objects.get()
    assert (state.status, state.frequency, state.version) == ("opted_out", "", 2)
    assert state.refresh_due_at is None
    priorities = list(OutboxEntry.objects.order_by("id").values_list("priority", flat=True))
    assert priorities == [OutboxEntry.Priority.OPT_IN, OutboxEntry.Priority.WITHDRAWAL]


def test_an_opt_in_is_due_for_refresh_after_its_purposes_validity(decide):
    occurred = datetime(2026, 1, 31, 12, tzinfo=UTC)
    services.consent_ingest(identity=ANA, decision=decide(purpose="phone_marketing", occurred_at=occurred))

    assert ConsentState.objects.get().refresh_due_at == datetime(2027, 1, 31, 12, tzinfo=UTC)


def test_a_late_arriving_older_decision_is_kept_in_history_but_does_not_override_a_newer_one(decide):
    now = timezone.now()
    services.consent_ingest(
        identity=ANA,
        decision=decide(status="opted_out", policy_version=None, occurred_at=now - timedelta(hours=1)),
    )
    late = services.consent_ingest(
        identity=ANA, decision=decide(status="opted_in", occurred_at=now - timedelta(days=3))
    ).event

    state = ConsentState.objects.get()
    assert late.version == 2
    assert state.status == "opted_out"
    assert state.version == 2 and state.head_hash == late.hash
    assert OutboxEntry.objects.count() == 1


def test_the_same_idempotency_key_with_the_same_content_replays_and_writes_nothing(decide):
    decision = decide(idempotency_key="app-req-1")
    first = services.consent_ingest(identity=ANA, decision=decision)
    again = services.consent_ingest(identity=ANA, decision=decision)

    assert first.created and not again.created
    assert again.event.pk == first.event.pk
    assert ConsentEvent.objects.count() == 1
    assert OutboxEntry.objects.count() == 1


def test_the_same_idempotency_key_with_other_content_is_refused(decide):
    services.consent_ingest(identity=ANA, decision=decide(idempotency_key="app-req-1"))

    with pytest.raises(IdempotencyConflict):
        services.consent_ingest(
            identity=ANA,
            decision=decide(idempotency_key="app-req-1", status="opted_out", policy_version=None),
        )
    assert ConsentEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"purpose": "carrier_pigeons"}, "purpose"),
        ({"status": "maybe"}, "status"),
        ({"source": "fax"}, "source"),
        ({"policy_version": "1999-01"}, "policy_version"),
        ({"policy_version": None}, "policy_version"),
        ({"ip_address": "300.1.2.3"}, "ip_address"),
        ({"idempotency_key": " "}, "idempotency_key"),
        ({"occurred_at": timezone.now() + timedelta(hours=1)}, "occurred_at"),
        ({"status": "opted_out", "frequency": "daily", "policy_version": None}, "frequency"),
        ({"source": "crm"}, "source"),
        ({"source": "campaigns"}, "source"),
        ({"purpose": "email_marketing"}, "evidence"),
        ({"status": "pending"}, "status"),
        ({"status": "expired"}, "status"),
        ({"source": "admin", "reason": "typo"}, "source"),
    ],
)
def test_it_refuses_what_breaks_a_ledger_rule_and_names_the_field(decide, overrides, field):
    with pytest.raises(ConsentRejected) as caught:
        services.consent_ingest(identity=ANA, decision=decide(**overrides))

    assert caught.value.field == field
    assert ConsentEvent.objects.count() == 0
    assert Contact.objects.count() == 0, "a refused request leaves no half-written contact behind"


@pytest.mark.parametrize(
    ("identity", "field"),
    [
        (ContactIdentity(email="not-an-email"), "contact.email"),
        (ContactIdentity(phone="12345"), "contact.phone"),
        (ContactIdentity(), "contact"),
    ],
)
def test_it_refuses_malformed_identifiers(decide, identity, field):
    with pytest.raises(ConsentRejected) as caught:
        services.consent_ingest(identity=identity, decision=decide())
    assert caught.value.field == field


def test_email_marketing_needs_a_confirmed_double_opt_in(decide):
    pending = services.consent_ingest(
        identity=ANA, decision=decide(purpose="email_marketing", status="pending")
    ).event
    confirmed = services.consent_ingest(
        identity=ANA,
        decision=decide(
            purpose="email_marketing",
            evidence={"double_opt_in_confirmed_at": "2026-11-20T09:20:00Z", "method": "link"},
        ),
    ).event

    assert (pending.status, confirmed.previous_status, confirmed.status) == ("pending", "pending", "opted_in")


def test_an_api_client_may_only_write_its_own_sources(decide, mobile_app):
    client, _ = mobile_app
    with pytest.raises(ConsentForbidden):
        services.consent_ingest(identity=ANA, decision=decide(source="customer_service"), api_client=client)
    event = services.consent_ingest(identity=ANA, decision=decide(), api_client=client).event
    assert event.actor == "api:mobile-app"


def test_an_admin_correction_records_who_and_why(decide):
    admin = User.objects.create_user("root-cause")
    event = services.consent_ingest(
        identity=ANA,
        decision=decide(
            status="opted_out", source="admin", policy_version=None, reason="Customer called; typo"
        ),
        actor_user=admin,
    ).event
    assert (event.actor, event.reason) == ("user:root-cause", "Customer called; typo")


def test_a_seal_covers_every_event_since_the_previous_seal(decide, settings, tmp_path):
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    with time_machine.travel(datetime(2026, 11, 20, 9, tzinfo=UTC), tick=False):
        services.consent_ingest(identity=ANA, decision=decide())
        services.consent_ingest(identity=ANA, decision=decide(purpose="profiling"))
    first = services.ledger_seal()
    assert services.ledger_seal() is None, "nothing new, nothing sealed"
    services.consent_ingest(identity=ANA, decision=decide(purpose="phone_marketing"))
    second = services.ledger_seal()

    assert first is not None and second is not None
    assert (first.sequence, first.event_count, second.sequence, second.event_count) == (1, 2, 2, 1)
    assert second.prev_hash == first.hash


def test_a_suppression_is_not_a_consent_decision(decide):
    contact = services.consent_ingest(identity=ANA, decision=decide(purpose="profiling")).event.contact
    suppression, created = services.suppression_add(contact=contact, kind="hard_bounce", source="campaigns")
    _, again = services.suppression_add(contact=contact, kind="hard_bounce", source="campaigns")

    assert created and not again
    assert ConsentEvent.objects.count() == 1
    assert OutboxEntry.objects.filter(contact=contact, purpose=None).count() == 1
    assert suppression.lifted_at is None


def test_the_five_purposes_exist_with_their_channels():
    assert dict(Purpose.objects.values_list("code", "channel")) == {
        "email_marketing": "email",
        "sms_marketing": "sms",
        "phone_marketing": "phone",
        "profiling": "none",
        "third_party_sharing": "none",
    }


def test_an_opt_in_past_its_validity_expires_once_with_a_system_event(decide):
    occurred = datetime(2024, 1, 10, 12, tzinfo=UTC)
    services.consent_ingest(identity=ANA, decision=decide(purpose="phone_marketing", occurred_at=occurred))
    services.consent_ingest(identity=ANA, decision=decide(purpose="profiling", occurred_at=timezone.now()))

    with time_machine.travel(datetime(2025, 1, 11, tzinfo=UTC), tick=False):
        first = services.consent_expire_due()
        again = services.consent_expire_due()

    assert (first, again) == (1, 0)
    expiry = ConsentEvent.objects.get(status="expired")
    assert (expiry.purpose.code, expiry.source, expiry.previous_status) == (
        "phone_marketing",
        "system",
        "opted_in",
    )
    assert expiry.occurred_at == datetime(2025, 1, 10, 12, tzinfo=UTC)
    assert ConsentState.objects.get(purpose__code="phone_marketing").status == "expired"
    assert OutboxEntry.objects.filter(event=expiry, priority=OutboxEntry.Priority.WITHDRAWAL).exists()


def test_evidence_numbers_the_database_rewrites_are_stored_as_it_gives_them_back(decide):
    # PostgreSQL keeps JSON numbers as decimals: 1e16 comes back 10000000000000000, -0.0 as 0.0.
    evidence = {"big": 1e16, "huge": [-1.5e300], "zero": -0.0, "nested": {"x": 0.1, "n": 3}}
    event = services.consent_ingest(identity=ANA, decision=decide(evidence=evidence)).event

    stored = ConsentEvent.objects.select_related("personal", "contact").get(pk=event.pk)
    # Keys the ledger does not know are taken for personal: kept apart, committed to.
    assert stored.evidence == {}
    assert stored.shown_evidence == {
        "big": 10**16,
        "huge": [-int(1.5e300)],
        "zero": 0.0,
        "nested": {"x": 0.1, "n": 3},
    }
    assert (
        personal.commitment(stored.contact.secret, stored.personal.values, version=stored.hash_version)
        == stored.personal_hash
    )
    assert chain.event_hash_of(stored.prev_hash, stored) == stored.hash
    assert ledger_verify().ok


def test_a_decision_made_in_another_time_zone_verifies(decide):
    # Read back, occurred_at is in UTC: the hash must not depend on the offset it came with.
    berlin = timezone.get_fixed_timezone(120)
    occurred = datetime(2026, 5, 2, 10, 0, tzinfo=berlin)
    event = services.consent_ingest(identity=ANA, decision=decide(occurred_at=occurred)).event

    stored = ConsentEvent.objects.get(pk=event.pk)
    assert stored.occurred_at == occurred
    assert chain.event_hash_of(stored.prev_hash, stored) == event.hash
    assert ledger_verify().ok
