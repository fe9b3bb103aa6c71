"""Push: send each contact's projection to Zoho CRM, 100 contacts per update call.

`outbox_batch_push` is what the workers run for one outbox claim; `contacts_push`
is the push itself (also used by retries, with ``force``):

1. find each contact's CRM record: `Contact.zoho_id`, else the record a previous
   lookup linked (`CrmLink`), else a lookup in bulk by email, phone or app user id
   (`sync.linking`: 50 contacts per COQL query). None: the contact is "not in
   CRM" (not an error). Several: a `duplicate` discrepancy, and neither record is
   ever written until an admin picks one;
2. project the *current* ledger state through the field mapping;
3. skip contacts whose latest push of these ledger versions and values Zoho has:
   verified, or answered for the record and awaiting its read-back. A push Zoho never
   answered (429, 5xx, a timeout, a worker that died) is *unknown*, not sent: while it is
   younger than the outbox lease its worker may still be at it (the rows wait for it);
   after that the record is read back (one call) and the change is written again unless
   Zoho holds it. A version Zoho acknowledged is never written twice;
4. renew the claim's lease (a worker that outlived it writes nothing another claim took),
   write the `SyncPush` rows (the attempt) *before* the call, then ONE
   `crm.update` for the batch, then store Zoho's per-record answers, the
   per-record errors as discrepancies, the verify time, and mark the outbox rows
   processed, in one transaction.

Email withdrawals and suppressions also unsubscribe the address from every
Campaigns list in ``ZOHO_CAMPAIGNS_LIST_KEYS`` ("write to both"), before the CRM
write, so that a transient Campaigns failure retries the whole batch.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance.models import ConsentStatus, Contact, OutboxEntry
from sync import quota
from sync.discrepancies import HINTS, discrepancy_record
from sync.linking import consent_ids_forget, contacts_link
from sync.models import Discrepancy, SyncPush
from sync.optout_clock import withdrawal_clocks_unsubscribed
from sync.outbox import OutboxClaim, lease, outbox_claim_renew, outbox_finish, outbox_release
from sync.projection import Projection, consent_picklists, project, read_back, read_fields, to_crm_record
from sync.zoho import RecordResult, ZohoClient
from sync.zoho.errors import ZohoPermanentError

logger = logging.getLogger(__name__)

EMAIL_PURPOSE = "email_marketing"
# Campaigns' "contact is not in this list": nothing to unsubscribe.
CAMPAIGNS_NOT_IN_LIST = "2103"


@dataclass
class PushReport:
    """What one push did, for tasks, `sync_now` and tests."""

    pushed: dict[int, SyncPush] = field(default_factory=dict)
    skipped: list[int] = field(default_factory=list)
    not_in_crm: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    # Contacts whose rows another claim took while this one waited (it outlived its lease).
    lost: list[int] = field(default_factory=list)
    unsubscribed: int = 0
    calls: int = 0
    # Calls made to find CRM records or their consent record ids (`sync.linking`).
    link_calls: int = 0
    # Contact id -> its record's consent record id, which the write updates in place.
    consent_ids: dict[int, str] = field(default_factory=dict)

    def merge(self, other: PushReport) -> None:
        self.pushed.update(other.pushed)
        self.skipped += other.skipped
        self.not_in_crm += other.not_in_crm
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.busy += other.busy
        self.lost += other.lost
        self.unsubscribed += other.unsubscribed
        self.calls += other.calls
        self.link_calls += other.link_calls
        self.consent_ids.update(other.consent_ids)


# -- finding the CRM record --------------------------------------------------------------------


def crm_ids_resolve(*, contacts: list[Contact], zoho: ZohoClient, report: PushReport) -> dict[int, str]:
    """{contact id: CRM record id} for the contacts that have exactly one CRM record, linked in
    bulk (`sync.linking`: 50 contacts per COQL query, links kept)."""
    links, linked = contacts_link(contacts=contacts, zoho=zoho)
    report.not_in_crm += linked.not_in_crm
    report.duplicates += linked.duplicates
    report.link_calls += linked.calls
    report.consent_ids.update(
        {cid: str(link.consent_id) for cid, link in links.items() if cid in linked.linked and link.consent_id}
    )
    return linked.linked


# -- Campaigns: write to both ------------------------------------------------------------------


def campaigns_unsubscribe(*, emails: list[str], zoho: ZohoClient) -> int:
    """Unsubscribe each address from every configured list; "not in the list" is fine."""
    done = 0
    absent: list[tuple[str, str]] = []
    for email in emails:
        for list_key in settings.ZOHO_CAMPAIGNS_LIST_KEYS:
            try:
                zoho.campaigns.unsubscribe(list_key, email)
                done += 1
                absent.append((email, list_key))
            except ZohoPermanentError as exc:
                if exc.code != CAMPAIGNS_NOT_IN_LIST:
                    logger.warning("Campaigns unsubscribe of %s from %s failed: %s", email, list_key, exc)
                else:
                    absent.append((email, list_key))
    # The opt-out clock: each address is now out of these lists (or was never in one).
    withdrawal_clocks_unsubscribed(done=absent)
    return done


def _email_not_permitted(projection: Projection) -> bool:
    return projection.values.get("Email_Opt_Out") is True or (
        projection.values.get("Data_Processing_Basis_Details.Contact_Through_Email") is False
    )


# -- the push ----------------------------------------------------------------------------------


def _response_json(result: RecordResult) -> dict[str, Any]:
    return {
        "code": result.code,
        "status": result.status,
        "message": result.message,
        "details": dict(result.details),
    }


def _error_field(result: RecordResult, sent: Mapping[str, Any]) -> str:
    """The flat field a per-record error names (``$.data[0].Data_Processing_Basis_Details.X``)."""
    path = str(result.details.get("json_path") or "")
    if path.startswith("$.data["):
        rest = path.split("]", 1)[1].lstrip(".")
        if rest in sent:
            return rest
    name = str(result.details.get("api_name") or "")
    if name in sent:
        return name
    nested = [key for key in sent if key.endswith(f".{name}")] if name else []
    return nested[0] if len(nested) == 1 else name


def _same_change(latest: SyncPush | None, projection: Projection) -> bool:
    return (
        latest is not None
        and latest.ledger_versions == projection.ledger_versions
        and latest.sent == projection.values
    )


def _delivered(push: SyncPush) -> bool:
    """Zoho has this push: verified, or awaiting its read-back after an answer for the record.

    A push without an answer (429, 5xx, a timeout, a worker that died around the call) is
    *unknown*: it may or may not have been written. Only a read-back tells, which
    `_unanswered_found` does before a claim counts it as sent (`verify_due_at` is set once
    Zoho answered, or once that read-back found the values in the record).
    """
    return push.verification == SyncPush.Verification.VERIFIED or (
        push.verification == SyncPush.Verification.PENDING and push.verify_due_at is not None
    )


def _unanswered(push: SyncPush | None) -> bool:
    return (
        push is not None and push.verification == SyncPush.Verification.PENDING and push.verify_due_at is None
    )


def _latest_pushes(contact_ids: list[int]) -> dict[int, SyncPush]:
    latest: dict[int, SyncPush] = {}
    for push in SyncPush.objects.filter(contact_id__in=contact_ids).order_by("contact_id", "-id"):
        latest.setdefault(push.contact_id, push)
    return latest


def contacts_push(
    *,
    contact_ids: list[int],
    zoho: ZohoClient,
    force: bool = False,
    claim: OutboxClaim | None = None,
    unsubscribe: set[int] | None = None,
    urgent: bool = False,
) -> PushReport:
    """Push the current projection of these contacts (at most 100) in one update call.

    ``force``: write even when the latest push carries the same versions (a retry).
    ``claim``: its outbox rows are marked processed with the outcome.
    ``unsubscribe``: contacts whose email withdrawal also goes to Campaigns.
    Transient Zoho errors propagate (nothing is marked processed, the attempt rows
    are removed: the write did not happen).
    """
    if len(set(contact_ids)) > 100:
        raise ValueError("at most 100 contacts per push")
    report = PushReport()
    contacts = list(Contact.objects.filter(pk__in=contact_ids).order_by("pk"))
    level = quota.WITHDRAWAL if urgent else quota.OPT_IN
    with quota.urgency(level):
        projections = project([c.pk for c in contacts], picklists=consent_picklists(zoho=zoho))
        if unsubscribe and settings.ZOHO_CAMPAIGNS_LIST_KEYS:
            emails = [
                c.email
                for c in contacts
                if c.pk in unsubscribe and c.email and _email_not_permitted(projections[c.pk])
            ]
            report.unsubscribed = campaigns_unsubscribe(emails=emails, zoho=zoho)
        crm_ids = crm_ids_resolve(contacts=contacts, zoho=zoho, report=report)
        now = timezone.now()
        latest = _latest_pushes(list(crm_ids))
        to_write: list[int] = []
        unknown: list[int] = []
        for contact_id in crm_ids:
            previous = latest.get(contact_id)
            if force or not _same_change(previous, projections[contact_id]):
                to_write.append(contact_id)
            elif previous is not None and _delivered(previous):
                report.skipped.append(contact_id)
            elif _unanswered(previous) and previous is not None and previous.created_at > now - lease():
                # Its push may still be in flight (another worker, within its lease): not ours.
                report.busy.append(contact_id)
            elif _unanswered(previous):
                unknown.append(contact_id)
            else:
                # Zoho refused it, or its read-back did not find it: write this change again.
                to_write.append(contact_id)
        if unknown:
            found = _unanswered_found(
                contact_ids=unknown,
                crm_ids=crm_ids,
                projections=projections,
                latest=latest,
                zoho=zoho,
                now=now,
            )
            report.calls += 1
            report.skipped += found
            to_write += [c for c in unknown if c not in found]
        if claim is not None and to_write:
            held = outbox_claim_renew(claim=claim)
            report.lost = [c for c in to_write if c not in held]
            to_write = [c for c in to_write if c in held]
        finished = [c for c in claim.contact_ids if c not in report.busy] if claim is not None else []
        if not to_write:
            with transaction.atomic():
                _unanswered_settle(report.skipped, latest, now)
                if claim is not None:
                    _busy_release(claim, report.busy, latest, now)
                    outbox_finish(claim=claim, contact_ids=finished, now=now)
            return report

        # bulk_create returns the primary keys on PostgreSQL and on SQLite 3.35+.
        created = SyncPush.objects.bulk_create(
            [
                SyncPush(
                    contact_id=contact_id,
                    zoho_id=crm_ids[contact_id],
                    sent=projections[contact_id].values,
                    ledger_versions=projections[contact_id].ledger_versions,
                    attempt=_attempt(latest.get(contact_id), projections[contact_id], force=force),
                )
                for contact_id in to_write
            ]
        )
        attempts = dict(zip(to_write, created, strict=True))
        records = [
            to_crm_record(crm_ids[cid], projections[cid].values, consent_id=report.consent_ids.get(cid))
            for cid in to_write
        ]
        try:
            update = zoho.crm.update(records)
        except BaseException:
            SyncPush.objects.filter(pk__in=[p.pk for p in attempts.values()]).delete()
            raise
        report.calls += 1
        # Records that had no consent record have one now, made by this write: read its id next time.
        consent_ids_forget(contact_ids=[c for c in to_write if c not in report.consent_ids])
        _store_results(attempts, update.results, update.call_id, report)
        with transaction.atomic():
            _unanswered_settle(report.skipped, latest, timezone.now())
            _resent_supersede([latest[c] for c in to_write if _unanswered(latest.get(c))], timezone.now())
            if claim is not None:
                _busy_release(claim, report.busy, latest, now)
                outbox_finish(claim=claim, contact_ids=finished)
    return report


def _attempt(previous: SyncPush | None, projection: Projection, *, force: bool) -> int:
    """1 for a new change; one more than the last push's for the same change written again."""
    if previous is not None and (force or _same_change(previous, projection)):
        return previous.attempt + 1
    return 1


def _unanswered_found(
    *,
    contact_ids: list[int],
    crm_ids: dict[int, str],
    projections: dict[int, Projection],
    latest: dict[int, SyncPush],
    zoho: ZohoClient,
    now: datetime,
) -> list[int]:
    """Read back the records of pushes that never got Zoho's answer (one call): the contacts
    whose record holds the values after all. The others are written again, unless this change
    already went unanswered more times than the retry budget: then it is also a discrepancy,
    so that the retries, and their alert, take it in hand."""
    compared = sorted(set().union(*(projections[c].compared for c in contact_ids)))
    records = {
        str(r.get("id")): r
        for r in zoho.crm.get_many([crm_ids[c] for c in contact_ids], read_fields(compared))
    }
    found: list[int] = []
    for contact_id in contact_ids:
        projection, push = projections[contact_id], latest[contact_id]
        record = records.get(crm_ids[contact_id])
        readback = read_back(record, projection.compared) if record is not None else {}
        if record is not None and not projection.differences(readback):
            push.readback = readback
            found.append(contact_id)
        elif push.attempt > settings.SYNC_MAX_RETRIES:
            discrepancy_record(
                contact_id=contact_id,
                crm_field="",
                kind=Discrepancy.Kind.NOT_APPLIED,
                zoho_id=push.zoho_id,
                expected=push.sent,
                actual=readback or None,
                evidence={"push": push.pk, "sent": push.sent, "zoho_answer": None, "readback": readback},
                hint=HINTS["unanswered"].format(attempts=push.attempt),
                now=now,
            )
    return found


def _unanswered_settle(skipped: list[int], latest: dict[int, SyncPush], now: datetime) -> None:
    """Skipped contacts whose push was unanswered but whose record holds its values: read them
    back after the verify delay like any answered push (a workflow may still reset them)."""
    settled = [latest[c] for c in skipped if latest[c].verification == SyncPush.Verification.PENDING]
    settled = [p for p in settled if p.verify_due_at is None]
    for push in settled:
        push.verify_due_at = now + timedelta(seconds=settings.CONSENT_VERIFY_DELAY_S)
    SyncPush.objects.bulk_update(settled, ["verify_due_at", "readback"])


def _resent_supersede(pushes: list[SyncPush], now: datetime) -> None:
    """An unanswered push written again is replaced by the new attempt."""
    for push in pushes:
        push.verification = SyncPush.Verification.SUPERSEDED
        push.verified_at = now
    SyncPush.objects.bulk_update(pushes, ["verification", "verified_at"])


def _busy_release(claim: OutboxClaim, busy: list[int], latest: dict[int, SyncPush], now: datetime) -> None:
    """Give back the rows of contacts whose push is in flight elsewhere: claimable again when
    that push's lease ends (by then it is answered, or its worker died)."""
    for contact_id in busy:
        remaining = latest[contact_id].created_at + lease() - now
        outbox_release(
            claim=claim, delay=max(remaining, timedelta(seconds=1)), contact_ids=[contact_id], now=now
        )


def _store_results(
    attempts: dict[int, SyncPush], results: list[RecordResult], call_id: int | None, report: PushReport
) -> None:
    now = timezone.now()
    due = now + timedelta(seconds=settings.CONSENT_VERIFY_DELAY_S)
    with transaction.atomic():
        to_verify: list[SyncPush] = []
        for (contact_id, push), result in zip(attempts.items(), results, strict=True):
            push.call_id = call_id
            push.response = _response_json(result)
            report.pushed[contact_id] = push
            if result.ok or not result.permanent:
                # (RECORD_LOCKED and the like: read back later; a mismatch retries it.)
                push.verify_due_at = due
                to_verify.append(push)
                continue
            push.verification = SyncPush.Verification.REJECTED
            push.save(update_fields=["call", "response", "verification"])
            report.rejected.append(contact_id)
            crm_field = _error_field(result, push.sent)
            if result.code == "NO_PERMISSION":
                kind = Discrepancy.Kind.PERMISSION_DENIED
            elif (
                result.code == "INVALID_DATA"
                and "id" in result.details
                and not result.details.get("api_name")
            ):
                kind, crm_field = Discrepancy.Kind.RECORD_MISSING, ""
            else:
                kind = Discrepancy.Kind.REJECTED
            discrepancy_record(
                contact_id=contact_id,
                crm_field=crm_field,
                kind=kind,
                zoho_id=push.zoho_id,
                expected=push.sent.get(crm_field) if crm_field else push.sent,
                actual=None,
                evidence={
                    "push": push.pk,
                    "sent": push.sent,
                    "zoho_answer": push.response,
                    "readback": None,
                    "Modified_By": None,
                    "Modified_Time": None,
                },
                hint=HINTS[kind].format(
                    field=crm_field or "the record",
                    code=result.code,
                    message=result.message,
                    zoho_id=push.zoho_id,
                    email="",
                ),
                push=push,
                now=now,
            )
        SyncPush.objects.bulk_update(to_verify, ["call", "response", "verify_due_at"])


# -- the outbox consumer -----------------------------------------------------------------------


def _claim_details(claim: OutboxClaim) -> tuple[set[int], bool]:
    """(contacts whose email withdrawal also goes to Campaigns, whether the batch is urgent)."""
    rows = OutboxEntry.objects.filter(pk__in=claim.entry_ids).select_related("purpose", "event")
    unsubscribe: set[int] = set()
    urgent = False
    for row in rows:
        urgent = urgent or row.priority == OutboxEntry.Priority.WITHDRAWAL
        if row.purpose is None or (
            row.purpose.code == EMAIL_PURPOSE
            and row.event is not None
            and row.event.status in (ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED)
        ):
            unsubscribe.add(row.contact_id)
    return unsubscribe, urgent


def outbox_batch_push(*, claim: OutboxClaim, zoho: ZohoClient) -> PushReport:
    """Push one claimed batch and mark its rows processed."""
    if not claim:
        return PushReport()
    unsubscribe, urgent = _claim_details(claim)
    return contacts_push(
        contact_ids=claim.contact_ids, zoho=zoho, claim=claim, unsubscribe=unsubscribe, urgent=urgent
    )
