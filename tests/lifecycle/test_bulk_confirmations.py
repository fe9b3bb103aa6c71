"""Confirmation mails of a batch ingest, built in bulk: the same few queries for 5 pending events as
for 60, and the same mails as one by one (one per event, to its address, with a working link)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from compliance import services
from compliance.lifecycle import mail
from compliance.lifecycle.services import confirmation_requests
from compliance.models import ConsentEvent, ConsentState, LifecycleMessage, PolicyVersion
from tests.lifecycle.conftest import confirm_path, record
from tests.lifecycle.test_mail import pending_body

# Queries of confirmation_requests, whatever the number of events: the existing confirmations,
# the policies cited, the link generations, one INSERT, one UPDATE (and savepoints).
MAX_QUERIES = 8


def pendings(count: int, prefix: str) -> list[ConsentEvent]:
    return [_pending(f"{prefix}{n}@example.com") for n in range(count)]


def _pending(email: str) -> ConsentEvent:
    return services.consent_ingest(
        identity=services.ContactIdentity(email=email, first_name=email.split("@")[0]),
        decision=services.ConsentDecision(
            purpose="email_marketing",
            status="pending",
            source="web_portal",
            occurred_at=timezone.now() - timedelta(minutes=5),
            idempotency_key=f"bulk-{email}",
            policy_version="2026-03",
        ),
    ).event


def queries_for(events: list[ConsentEvent]) -> tuple[int, list[LifecycleMessage]]:
    with CaptureQueriesContext(connection) as captured:
        messages = confirmation_requests(events=events)
    return len(captured.captured_queries), messages


def test_the_queries_do_not_grow_with_the_number_of_pending_events(
    policy: PolicyVersion, django_assert_max_num_queries: Any
) -> None:
    few, _ = queries_for(pendings(5, "few"))
    many_events = pendings(60, "many")
    with django_assert_max_num_queries(MAX_QUERIES):
        many = confirmation_requests(events=many_events)

    assert few <= MAX_QUERIES
    assert len(many) == 60
    assert LifecycleMessage.objects.filter(kind="confirmation").count() == 65


def test_bulk_mails_are_the_mails_one_by_one_would_be(policy: PolicyVersion, client: Any) -> None:
    events = pendings(3, "same")
    sms = record(events[0].contact, "sms_marketing", "opted_in")  # no double opt-in: no mail

    messages = confirmation_requests(events=[*events, sms])

    assert sorted(m.to_email for m in messages) == [f"same{n}@example.com" for n in range(3)]
    for message, event in zip(sorted(messages, key=lambda m: m.event_id or 0), events, strict=True):
        assert message.event_id == event.pk and message.kind == "confirmation"
        assert (
            message.subject
            == "Please confirm your subscription to Consent Desk demo organisation: Email marketing"
        )
        assert "2026-03" in message.body_text and message.body_html
        mail.message_send(message_pk=message.pk)
        message.refresh_from_db()
        assert message.status == "sent"
        # Its link confirms this event, and only once
        assert client.post(confirm_path(message)).status_code == 200
        assert ConsentState.objects.get(contact=event.contact, purpose=event.purpose).status == "opted_in"
    # Asked again, nothing more is made
    assert confirmation_requests(events=events) == []
    assert LifecycleMessage.objects.count() == 3


def test_a_batch_through_the_api_queues_one_confirmation_per_pending_event(
    api: APIClient, policy: PolicyVersion
) -> None:
    bodies = [pending_body(f"api{n}@example.com") for n in range(30)]
    bodies.append(pending_body("own@example.com", send_confirmation=False))

    with CaptureQueriesContext(connection) as captured:
        response = api.post("/api/v1/consent-events/batch", {"events": bodies}, format="json")

    assert response.status_code == 200 and response.json()["created"] == 31
    assert LifecycleMessage.objects.filter(kind="confirmation").count() == 30
    assert not LifecycleMessage.objects.filter(to_email="own@example.com").exists()
    inserts = [
        q
        for q in captured.captured_queries
        if q["sql"].startswith('INSERT INTO "compliance_lifecyclemessage"')
    ]
    assert len(inserts) == 1  # one INSERT for the 30 mails
