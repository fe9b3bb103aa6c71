"""The objection kept after an erasure (issue 14, item 3) holds the lifecycle too: a contact made
after an erasure of the same address is held by "Erased before: do not contact", and gets no
double opt-in confirmation, reminder or refresh mail, is no re-permission target, and is not added
to the Campaigns re-permission list; a contact beside it without that suppression still is. Mail
goes through a real SMTP server (aiosmtpd), the Campaigns list is zohosim's over HTTP."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from compliance import services
from compliance.lifecycle import mail, repermission
from compliance.lifecycle.services import lifecycle_cycle
from compliance.lifecycle.suppressions import DO_NOT_CONTACT
from compliance.models import (
    ConsentState,
    Contact,
    ErasureRequest,
    LifecycleMessage,
    PolicyVersion,
    RepermissionRun,
    RepermissionTarget,
    Suppression,
)
from tests.lifecycle.conftest import record, smtp_server
from tests.lifecycle.test_mail import pending_body

RETURNING = "quillon.vandersnoot@example.net"  # erased, then back
RETURNING_TOO = "ottilie.vandersnoot@example.net"  # erased, then back through the batch path
FRESH = "fresh.person@example.net"
FRESH_TOO = "another.person@example.net"
CONFIRMED = {"double_opt_in_confirmed_at": "2026-04-01T10:00:00+00:00"}

_keys = itertools.count(1)


class Inbox:
    """An SMTP server's handler that takes every message and keeps its recipients."""

    def __init__(self) -> None:
        self.recipients: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.recipients.extend(envelope.rcpt_tos)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings: Any) -> Iterator[Inbox]:
    inbox = Inbox()
    with smtp_server(settings, inbox):
        yield inbox


def _erase(email: str) -> None:
    """Someone with this address opted in, then asked to be erased."""
    contact = record(None, "sms_marketing", "opted_in", email=email).contact
    services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)
    assert Contact.objects.get(pk=contact.pk).email is None


def _held(email: str) -> Contact:
    """The new contact of an erased address: held by "do not contact" since it was made."""
    contact = Contact.objects.get(email=email)
    assert Suppression.objects.get(contact=contact, lifted_at__isnull=True).kind == Suppression.Kind.ERASED
    return contact


def _hold(contact: Contact) -> None:
    """The suppression `erased_suppressions_add` makes, put on a contact made earlier."""
    Suppression.objects.create(
        contact=contact,
        channel=Suppression.ERASED_CHANNEL,
        kind=Suppression.Kind.ERASED,
        source="system",
        detail="An erased person had this address or number: do not contact.",
    )


def _assert_not_sent(message: LifecycleMessage) -> None:
    message.refresh_from_db()
    assert (message.status, message.last_error, message.attempts) == ("failed", DO_NOT_CONTACT, 0)
    assert "/c/" not in message.body_text, "no link was made for it"


@pytest.fixture
def new_policy(policy: PolicyVersion) -> PolicyVersion:
    return services.policy_version_publish(
        label="2027-01", effective_at="2026-06-01", text="We now also use your data for surveys."
    )


def _opted_in_under_the_old_policy(*emails: str) -> None:
    for email in emails:
        record(None, "email_marketing", "opted_in", evidence=CONFIRMED, email=email)


# -- double opt-in confirmations and their reminders ----------------------------------------------


def test_no_confirmation_or_reminder_goes_to_an_erased_address_that_came_back(
    api: APIClient, policy: PolicyVersion, smtp: Inbox
) -> None:
    _erase(RETURNING)
    _erase(RETURNING_TOO)

    # Given pending sign-ups through the API: one by one, and in a batch
    for email in (RETURNING, FRESH):
        assert api.post("/api/v1/consent-events", pending_body(email), format="json").status_code == 201
    batch = api.post(
        "/api/v1/consent-events/batch",
        {"events": [pending_body(RETURNING_TOO), pending_body(FRESH_TOO)]},
        format="json",
    )
    assert batch.status_code == 200 and batch.json()["created"] == 2
    held = [_held(RETURNING), _held(RETURNING_TOO)]

    # When the lifecycle cycle sends what is queued
    result = lifecycle_cycle(send_grace_s=0)

    # Then only the new addresses got their confirmation
    assert sorted(smtp.recipients) == sorted([FRESH, FRESH_TOO])
    assert result.sent == 2
    for contact in held:
        (message,) = LifecycleMessage.objects.filter(contact=contact)
        assert message.kind == "confirmation"
        _assert_not_sent(message)
    # The ledger kept what the person did: their pending is recorded.
    assert ConsentState.objects.get(contact=held[0], purpose__code="email_marketing").status == "pending"

    # And DOI_REMINDER_HOURS later, only they get a reminder
    with time_machine.travel(timezone.now() + timedelta(hours=49), tick=False):
        assert lifecycle_cycle(send_grace_s=0).reminders == 2
    assert sorted(smtp.recipients) == sorted([FRESH, FRESH_TOO] * 2)
    assert not LifecycleMessage.objects.filter(contact__in=held, kind="reminder").exists()


def test_a_queued_mail_is_not_sent_once_held_but_the_persons_own_click_still_confirms(
    policy: PolicyVersion, smtp: Inbox, client: Client
) -> None:
    # Given two confirmations queued (a queue made before the hold, or before this check existed)
    late = record(None, "email_marketing", "pending", email=FRESH)
    other = record(None, "email_marketing", "pending", email=FRESH_TOO)
    late_mail = mail.message_queue(kind=LifecycleMessage.Kind.CONFIRMATION, event=late)
    other_mail = mail.message_queue(kind=LifecycleMessage.Kind.CONFIRMATION, event=other)
    assert late_mail is not None and other_mail is not None
    _hold(late.contact)

    # When they are sent
    assert lifecycle_cycle(send_grace_s=0).sent == 1

    # Then the held one is not
    assert smtp.recipients == [FRESH_TOO]
    late_mail.refresh_from_db()
    assert (late_mail.status, late_mail.last_error) == ("failed", DO_NOT_CONTACT)

    # And a person held after their mail went out may still confirm by its link: their own act
    _hold(other.contact)
    other_mail.refresh_from_db()
    link = next(word for word in other_mail.body_text.split() if "/c/" in word)
    assert client.post(link.removeprefix("http://testserver")).status_code == 200
    assert ConsentState.objects.get(contact=other.contact, purpose=other.purpose).status == "opted_in"


# -- refresh requests -----------------------------------------------------------------------------


def test_no_refresh_request_goes_to_an_erased_address_that_came_back(
    policy: PolicyVersion, smtp: Inbox
) -> None:
    _erase(RETURNING)
    at = timezone.now() - timedelta(minutes=5)
    returning = record(None, "sms_marketing", "opted_in", frequency="weekly", occurred_at=at, email=RETURNING)
    fresh = record(None, "sms_marketing", "opted_in", frequency="weekly", occurred_at=at, email=FRESH)
    held = _held(RETURNING)
    due = ConsentState.objects.get(contact=fresh.contact, purpose=fresh.purpose).refresh_due_at
    assert due is not None
    assert ConsentState.objects.get(contact=held, purpose=returning.purpose).refresh_due_at == due

    with time_machine.travel(due - timedelta(days=10), tick=False):
        result = lifecycle_cycle(send_grace_s=0)
        again = lifecycle_cycle(send_grace_s=0)

    assert (result.refreshes, result.sent, again.refreshes) == (1, 1, 0)
    assert smtp.recipients == [FRESH]
    (not_sent,) = LifecycleMessage.objects.filter(contact=held)
    assert (not_sent.kind, not_sent.event_id) == ("refresh", returning.pk)
    _assert_not_sent(not_sent)
    assert LifecycleMessage.objects.filter(kind="refresh").count() == 2, "recorded once, not each cycle"


# -- re-permission: its targets (mail) and the Campaigns list ------------------------------------


def test_an_erased_address_that_came_back_is_no_re_permission_target(
    new_policy: PolicyVersion, admin_user: Any, smtp: Inbox
) -> None:
    _erase(RETURNING)
    _opted_in_under_the_old_policy(RETURNING, FRESH)
    held, fresh = _held(RETURNING), Contact.objects.get(email=FRESH)

    # The list, its counts and the run's total leave the held contact out
    listed = repermission.repermission_list(policy=new_policy, purposes=["email_marketing"])
    assert [state.contact_id for state in listed] == [fresh.pk]
    (count,) = [
        c for c in repermission.repermission_counts(policy=new_policy) if c.purpose.code == "email_marketing"
    ]
    assert count.older == 1
    run = repermission.repermission_start(
        policy=new_policy, action="mail", purposes=["email_marketing"], include_legacy=True, user=admin_user
    )
    assert run.total == 1

    run = repermission.repermission_run_execute(run_pk=run.pk)
    lifecycle_cycle(send_grace_s=0)

    assert list(run.targets.values_list("contact_id", flat=True)) == [fresh.pk]
    assert (run.status, run.total, run.processed, run.skipped, run.failed) == ("done", 1, 1, 0, 0)
    assert smtp.recipients == [FRESH]
    assert not LifecycleMessage.objects.filter(contact=held).exists()


def test_a_run_skips_a_target_held_since_its_targets_were_made(
    new_policy: PolicyVersion, admin_user: Any
) -> None:
    _opted_in_under_the_old_policy(FRESH, FRESH_TOO)
    late, other = Contact.objects.get(email=FRESH), Contact.objects.get(email=FRESH_TOO)
    run = repermission.repermission_start(
        policy=new_policy, action="mail", purposes=["email_marketing"], include_legacy=True, user=admin_user
    )
    repermission._targets_make(run)  # the task's snapshot of whom to ask, then one is held
    _hold(late)

    run = repermission.repermission_run_execute(run_pk=run.pk)

    assert (run.processed, run.skipped, run.failed) == (2, 1, 0)
    skipped = RepermissionTarget.objects.get(run=run, contact=late)
    assert (skipped.error, skipped.done_at, skipped.message) == (DO_NOT_CONTACT, None, None)
    assert list(
        LifecycleMessage.objects.filter(kind="repermission").values_list("contact_id", flat=True)
    ) == [other.pk]


def _list_emails(sim: Any, list_key: str) -> list[str]:
    lists = sim.http.get("/_sim/lists").json()["lists"]
    return sorted(s["email"] for row in lists if row["listkey"] == list_key for s in row["subscribers"])


def test_an_erased_address_that_came_back_is_not_added_to_the_campaigns_list(
    new_policy: PolicyVersion, admin_user: Any, sim: Any, sim_settings: Any
) -> None:
    from sync.repermission import repermission_list_add

    sim.seed(lists=[{"listkey": "RP1", "name": "Re-permission", "subscribers": []}])
    sim_settings.ZOHO_REPERMISSION_LIST_KEY = "RP1"
    _erase(RETURNING)
    _opted_in_under_the_old_policy(RETURNING, FRESH)
    held = _held(RETURNING)

    # The admin's Campaigns run adds the new address only
    run = repermission.repermission_start(
        policy=new_policy,
        action="campaigns_list",
        purposes=["email_marketing"],
        include_legacy=True,
        user=admin_user,
    )
    run = repermission.repermission_run_execute(run_pk=run.pk)

    assert _list_emails(sim, "RP1") == [FRESH]
    assert (run.status, run.total, run.processed, run.failed) == ("done", 1, 1, 0)

    # And the sync's action itself refuses a held contact that reaches it (a target made before
    # the hold), while it still adds the others of the batch
    _opted_in_under_the_old_policy(FRESH_TOO)
    other = Contact.objects.get(email=FRESH_TOO)
    later = RepermissionRun.objects.create(
        policy=new_policy, action="campaigns_list", purposes=["email_marketing"], created_by_name="x"
    )
    targets = [
        RepermissionTarget.objects.create(
            run=later,
            contact=contact,
            purpose=state.purpose,
            event_id=state.event_id,
        )
        for contact in (held, other)
        for state in [ConsentState.objects.get(contact=contact, purpose__code="email_marketing")]
    ]

    errors = repermission_list_add(
        later,
        [repermission.TargetAddress(t.pk, t.contact.email or "", "email_marketing") for t in targets],
    )

    assert errors == {targets[0].pk: DO_NOT_CONTACT}
    assert _list_emails(sim, "RP1") == sorted([FRESH, FRESH_TOO])
