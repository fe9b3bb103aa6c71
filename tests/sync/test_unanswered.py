"""Nothing stranded: a push that Zoho never answered is unknown, not sent.

The next claim reads such a push's record back and writes it again unless Zoho holds it; a
read-back that finds an unanswered push missing queues its resend in the same transaction;
and the audit finds (and re-queues) any contact left with none of a queued push, a push
awaiting read-back or an open discrepancy.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from compliance.models import OutboxEntry
from sync.audit import sync_audit
from sync.models import Discrepancy, FieldMapping, SyncAudit, SyncPush
from sync.outbox import lease, outbox_claim
from sync.projection import PICKLISTS_KEY, project
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due

SMS = "SMS_Opt_In"


def push_all(zoho: Any) -> list[Any]:
    reports = []
    while claim := outbox_claim(worker="t"):
        reports.append(outbox_batch_push(claim=claim, zoho=zoho))
    return reports


def api_writes(sim: Any) -> list[dict[str, Any]]:
    return [w for w in sim.writes() if w["source"] == "api"]


def dead_push(contact_id: int, zoho_id: str, *, attempt: int = 1, age: timedelta | None = None) -> SyncPush:
    """The attempt row a worker writes before its update call, left as a worker killed before
    Zoho's answer leaves it (in a 429 cool-down, a backoff sleep or mid-call)."""
    projection = project([contact_id])[contact_id]
    push = SyncPush.objects.create(
        contact_id=contact_id,
        zoho_id=zoho_id,
        sent=projection.values,
        ledger_versions=projection.ledger_versions,
        attempt=attempt,
    )
    age = lease() + timedelta(seconds=1) if age is None else age
    SyncPush.objects.filter(pk=push.pk).update(created_at=timezone.now() - age)
    push.refresh_from_db()
    return push


def answer_lost(contact: Any, *, attempt: int = 1) -> None:
    """As if the worker died after its write, before storing Zoho's answer, a lease ago: the
    contact's outbox rows wait for a claim again."""
    SyncPush.objects.filter(contact=contact).update(
        response={},
        verify_due_at=None,
        call=None,
        attempt=attempt,
        created_at=timezone.now() - lease() - timedelta(seconds=1),
    )
    OutboxEntry.objects.filter(contact=contact).update(processed_at=None, claimed_at=None, claimed_by="")


def test_a_push_still_in_flight_keeps_its_contact_until_its_lease_ends(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given a contact whose push another worker made a moment ago, unanswered yet
    record = crm("fly@example.com")
    contact = ledger.change("fly@example.com", "sms_marketing", "opted_in", zoho_id=record)
    dead_push(contact.pk, record, age=timedelta(seconds=1))

    # When a claim takes the contact's outbox row
    report = push_all(zoho)[0]

    # Then it writes nothing, and gives the row back for when that push's lease has ended
    assert report.busy == [contact.pk] and not report.pushed and not report.skipped
    assert api_writes(sim) == []
    row = OutboxEntry.objects.get(contact=contact)
    assert row.processed_at is None
    assert not outbox_claim(worker="t")
    assert outbox_claim(worker="t", now=timezone.now() + lease())


def test_an_unanswered_push_that_zoho_does_not_hold_is_written_again(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given a push whose worker died in a 429 cool-down before its update went out
    record = crm("again@example.com")
    contact = ledger.change("again@example.com", "sms_marketing", "opted_in", zoho_id=record)
    dead = dead_push(contact.pk, record)

    # When the lease has passed and a worker claims the contact's row again
    report = push_all(zoho)[0]

    # Then the record is read back (it lacks the change) and the change is written again
    assert list(report.pushed) == [contact.pk] and report.skipped == []
    assert [c["op"] for c in sim.calls() if c["op"].startswith("crm.")][-2:] == ["crm.list", "crm.update"]
    assert len(api_writes(sim)) == 1 and sim.contact(record)[SMS] is True
    dead.refresh_from_db()
    assert dead.verification == SyncPush.Verification.SUPERSEDED
    resent = SyncPush.objects.latest("id")
    assert resent.attempt == 2 and resent.response["code"] == "SUCCESS"
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()
    # and the read-back verifies it
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    resent.refresh_from_db()
    assert resent.verification == SyncPush.Verification.VERIFIED


def test_an_unanswered_push_that_zoho_holds_is_read_back_not_written_again(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given a push that reached Zoho, whose worker died before storing the answer
    record = crm("lost@example.com")
    contact = ledger.change("lost@example.com", "sms_marketing", "opted_in", zoho_id=record)
    push_all(zoho)
    answer_lost(contact)

    # When its row is claimed again
    report = push_all(zoho)[0]

    # Then the record holds the change: no second write, the read-back is due as for any push
    assert report.skipped == [contact.pk] and not report.pushed
    assert len(api_writes(sim)) == 1
    push = SyncPush.objects.get()
    assert push.verify_due_at is not None and push.readback[SMS] is True
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    push.refresh_from_db()
    assert push.verification == SyncPush.Verification.VERIFIED


def test_a_change_unanswered_past_the_retry_budget_is_also_flagged(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given a change whose writes went unanswered more often than the retry budget allows
    record = crm("poison@example.com")
    contact = ledger.change("poison@example.com", "sms_marketing", "opted_in", zoho_id=record)
    dead_push(contact.pk, record, attempt=engine_settings.SYNC_MAX_RETRIES + 1)

    push_all(zoho)

    # Then it is written again and a discrepancy says why, so the retries and the alert follow
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.kind == Discrepancy.Kind.NOT_APPLIED and discrepancy.status == "open"
    assert "never answered 4 writes" in discrepancy.hint
    assert len(api_writes(sim)) == 1


# -- the read-back of an unanswered push ---------------------------------------------------------


def unanswered_awaiting_readback(ledger: Any, crm: Any, zoho: Any, email: str, *, attempt: int = 1) -> Any:
    """A push Zoho never answered, found in the record by the next claim: awaiting its read-back."""
    record = crm(email)
    contact = ledger.change(email, "sms_marketing", "opted_in", zoho_id=record)
    push_all(zoho)
    answer_lost(contact, attempt=attempt)
    push_all(zoho)
    return contact, record


def test_a_read_back_that_misses_an_unanswered_push_queues_its_resend(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given an unanswered push that the record held at the next claim, reset since by a workflow
    contact, record = unanswered_awaiting_readback(ledger, crm, zoho, "reset@example.com")
    sim.post(f"/_sim/contacts/{record}", fields={SMS: False}, user_id="5725767000000000009")

    # When its read-back comes
    report = pushes_verify_due(zoho=zoho, ignore_delay=True)

    # Then it is a mismatch with its resend queued (an opt-in's urgency), not a discrepancy
    assert report.mismatched == 1 and report.requeued == 1
    assert SyncPush.objects.get().verification == SyncPush.Verification.MISMATCH
    assert not Discrepancy.objects.exists()
    row = OutboxEntry.objects.get(contact=contact, processed_at__isnull=True)
    assert row.priority == OutboxEntry.Priority.OPT_IN and row.purpose.code == "sms_marketing"
    # and the next claim writes it again, as attempt 2
    report = push_all(zoho)[0]
    assert list(report.pushed) == [contact.pk]
    assert SyncPush.objects.latest("id").attempt == 2 and sim.contact(record)[SMS] is True


def test_a_read_back_that_misses_an_unanswered_push_past_the_budget_opens_a_discrepancy(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    contact, record = unanswered_awaiting_readback(
        ledger, crm, zoho, "spent@example.com", attempt=engine_settings.SYNC_MAX_RETRIES + 1
    )
    sim.post(f"/_sim/contacts/{record}", fields={SMS: False}, user_id="5725767000000000009")

    report = pushes_verify_due(zoho=zoho, ignore_delay=True)

    assert report.requeued == 0
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.crm_field == SMS and discrepancy.kind == Discrepancy.Kind.OVERWRITTEN
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()


def test_a_read_back_after_the_mapping_moved_on_queues_the_new_values(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given a push awaiting its read-back, and an admin changing the field's mapping meanwhile
    record = crm("mapped@example.com")
    contact = ledger.change("mapped@example.com", "sms_marketing", "opted_in", zoho_id=record)
    push_all(zoho)
    mapping = FieldMapping.objects.get(crm_field=SMS)
    mapping.transform = FieldMapping.Transform.NOT_CONSENTED
    mapping.save()

    # When the read-back comes
    report = pushes_verify_due(zoho=zoho, ignore_delay=True)

    # Then the push is superseded and a push of the new projection is queued, durably
    assert report.superseded == 1 and report.requeued == 1
    assert OutboxEntry.objects.filter(contact=contact, processed_at__isnull=True).count() == 1
    push_all(zoho)
    assert sim.contact(record)[SMS] is False


# -- the audit -----------------------------------------------------------------------------------


def test_the_audit_finds_a_stranded_change_requeues_it_and_counts_it(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any, caplog: Any
) -> None:
    # Given a contact left as the bug of issue 15 left it: its push settled as a mismatch with
    # no discrepancy, no queued push and nothing awaiting a read-back
    record = crm("stranded@example.com")
    contact = ledger.change("stranded@example.com", "sms_marketing", "opted_out", zoho_id=record)
    push_all(zoho)
    SyncPush.objects.update(verification=SyncPush.Verification.MISMATCH, verified_at=timezone.now())
    # and contacts in every state the invariant allows
    ledger.change("queued@example.com", "sms_marketing", "opted_in", zoho_id=crm("queued@example.com"))
    awaiting = ledger.change(
        "awaiting@example.com", "sms_marketing", "opted_in", zoho_id=crm("a@example.com")
    )
    verified = ledger.change(
        "verified@example.com", "sms_marketing", "opted_in", zoho_id=crm("v@example.com")
    )
    flagged = ledger.change("flagged@example.com", "sms_marketing", "opted_in", zoho_id=crm("f@example.com"))
    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    ledger.change("queued@example.com", "sms_marketing", "opted_out")
    ledger.change("awaiting@example.com", "sms_marketing", "opted_out")
    ledger.change("flagged@example.com", "sms_marketing", "opted_out")
    OutboxEntry.objects.filter(contact__in=[awaiting, flagged]).update(processed_at=timezone.now())
    SyncPush.objects.create(
        contact=awaiting,
        zoho_id=awaiting.zoho_id,
        sent=project([awaiting.pk])[awaiting.pk].values,
        ledger_versions={},
        response={"code": "SUCCESS"},
        verify_due_at=timezone.now(),
    )
    Discrepancy.objects.create(contact=flagged, crm_field=SMS, kind=Discrepancy.Kind.OVERWRITTEN)

    # When the audit runs
    with caplog.at_level(logging.ERROR, logger="sync.audit"):
        report = sync_audit()

    # Then it names the stranded contact alone, re-queues it, logs it loudly and counts it
    assert report.stranded == [contact.pk]
    assert report.checked == 5 and verified.pk not in report.stranded
    assert OutboxEntry.objects.get(contact=contact, processed_at__isnull=True).priority == (
        OutboxEntry.Priority.WITHDRAWAL
    )
    assert any(f"contact {contact.pk} " in r.getMessage() for r in caplog.records)
    run = SyncAudit.objects.get()
    assert (run.checked, run.stranded, run.stranded_contacts) == (5, 1, [contact.pk])
    # and once the re-queued push is verified, the next audit finds nothing
    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    assert sim.contact(record)[SMS] is False
    assert sync_audit().stranded == []


def test_the_audit_command_prints_its_count(ledger: Any, crm: Any, zoho: Any, engine_settings: Any) -> None:
    ledger.change("cmd@example.com", "sms_marketing", "opted_in", zoho_id=crm("cmd@example.com"))
    push_all(zoho)
    SyncPush.objects.update(verification=SyncPush.Verification.REJECTED)
    out = StringIO()

    with pytest.raises(SystemExit) as exit_:
        call_command("sync_audit", stdout=out, stderr=StringIO())

    assert exit_.value.code == 1

    assert "1 of 1 contacts stranded" in out.getvalue()
    assert OutboxEntry.objects.filter(processed_at__isnull=True).count() == 1


def test_a_push_that_outlived_its_lease_does_not_write_what_another_claim_took(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given a claim whose worker stalled past its lease, and another worker's claim of the rows
    record = crm("stalled@example.com")
    contact = ledger.change("stalled@example.com", "sms_marketing", "opted_in", zoho_id=record)
    stalled = outbox_claim(worker="stalled")
    taken = outbox_claim(worker="other", now=timezone.now() + lease() + timedelta(seconds=1))
    assert taken.contact_ids == [contact.pk]

    # When the stalled worker gets to its write
    report = outbox_batch_push(claim=stalled, zoho=zoho)

    # Then it writes nothing and leaves the rows to the claim that holds them
    assert report.lost == [contact.pk] and not report.pushed
    assert api_writes(sim) == [] and not SyncPush.objects.exists()
    row = OutboxEntry.objects.get(contact=contact)
    assert row.claimed_by == taken.token and row.processed_at is None
    # and that claim pushes it
    assert list(outbox_batch_push(claim=taken, zoho=zoho).pushed) == [contact.pk]


def test_the_health_page_shows_what_the_audit_found(
    ledger: Any, crm: Any, zoho: Any, engine_settings: Any, client_for: Any, officer: Any
) -> None:
    page = client_for(officer).get(reverse("sync:health")).content.decode()
    assert "The stranded-change audit has not run yet" in page

    ledger.change("shown@example.com", "sms_marketing", "opted_in", zoho_id=crm("shown@example.com"))
    push_all(zoho)
    SyncPush.objects.update(verification=SyncPush.Verification.MISMATCH)
    contact_id = sync_audit().stranded[0]
    sync_audit()  # (re-queued: the second run finds nothing)

    page = client_for(officer).get(reverse("sync:health")).content.decode()
    assert '<span class="value audit-stranded">1</span>' in page
    assert '<strong class="audit-last-stranded">0</strong> stranded' in page
    assert "2 runs in these 24 hours found 1" in page
    assert SyncAudit.objects.order_by("ran_at").first().stranded_contacts == [contact_id]


def test_the_audit_does_not_take_every_contact_for_stranded_in_a_process_without_the_picklists(
    ledger: Any, crm: Any, zoho: Any, engine_settings: Any
) -> None:
    # Given a verified change, pushed with the org's consent picklist values (read from Zoho's
    # field metadata and cached by the push)
    verified = ledger.change("pick@example.com", "sms_marketing", "opted_in", zoho_id=crm("pick@example.com"))
    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    assert SyncPush.objects.get(contact=verified).verification == SyncPush.Verification.VERIFIED
    assert (
        set(SyncPush.objects.get(contact=verified).sent) - set(project([verified.pk])[verified.pk].values)
        == set()
    )

    # When the audit runs in a process whose cache lost the picklists (a restarted Redis, another
    # process's cache)
    cache.delete(PICKLISTS_KEY)
    assert set(SyncPush.objects.get(contact=verified).sent) - set(project([verified.pk])[verified.pk].values)

    # Then the contact is not stranded: what the projection still knows matches what was sent
    assert sync_audit().stranded == []
