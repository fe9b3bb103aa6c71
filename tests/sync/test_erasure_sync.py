"""The sync's part of an erasure: the retention job waits for an open discrepancy; the Campaigns
observations of an erased address go, and the pull records nothing of that address again."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from compliance import services
from compliance.lifecycle.models import LifecycleMessage
from compliance.models import Contact, ErasureRequest, Purpose
from compliance.services import ContactIdentity
from compliance.services.retention import retention_erase
from sync import campaigns_pull
from sync.masking import MASK
from sync.models import CampaignsObservation, CrmLink, Discrepancy, ZohoCall

pytestmark = pytest.mark.django_db


def _call(path: str, error: str = "", *, save: bool = True) -> ZohoCall:
    """A call in the Zoho call log (saved, unless not `save`)."""
    call = ZohoCall(
        service="crm", operation="x", method="GET", path=path, started_at=timezone.now(), error=error
    )
    if save:
        call.save()
    return call


def _withdrawn(email: str) -> Contact:
    services.consent_ingest(
        identity=ContactIdentity(email=email),
        decision=services.ConsentDecision(
            purpose="email_marketing",
            status="opted_out",
            source="web_portal",
            occurred_at=timezone.now() - timedelta(minutes=1),
            idempotency_key=f"w-{email}",
        ),
    )
    return Contact.objects.get(email=email)


def test_an_open_discrepancy_holds_the_retention_job(db):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        disputed, free = _withdrawn("disputed@example.net"), _withdrawn("free@example.net")
    Discrepancy.objects.create(contact=disputed, crm_field="Email_Opt_Out", kind="drift")

    with time_machine.travel(start + timedelta(days=365 * 7 + 3), tick=False):
        assert retention_erase() == 1
    assert list(ErasureRequest.objects.values_list("contact_id", flat=True)) == [free.pk]
    assert Contact.objects.get(pk=disputed.pk).erased_at is None


def test_contacts_held_for_good_do_not_stall_the_retention_job_for_the_ones_after_them(db):
    """The job erases at most `limit` a run; the held ones at the front of the queue must not fill
    every page it reads, day after day."""
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        disputed = [_withdrawn(f"disputed{n}@example.net") for n in range(3)]
        free = [_withdrawn(f"free{n}@example.net") for n in range(2)]
    for contact in disputed:
        Discrepancy.objects.create(contact=contact, crm_field="Email_Opt_Out", kind="drift")

    with time_machine.travel(start + timedelta(days=365 * 7 + 3), tick=False):
        assert retention_erase(limit=2) == 2
    assert sorted(ErasureRequest.objects.values_list("contact_id", flat=True)) == [c.pk for c in free]
    assert not Contact.objects.filter(pk__in=[c.pk for c in disputed], erased_at__isnull=False).exists()


def test_an_erased_address_leaves_no_observation_and_the_pull_records_none_again(
    db, django_capture_on_commit_callbacks
):
    contact = _withdrawn("gone@example.net")
    CampaignsObservation.objects.create(list_key="LK1", email="gone@example.net", status="unsub")
    with django_capture_on_commit_callbacks(execute=True):
        services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)
    assert not CampaignsObservation.objects.filter(email="gone@example.net").exists()

    row = {"contact_email": "gone@example.net"}
    assert campaigns_pull.unsubscribe_record(list_key="LK1", row=row, email="gone@example.net") is False
    assert (
        campaigns_pull.hard_bounce_record(
            list_key="LK1", campaign_key="CK", row=row, email="gone@example.net"
        )
        is False
    )
    assert not CampaignsObservation.objects.filter(email="gone@example.net").exists()
    assert not Contact.objects.filter(email="gone@example.net").exists()


def test_the_persons_discrepancies_and_mail_errors_keep_what_happened_without_the_person(db):
    contact = _withdrawn("dup.person@example.net")
    Contact.objects.filter(pk=contact.pk).update(phone="+447700900123")
    other = _withdrawn("someone.else@example.net")
    Discrepancy.objects.create(
        contact=contact,
        kind="duplicate",
        evidence={"email": "dup.person@example.net", "phone": "+447700900123", "candidates": ["z1", "z2"]},
        hint="Two CRM records carry dup.person@example.net: merge them in Zoho.",
    )
    Discrepancy.objects.create(
        contact=contact,
        crm_field="Email_Opt_Out",
        kind="drift",
        status="resolved",
        expected={"Email": "dup.person@example.net"},
        resolution="Called +447700900123, who confirmed the withdrawal.",
    )
    kept = Discrepancy.objects.create(contact=other, kind="duplicate", hint="someone.else@example.net twice")
    CrmLink.objects.create(
        contact=contact,
        state="linked",
        checked_at=timezone.now(),
        matched_by="email",
        matched_value="dup.person@example.net",
    )
    LifecycleMessage.objects.create(
        kind="refresh",
        contact=contact,
        purpose=Purpose.objects.get(code="email_marketing"),
        message_id="<m1@consent-desk.test>",
        to_email="dup.person@example.net",
        subject="Still want our mails?",
        body_text="Hello",
        status="failed",
        last_error="550 5.1.1 <dup.person@example.net>: Recipient address rejected",
    )

    CampaignsObservation.objects.create(list_key="LK1", email="dup.person@example.net", status="unsub")

    seen = list(
        Discrepancy.objects.filter(contact=contact).order_by("id").values_list("updated_at", flat=True)
    )

    # Only the transaction: these must not wait for what runs once it has committed.
    services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)

    duplicate, drift = Discrepancy.objects.filter(contact=contact).order_by("id")
    assert [duplicate.updated_at, drift.updated_at] == seen, "when Zoho last showed them stays"
    assert duplicate.evidence == {"email": MASK, "phone": MASK, "candidates": ["z1", "z2"]}
    assert duplicate.hint == f"Two CRM records carry {MASK}: merge them in Zoho."
    assert drift.expected == {"Email": MASK}
    assert drift.resolution == f"Called {MASK}, who confirmed the withdrawal."
    assert Discrepancy.objects.get(pk=kept.pk).hint == "someone.else@example.net twice"
    assert CrmLink.objects.get(contact=contact).matched_value == ""
    message = LifecycleMessage.objects.get(contact=contact)
    assert (message.to_email, message.last_error, message.status) == ("", "", "failed")
    assert not CampaignsObservation.objects.filter(email="dup.person@example.net").exists()


def test_the_daily_sweep_masks_an_erased_persons_values_the_call_log_still_holds(db):
    from config.celery import app as celery_app
    from sync.tasks.erasure import erased_calls_mask

    contact = _withdrawn("lost.mask@example.net")
    Contact.objects.filter(pk=contact.pk).update(phone="+4915198765499")
    contact.refresh_from_db()
    plain = _call("/crm/v8/Contacts/1", "no record for Lost.Mask@Example.net (+4915198765499)")
    encoded = _call("/campaigns/lists/LK1/lost.mask%40example.net", "")
    other = _call("/crm/v8/Contacts/2", "no record for someone.else@example.net (+447700900999)")
    # Erased without its receivers running (a process that died right after the commit).
    services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)
    assert "Lost.Mask@Example.net" in ZohoCall.objects.get(pk=plain.pk).error
    # Someone new with that address since: their calls are theirs, and stay.
    with time_machine.travel(timezone.now() + timedelta(minutes=5), tick=False):
        later = ZohoCall.objects.create(
            service="crm",
            operation="x",
            method="GET",
            path="/crm/v8/Contacts/3",
            started_at=timezone.now(),
            error="no record for lost.mask@example.net",
        )

    assert erased_calls_mask() == 3
    assert ZohoCall.objects.get(pk=plain.pk).error == f"no record for {MASK} ({MASK})"
    assert ZohoCall.objects.get(pk=encoded.pk).path == f"/campaigns/lists/LK1/{MASK}"
    assert ZohoCall.objects.get(pk=other.pk).error == "no record for someone.else@example.net (+447700900999)"
    assert ZohoCall.objects.get(pk=later.pk).error == "no record for lost.mask@example.net"
    assert erased_calls_mask() == 1, "only the later call's address is left, and it stays"
    assert ZohoCall.objects.get(pk=later.pk).error == "no record for lost.mask@example.net"
    assert "sync.erased_calls_mask" in celery_app.tasks


def test_the_call_log_is_masked_in_one_pass_for_every_value_and_form(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sync.masking import calls_mask

    both = _call(
        "/api/v1.1/json/listunsubscribe/a%2Bb%40example.net/%2B4915198765400",
        "a+b@example.net (+4915198765400) refused",
    )
    other = _call("/crm/v8/Contacts/2", "c@example.net")

    with CaptureQueriesContext(connection) as queries:
        calls_mask(values=["a+b@example.net", "+4915198765400"])

    assert len(queries) == 1, "one UPDATE: one pass over the log"
    both.refresh_from_db()
    assert (both.path, both.error) == (
        f"/api/v1.1/json/listunsubscribe/{MASK}/{MASK}",
        f"{MASK} ({MASK}) refused",
    )
    assert ZohoCall.objects.get(pk=other.pk).error == "c@example.net"


def test_the_daily_sweep_looks_up_the_addresses_it_finds_together_not_one_by_one(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from sync.masking import erased_calls_mask

    ZohoCall.objects.bulk_create(
        _call(
            f"/api/v1.1/json/listunsubscribe/someone{n}%40example.net",
            f"+49151000000{n:02d} refused",
            save=False,
        )
        for n in range(40)
    )

    with CaptureQueriesContext(connection) as queries:
        assert erased_calls_mask() == 0

    # The log read (a named cursor: its declaration, fetches and close), then one look-up.
    assert len(queries) <= 6, [query["sql"][:80] for query in queries]
