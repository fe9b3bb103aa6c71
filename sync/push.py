"""Push: send each contact's projection to each of its CRM records, 100 records per update call
and module (a contact may have a Contact and a Lead, or duplicates an admin chose to write to all).

`outbox_batch_push` is what the workers run for one outbox claim; `contacts_push`
is the push itself (also used by retries, with ``force``):

1. find each contact's CRM records: `Contact.zoho_id`, else the records a previous
   lookup linked (`CrmLinkRecord`), else a lookup in bulk by email, phone or app user id
   in every configured module (`sync.linking`: 50 contacts per COQL query). None: the
   contact is "not in CRM" (not an error). Several in one module: a `duplicate`
   discrepancy, and none is written until an admin chooses (`sync.duplicates`);
2. project the *current* ledger state through the field mapping;
3. skip records whose latest push of these ledger versions and values Zoho has:
   verified, or answered for the record and awaiting its read-back. A push Zoho never
   answered (429, 5xx, a timeout, a worker that died) is *unknown*, not sent: while it is
   younger than the outbox lease its worker may still be at it (the rows wait for it);
   after that the record is read back (one call) and the change is written again unless
   Zoho holds it. A version Zoho acknowledged is never written twice;
4. renew the claim's lease (a worker that outlived it writes nothing another claim took),
   write the `SyncPush` rows (one per record, the attempt) *before* the call, then ONE
   `crm.update` per module and 100 records, then store Zoho's per-record answers, the
   per-record errors as discrepancies (a Lead gone because it was converted moves its link
   to its Contact instead, and the contact is queued again), the verify time, and mark the
   outbox rows processed, in one transaction. A call that fails after an earlier one of the
   batch was answered keeps that one's answers: the batch's retry skips those records.

Email withdrawals and suppressions also unsubscribe the address from every
Campaigns list in ``ZOHO_CAMPAIGNS_LIST_KEYS`` ("write to both", `sync.push_campaigns`).
Campaigns out of reach (its limit, its lock, an outage) does not hold the CRM write back: it
is made, then the error is raised with the batch's rows unprocessed, and the retry finds CRM
delivered and sends only the unsubscribes Campaigns did not take.
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
from sync.linking import consent_ids_forget, contacts_link, lead_converted_move
from sync.models import CrmLinkRecord, Discrepancy, SyncPush
from sync.outbox import (
    OutboxClaim,
    contacts_requeue,
    lease,
    outbox_claim_renew,
    outbox_finish,
    outbox_release,
)
from sync.projection import Projection, consent_picklists, project, read_back, read_fields, to_crm_record
from sync.push_campaigns import contacts_unsubscribe
from sync.webhooks import webhooks_on_push_commit
from sync.zoho import RecordResult, ZohoClient
from sync.zoho.crm import MAX_RECORDS_PER_CALL
from sync.zoho.errors import ZohoTransientError

logger = logging.getLogger(__name__)

EMAIL_PURPOSE = "email_marketing"


@dataclass
class PushReport:
    """What one push did, for tasks, `sync_now` and tests. The lists are of contacts; a contact
    with several CRM records (a Lead and a Contact, duplicates written to all) counts once."""

    pushed: dict[int, SyncPush] = field(default_factory=dict)
    # Every push made (one per record written).
    pushes: list[SyncPush] = field(default_factory=list)
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

    def merge(self, other: PushReport) -> None:
        self.pushed.update(other.pushed)
        self.pushes += other.pushes
        self.skipped += other.skipped
        self.not_in_crm += other.not_in_crm
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        self.busy += other.busy
        self.lost += other.lost
        self.unsubscribed += other.unsubscribed
        self.calls += other.calls
        self.link_calls += other.link_calls


# A record a push writes: (contact id, module, record id).
Target = tuple[int, str, str]


# -- finding the CRM records -------------------------------------------------------------------


def crm_records_resolve(
    *, contacts: list[Contact], zoho: ZohoClient, report: PushReport
) -> dict[int, list[CrmLinkRecord]]:
    """{contact id: its written CRM records} for the contacts linked to at least one record, linked
    in bulk (`sync.linking`: 50 contacts per COQL query and module, links kept)."""
    _, linked = contacts_link(contacts=contacts, zoho=zoho)
    report.not_in_crm += linked.not_in_crm
    report.duplicates += linked.duplicates
    report.link_calls += linked.calls
    return linked.linked


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


def _target(push: SyncPush) -> Target:
    return (push.contact_id, push.module, push.zoho_id)


def latest_pushes(contact_ids: list[int]) -> dict[Target, SyncPush]:
    """Each record's latest push, for these contacts."""
    latest: dict[Target, SyncPush] = {}
    for push in SyncPush.objects.filter(contact_id__in=contact_ids).order_by("contact_id", "-id"):
        latest.setdefault(_target(push), push)
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
    """Push the current projection of these contacts (at most 100) to each of their CRM
    records: one update call per module and 100 records.

    ``force``: write even when the latest push carries the same versions (a retry).
    ``claim``: its outbox rows are marked processed with the outcome.
    ``unsubscribe``: contacts whose email withdrawal also goes to Campaigns.
    Transient Zoho errors propagate (nothing is marked processed, the attempt rows of the
    calls not answered are removed: those writes did not happen). Campaigns out of reach for
    the unsubscribes does not hold the CRM writes back: they are made, then its error is raised
    with nothing marked processed, so the retry finds them delivered and unsubscribes again.
    """
    if len(set(contact_ids)) > 100:
        raise ValueError("at most 100 contacts per push")
    report = PushReport()
    contacts = list(Contact.objects.filter(pk__in=contact_ids).order_by("pk"))
    level = quota.WITHDRAWAL if urgent else quota.OPT_IN
    # An error that held part of the batch back (Campaigns out of reach for the unsubscribes, a
    # gone Lead's look-up): the rest is done and stored, then it is raised, the rows unprocessed.
    stopped: ZohoTransientError | None = None
    with quota.urgency(level):
        projections = project([c.pk for c in contacts], picklists=consent_picklists(zoho=zoho))
        if unsubscribe and settings.ZOHO_CAMPAIGNS_LIST_KEYS:
            report.unsubscribed, stopped = contacts_unsubscribe(
                contacts=contacts, projections=projections, unsubscribe=unsubscribe, zoho=zoho
            )
        linked = crm_records_resolve(contacts=contacts, zoho=zoho, report=report)
        rows: dict[Target, CrmLinkRecord] = {
            (cid, r.module, r.record_id): r for cid, records in linked.items() for r in records
        }
        now = timezone.now()
        latest = latest_pushes(list(linked))
        to_write: list[Target] = []
        unknown: list[Target] = []
        skipped: list[Target] = []
        busy: dict[int, SyncPush] = {}
        for target in rows:
            contact_id = target[0]
            previous = latest.get(target)
            if force or not _same_change(previous, projections[contact_id]):
                to_write.append(target)
            elif previous is not None and _delivered(previous):
                skipped.append(target)
            elif _unanswered(previous) and previous is not None and previous.created_at > now - lease():
                # Its push may still be in flight (another worker, within its lease): not ours.
                if contact_id not in busy or previous.created_at > busy[contact_id].created_at:
                    busy[contact_id] = previous
            elif _unanswered(previous):
                unknown.append(target)
            else:
                # Zoho refused it, or its read-back did not find it: write this change again.
                to_write.append(target)
        if unknown:
            found = _unanswered_found(
                targets=unknown, projections=projections, latest=latest, zoho=zoho, now=now
            )
            report.calls += len({t[1] for t in unknown})
            skipped += found
            to_write += [t for t in unknown if t not in found]
        if claim is not None and to_write:
            held = outbox_claim_renew(claim=claim)
            report.lost = sorted({t[0] for t in to_write if t[0] not in held})
            to_write = [t for t in to_write if t[0] in held]
        report.busy = sorted(busy)
        written = {t[0] for t in to_write}
        report.skipped = sorted({t[0] for t in skipped} - written - set(busy))
        finished = [c for c in claim.contact_ids if c not in busy] if claim is not None else []
        if not to_write:
            with transaction.atomic():
                _unanswered_settle([latest[t] for t in skipped], now)
                if claim is not None and stopped is None:
                    _busy_release(claim, busy, now)
                    outbox_finish(claim=claim, contact_ids=finished, now=now)
            if stopped is not None:
                raise stopped
            return report

        # bulk_create returns the primary keys on PostgreSQL and on SQLite 3.35+.
        created = SyncPush.objects.bulk_create(
            [
                SyncPush(
                    contact_id=contact_id,
                    module=module,
                    zoho_id=record_id,
                    sent=projections[contact_id].values,
                    ledger_versions=projections[contact_id].ledger_versions,
                    attempt=_attempt(
                        latest.get((contact_id, module, record_id)), projections[contact_id], force=force
                    ),
                )
                for contact_id, module, record_id in to_write
            ]
        )
        attempts = dict(zip(to_write, created, strict=True))
        requeue: list[int] = []
        calls = [
            [t for t in to_write if t[1] == module][start : start + MAX_RECORDS_PER_CALL]
            for module in sorted({t[1] for t in to_write})
            for start in range(0, sum(1 for t in to_write if t[1] == module), MAX_RECORDS_PER_CALL)
        ]
        for number, targets in enumerate(calls):
            records = [
                to_crm_record(t[2], projections[t[0]].values, consent_id=rows[t].consent_id or None)
                for t in targets
            ]
            try:
                update = zoho.crm.update(records, module=targets[0][1])
            except BaseException:
                # This call and those not made did not write; the calls answered before it did.
                unsent = [attempts[t].pk for later in calls[number:] for t in later]
                SyncPush.objects.filter(pk__in=unsent).delete()
                raise
            report.calls += 1
            # Records that had no consent record have one now, made by this write: read its id next time.
            consent_ids_forget(records=[rows[t] for t in targets])
            converted, unlooked = _store_results(
                {t: attempts[t] for t in targets}, update.results, update.call_id, report, zoho
            )
            requeue += converted
            stopped = stopped or unlooked
        with transaction.atomic():
            _unanswered_settle([latest[t] for t in skipped], timezone.now())
            _resent_supersede([latest[t] for t in to_write if _unanswered(latest.get(t))], timezone.now())
            # Leads converted since they were linked: the Contact they became is written next.
            contacts_requeue(contact_ids=sorted(set(requeue)))
            if claim is not None and stopped is None:
                _busy_release(claim, busy, now)
                outbox_finish(claim=claim, contact_ids=finished)
    if stopped is not None:
        raise stopped
    return report


def _attempt(previous: SyncPush | None, projection: Projection, *, force: bool) -> int:
    """1 for a new change; one more than the last push's for the same change written again."""
    if previous is not None and (force or _same_change(previous, projection)):
        return previous.attempt + 1
    return 1


def _unanswered_found(
    *,
    targets: list[Target],
    projections: dict[int, Projection],
    latest: dict[Target, SyncPush],
    zoho: ZohoClient,
    now: datetime,
) -> list[Target]:
    """Read back the records of pushes that never got Zoho's answer (one call per module): the
    records that hold the values after all. The others are written again, unless this change
    already went unanswered more times than the retry budget: then it is also a discrepancy,
    so that the retries, and their alert, take it in hand."""
    found: list[Target] = []
    for module in sorted({t[1] for t in targets}):
        mine = [t for t in targets if t[1] == module]
        compared = sorted(set().union(*(projections[t[0]].compared for t in mine)))
        records = {
            str(r.get("id")): r
            for r in zoho.crm.get_many([t[2] for t in mine], read_fields(compared), module=module)
        }
        for target in mine:
            projection, push = projections[target[0]], latest[target]
            record = records.get(target[2])
            readback = read_back(record, projection.compared) if record is not None else {}
            if record is not None and not projection.differences(readback):
                push.readback = readback
                found.append(target)
            elif push.attempt > settings.SYNC_MAX_RETRIES:
                discrepancy_record(
                    contact_id=target[0],
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


def _unanswered_settle(pushes: list[SyncPush], now: datetime) -> None:
    """Skipped records whose push was unanswered but which hold its values: read them back
    after the verify delay like any answered push (a workflow may still reset them)."""
    settled = [
        p for p in pushes if p.verification == SyncPush.Verification.PENDING and p.verify_due_at is None
    ]
    for push in settled:
        push.verify_due_at = now + timedelta(seconds=settings.CONSENT_VERIFY_DELAY_S)
    SyncPush.objects.bulk_update(settled, ["verify_due_at", "readback"])


def _resent_supersede(pushes: list[SyncPush], now: datetime) -> None:
    """An unanswered push written again is replaced by the new attempt."""
    for push in pushes:
        push.verification = SyncPush.Verification.SUPERSEDED
        push.verified_at = now
    SyncPush.objects.bulk_update(pushes, ["verification", "verified_at"])


def _busy_release(claim: OutboxClaim, busy: dict[int, SyncPush], now: datetime) -> None:
    """Give back the rows of contacts whose push is in flight elsewhere: claimable again when
    that push's lease ends (by then it is answered, or its worker died)."""
    for contact_id, push in busy.items():
        remaining = push.created_at + lease() - now
        outbox_release(
            claim=claim, delay=max(remaining, timedelta(seconds=1)), contact_ids=[contact_id], now=now
        )


def _lead_gone(target: Target, result: RecordResult) -> bool:
    """Zoho holds no Lead of that id: converted to a Contact, or deleted (a look-up tells)."""
    return target[1] == "Leads" and bool(result.permanent) and result.code != "NO_PERMISSION" and result.gone


def _store_results(
    attempts: dict[Target, SyncPush],
    results: list[RecordResult],
    call_id: int | None,
    report: PushReport,
    zoho: ZohoClient,
) -> tuple[list[int], ZohoTransientError | None]:
    """Store Zoho's answer for each record; returns the contacts whose Lead was converted (their
    link moved to the Contact, which the caller queues a push of), and the error that stopped
    the look-ups of where gone Leads went, if one did.

    Those look-ups (one call each) are made first, outside the transaction that stores the
    answers: a look-up Zoho fails does not roll back the answers of the other records. The
    records it left unknown keep no answer (their attempt rows are removed, as for a call not
    made): the caller raises the error after storing the rest, and the retry writes them again."""
    converted: list[int] = []
    now = timezone.now()
    due = now + timedelta(seconds=settings.CONSENT_VERIFY_DELAY_S)
    became: dict[Target, str | None] = {}
    stopped: ZohoTransientError | None = None
    for target, result in zip(attempts, results, strict=True):
        if _lead_gone(target, result):
            try:
                became[target] = zoho.crm.lead_conversion(target[2])
            except ZohoTransientError as exc:
                stopped = exc
                break
    unknown = [
        target
        for target, result in zip(attempts, results, strict=True)
        if _lead_gone(target, result) and target not in became
    ]
    with transaction.atomic():
        to_verify: list[SyncPush] = []
        if unknown:
            SyncPush.objects.filter(pk__in=[attempts[t].pk for t in unknown]).delete()
        for (target, push), result in zip(attempts.items(), results, strict=True):
            contact_id = target[0]
            if target in unknown:
                continue
            push.call_id = call_id
            push.response = _response_json(result)
            report.pushed.setdefault(contact_id, push)
            report.pushes.append(push)
            if result.ok or not result.permanent:
                # (RECORD_LOCKED and the like: read back later; a mismatch retries it.)
                push.verify_due_at = due
                to_verify.append(push)
                continue
            crm_field = _error_field(result, push.sent)
            if result.code == "NO_PERMISSION":
                kind = Discrepancy.Kind.PERMISSION_DENIED
            elif result.gone:
                kind, crm_field = Discrepancy.Kind.RECORD_MISSING, ""
            else:
                kind = Discrepancy.Kind.REJECTED
            contact_record = became.get(target) if kind == Discrepancy.Kind.RECORD_MISSING else None
            if contact_record is not None:
                lead_converted_move(
                    contact_id=contact_id, record_id=push.zoho_id, contact_record=contact_record
                )
                push.verification = SyncPush.Verification.SUPERSEDED
                push.save(update_fields=["call", "response", "verification"])
                converted.append(contact_id)
                continue
            push.verification = SyncPush.Verification.REJECTED
            push.save(update_fields=["call", "response", "verification"])
            if contact_id not in report.rejected:
                report.rejected.append(contact_id)
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
        # The clients' webhooks hear of the changes Zoho refused once this commits (issue 16).
        webhooks_on_push_commit(pushes=[push for target, push in attempts.items() if target not in unknown])
    return converted, stopped


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
