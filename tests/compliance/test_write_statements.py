"""What one write sends to the database (issues 11, 13, 14): a single event's rows go in one
statement on PostgreSQL and come out as the row-by-row saves wrote them; a used key is found
after its insert is refused, also inside a caller's transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance import personal, services
from compliance.models import ConsentEvent, ConsentState, EventPersonalData, OutboxEntry
from compliance.services import ContactIdentity
from compliance.verification import ledger_verify

pytestmark = [pytest.mark.django_db, pytest.mark.ledger]

TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT")


def _statements(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if not q["sql"].startswith(TRANSACTION_CONTROL)]


@pytest.mark.postgres
def test_a_single_write_sends_the_event_its_personal_values_outbox_and_state_in_one_statement(decide):
    contact = services.consent_ingest(
        identity=ContactIdentity(email="ana@example.com"), decision=decide(purpose="sms_marketing")
    ).event.contact
    now = timezone.now()
    lookups = services.Lookups()
    decision = decide(
        purpose="sms_marketing",
        status="opted_out",
        occurred_at=now - timedelta(seconds=5),
        evidence={"campaign_id": "CK-1", "note": "asked on the phone"},
    )
    lookups.purpose("sms_marketing"), lookups.policy(decision.policy_version or "")  # read before

    with time_machine.travel(now, tick=False), CaptureQueriesContext(connection) as queries:
        event = services.consent_record(contact=contact, decision=decision, lookups=lookups).event

    # The chain's state locked (one upsert), then everything else in one statement.
    assert len(_statements(queries)) == 2
    assert _statements(queries)[1].startswith("WITH e AS (INSERT INTO")
    stored = ConsentEvent.objects.get(idempotency_key=decision.idempotency_key)
    assert (event.pk, event.hash, event.version) == (stored.pk, stored.hash, 2)
    assert (stored.ip_address, stored.user_agent, stored.evidence) == (None, "", {"campaign_id": "CK-1"})
    values = EventPersonalData.objects.get(event=stored).values
    assert values == {
        "ip_address": "203.0.113.7",
        "user_agent": "ShopApp/5.2 iOS",
        "evidence": {"note": "asked on the phone"},
    }
    assert stored.personal_hash == personal.commitment(contact.secret, values, version=stored.hash_version)
    outbox = OutboxEntry.objects.get(event=stored)
    assert (outbox.contact_id, outbox.priority, outbox.created_at) == (
        contact.pk,
        OutboxEntry.Priority.WITHDRAWAL,
        now,
    )
    state = ConsentState.objects.get(contact=contact, purpose__code="sms_marketing")
    assert (state.event_id, state.version, state.head_hash, state.status) == (
        stored.pk,
        2,
        stored.hash,
        "opted_out",
    )
    assert (state.occurred_at, state.refresh_due_at, state.updated_at) == (decision.occurred_at, None, now)
    assert ledger_verify().ok


def test_a_late_older_decision_moves_only_the_chain_head_and_writes_no_outbox_row(decide):
    first = services.consent_ingest(
        identity=ContactIdentity(email="ana@example.com"), decision=decide(purpose="sms_marketing")
    ).event
    older = decide(
        purpose="sms_marketing", status="opted_out", occurred_at=first.occurred_at - timedelta(hours=1)
    )

    late = services.consent_record(contact=first.contact, decision=older).event

    state = ConsentState.objects.get(contact=first.contact, purpose__code="sms_marketing")
    assert (state.version, state.head_hash, state.event_id, state.status) == (
        2,
        late.hash,
        first.pk,
        "opted_in",
    )
    assert not OutboxEntry.objects.filter(event=late).exists()
    assert EventPersonalData.objects.filter(event=late).exists()
    assert ledger_verify().ok


def test_a_used_key_inside_a_callers_transaction_replays_and_leaves_the_transaction_usable(decide):
    decision = decide(purpose="sms_marketing")
    first = services.consent_ingest(identity=ContactIdentity(email="ana@example.com"), decision=decision)
    other = decide(purpose="sms_marketing", idempotency_key=decision.idempotency_key, status="opted_out")

    with transaction.atomic():
        again = services.consent_record(contact=first.event.contact, decision=decision)
        with pytest.raises(services.IdempotencyConflict):
            services.consent_record(contact=first.event.contact, decision=other)
        count = ConsentEvent.objects.count()  # the transaction is still usable

    assert (again.created, again.event.pk) == (False, first.event.pk)
    assert count == ConsentEvent.objects.count() == 1
    state = ConsentState.objects.get(contact=first.event.contact, purpose__code="sms_marketing")
    assert (state.version, state.event_id) == (1, first.event.pk)
