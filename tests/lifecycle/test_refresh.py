"""Refresh: REFRESH_NOTICE_DAYS before an opt-in's refresh date a request goes out; confirming
records a fresh opted_in whose evidence says it was a refresh; no answer, and the expiry job ends it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import time_machine
from django.core import mail as outbox
from django.test import Client
from django.utils import timezone

from compliance import services
from compliance.lifecycle.services import lifecycle_cycle
from compliance.models import ConsentEvent, ConsentState, LifecycleMessage, PolicyVersion
from tests.lifecycle.conftest import confirm_path, record


def opted_in(policy: PolicyVersion) -> ConsentEvent:
    """Ana's SMS opt-in (weekly), whose validity (24 months) ends on its refresh date."""
    return record(None, "sms_marketing", "opted_in", frequency="weekly")


def state_of(event: ConsentEvent) -> ConsentState:
    return ConsentState.objects.get(contact=event.contact, purpose=event.purpose)


def test_a_refresh_request_goes_out_once_refresh_notice_days_before_the_date(policy: PolicyVersion) -> None:
    event = opted_in(policy)
    due = state_of(event).refresh_due_at
    assert due is not None

    with time_machine.travel(due - timedelta(days=31), tick=False):
        assert lifecycle_cycle(send_grace_s=0).refreshes == 0
    for days_before in (29, 20):
        with time_machine.travel(due - timedelta(days=days_before), tick=False):
            lifecycle_cycle(send_grace_s=0)

    (message,) = LifecycleMessage.objects.filter(kind="refresh")
    assert (message.event_id, message.status) == (event.pk, "sent")
    (sent,) = outbox.outbox
    assert sent.subject.startswith("Do you want to keep receiving SMS marketing")
    assert "/c/" in sent.body


def test_confirming_a_refresh_records_a_fresh_opt_in_that_says_so(
    policy: PolicyVersion, client: Client
) -> None:
    event = opted_in(policy)
    due = state_of(event).refresh_due_at
    assert due is not None
    with time_machine.travel(due - timedelta(days=10), tick=False):
        lifecycle_cycle(send_grace_s=0)
        message = LifecycleMessage.objects.get(kind="refresh")
        page = client.get(confirm_path(message))
        assert "Renew your consent" in page.content.decode()
        client.post(confirm_path(message), REMOTE_ADDR="198.51.100.8")

    state = state_of(event)
    fresh = state.event
    assert fresh is not None and fresh.pk != event.pk
    assert (fresh.status, fresh.source, fresh.frequency) == ("opted_in", "email_link", "weekly")
    assert fresh.evidence["refresh"] is True and fresh.evidence["refreshed_event"] == event.pk
    assert fresh.shown_ip_address == "198.51.100.8"
    assert state.refresh_due_at is not None and state.refresh_due_at > due + timedelta(days=600)


def test_without_an_answer_the_expiry_job_ends_the_opt_in_and_the_link_then_records_nothing(
    policy: PolicyVersion, client: Client
) -> None:
    event = opted_in(policy)
    due = state_of(event).refresh_due_at
    assert due is not None
    with time_machine.travel(due - timedelta(days=10), tick=False):
        lifecycle_cycle(send_grace_s=0)
    message = LifecycleMessage.objects.get(kind="refresh")

    with time_machine.travel(due + timedelta(hours=1), tick=False):
        assert services.consent_expire_due() == 1
        count = ConsentEvent.objects.count()
        response = client.post(confirm_path(message))

    assert response.status_code == 409
    assert ConsentEvent.objects.count() == count
    assert state_of(event).status == "expired"


def test_no_refresh_request_for_a_contact_without_email(policy: PolicyVersion, settings: Any) -> None:
    decision = services.ConsentDecision(
        purpose="sms_marketing",
        status="opted_in",
        source="mobile_app",
        occurred_at=timezone.now() - timedelta(minutes=1),
        idempotency_key="phone-only",
        policy_version="2026-03",
    )
    result = services.consent_ingest(
        identity=services.ContactIdentity(phone="+4915112345678"), decision=decision
    )
    due = state_of(result.event).refresh_due_at
    assert due is not None

    with time_machine.travel(due - timedelta(days=5), tick=False):
        assert lifecycle_cycle(send_grace_s=0).refreshes == 0
    assert not LifecycleMessage.objects.exists()
