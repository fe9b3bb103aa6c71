"""Verify: read pushed records back after the delay and compare with the ledger *now*.

`pushes_verify_due` claims due pushes (their `verify_due_at` is pushed forward
by a lease, so two workers never read the same push back), reads them back 100
ids a call per module (a push is of one record: a contact with a Lead and a Contact, or
duplicates written to all, has one push per record), and compares every mapped field with
the projection of the ledger state at that moment:

- a newer push of the contact exists, or the ledger's projection moved on since the push:
  **superseded** (the newer change has its own push, or one is made now); newer events that
  restate the same values (the same status again) do not supersede: the push is read back;
- every field matches: **verified**; once every written record of the contact is verified
  with these values, the contact's open discrepancies on those fields are resolved ("a later
  matching read-back resolves the discrepancy"): a record that matches never resolves what
  another record of the contact still differs on;
- a field differs: **mismatch**, a discrepancy per field with its evidence and a
  root cause: the API user may not edit the field (Zoho's field metadata says so)
  or our API user is the last modifier → ``not_applied``; someone else (a
  workflow, a user) modified the record after our write → ``overwritten``.

A Lead record missing at read-back that Zoho says was converted moves the contact's link to
its Contact (`sync.linking.lead_converted_relink`): the push is superseded and the contact
queued, no discrepancy. A push that Zoho never answered (its read-back was scheduled because the next claim found
the record holding it) whose values are gone is not a discrepancy but a lost write: its
resend is queued as an outbox row in the transaction that settles it, up to
``SYNC_MAX_RETRIES`` attempts of the change; past them it is a discrepancy like any other.
A push superseded by a ledger that moved on with no newer push queues its successor the
same way. No read-back leaves a push ``mismatch`` without a discrepancy or a queued resend.

`discrepancies_retry_due` re-pushes the current projection of contacts whose
discrepancy's backoff has passed; the next read-back confirms or resolves it.
After ``SYNC_MAX_RETRIES`` failed retries one alert goes out (`sync.alerts`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from sync.discrepancies import HINTS, discrepancies_resolve, discrepancy_record
from sync.linking import lead_converted_relink
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, SyncPush
from sync.optout_clock import withdrawal_clocks_verified
from sync.outbox import BATCH_CONTACTS, contacts_requeue, lease
from sync.projection import CONSENT_OBJECT, Projection, project, read_back, read_fields
from sync.push import PushReport, contacts_push
from sync.webhooks import webhooks_after_verify
from sync.zoho import ZohoClient

logger = logging.getLogger(__name__)

# The API user and the field permissions change rarely; re-read them this often.
METADATA_TTL_S = 300


@dataclass
class VerifyReport:
    verified: int = 0
    mismatched: int = 0
    superseded: int = 0
    missing: int = 0
    requeued: int = 0
    discrepancies: list[int] = field(default_factory=list)

    def merge(self, other: VerifyReport) -> None:
        self.verified += other.verified
        self.mismatched += other.mismatched
        self.superseded += other.superseded
        self.missing += other.missing
        self.requeued += other.requeued
        self.discrepancies += other.discrepancies


# -- what Zoho says about us -------------------------------------------------------------------


def fields_not_editable(*, zoho: ZohoClient, module: str = "Contacts") -> set[str]:
    """Flat field names the API user may not edit in the module (field-level security), from
    Zoho's field metadata as `FieldInfo.api_editable` reads it (``read_only`` for this user,
    ``field_read_only`` for everyone, ``operation_type.api_update``, the profile's permission:
    the rule `zoho_doctor` applies too). The consent object's keys by their own metadata."""
    key = f"sync:not-editable:{zoho.config.cache_prefix}:{module}"
    value = cache.get(key)
    if value is None:
        user = zoho.crm.current_user()
        infos = zoho.crm.fields(module, profile_id=user.profile_id)
        blocked = {name for name, info in infos.items() if not info.api_editable}
        if CONSENT_OBJECT in infos:
            consent = zoho.crm.consent_fields(profile_id=user.profile_id)
            blocked |= {f"{CONSENT_OBJECT}.{name}" for name, info in consent.items() if not info.api_editable}
        value = sorted(blocked)
        cache.set(key, value, METADATA_TTL_S)
    return set(value)


# -- verification ------------------------------------------------------------------------------


def _claim_due(*, now: datetime, ignore_delay: bool, limit: int) -> list[SyncPush]:
    """Up to `limit` due pending pushes with distinct CRM ids, their due time moved on by a lease."""
    claim_until = now + lease()
    pending = SyncPush.objects.filter(
        verification=SyncPush.Verification.PENDING, verify_due_at__isnull=False, verify_due_at__lt=claim_until
    )
    if not ignore_delay:
        pending = pending.filter(verify_due_at__lte=now)
    ids: list[int] = []
    zoho_ids: set[str] = set()
    for pk, zoho_id in pending.order_by("verify_due_at", "id").values_list("id", "zoho_id")[: limit * 3]:
        if zoho_id not in zoho_ids:
            zoho_ids.add(zoho_id)
            ids.append(pk)
            if len(ids) >= limit:
                break
    if not ids:
        return []
    with transaction.atomic():
        SyncPush.objects.filter(pk__in=ids, verification=SyncPush.Verification.PENDING).filter(
            verify_due_at__lt=claim_until
        ).update(verify_due_at=claim_until)
        return list(SyncPush.objects.filter(pk__in=ids, verify_due_at=claim_until).order_by("id"))


def pushes_verify_due(
    *,
    zoho: ZohoClient,
    now: datetime | None = None,
    ignore_delay: bool = False,
    max_batches: int | None = None,
) -> VerifyReport:
    """Verify every push whose delay passed (all pending ones with ``ignore_delay``)."""
    report = VerifyReport()
    batches = 0
    while max_batches is None or batches < max_batches:
        pushes = _claim_due(now=now or timezone.now(), ignore_delay=ignore_delay, limit=BATCH_CONTACTS)
        if not pushes:
            break
        report.merge(pushes_verify(pushes=pushes, zoho=zoho))
        batches += 1
    return report


def _evidence(
    push: SyncPush, record: Mapping[str, Any] | None, readback: Mapping[str, Any]
) -> dict[str, Any]:
    record = record or {}
    return {
        "push": push.pk,
        "sent": push.sent,
        "zoho_answer": push.response,
        "readback": dict(readback),
        "Modified_By": record.get("Modified_By"),
        "Modified_Time": record.get("Modified_Time"),
    }


def _newest(contact_ids: list[int]) -> dict[tuple[int, str, str], int]:
    """Each record's newest push id, for these contacts."""
    rows = (
        SyncPush.objects.filter(contact_id__in=contact_ids)
        .values("contact_id", "module", "zoho_id")
        .annotate(newest=Max("id"))
        .values_list("contact_id", "module", "zoho_id", "newest")
    )
    return {(c, m, z): n for c, m, z, n in rows}


def pushes_verify(*, pushes: list[SyncPush], zoho: ZohoClient) -> VerifyReport:
    """Read these pushes' records back (one call per module, at most 100) and settle each push."""
    report = VerifyReport()
    now = timezone.now()
    contact_ids = sorted({p.contact_id for p in pushes})
    newest = _newest(contact_ids)
    projections = project(contact_ids)
    settled = _Settled()
    verified: list[tuple[SyncPush, Projection]] = []
    live: list[SyncPush] = []
    repush: list[int] = []
    for push in pushes:
        projection = projections[push.contact_id]
        if newest.get((push.contact_id, push.module, push.zoho_id), push.pk) > push.pk:
            settled.add(push, SyncPush.Verification.SUPERSEDED, now)
            report.superseded += 1
        elif push.sent != projection.values:
            # The ledger (or the mapping, or a suppression) moved on and no newer push carries it
            # yet: queue a push of the current projection (if an outbox row of the change is
            # already waiting, that push carries it and the queued one finds it done).
            settled.add(push, SyncPush.Verification.SUPERSEDED, now)
            report.superseded += 1
            repush.append(push.contact_id)
        else:
            # What we sent is still what the ledger says, even if newer events restated it
            # (the same status again makes no push): read it back.
            live.append(push)
    mismatches: list[tuple[SyncPush, dict[str, Any], dict[str, tuple[Any, Any]]]] = []
    # Per contact: the fields some record read back differs on (no other record's match resolves them).
    differing: dict[int, set[str]] = {}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for module in sorted({p.module for p in live}):
        mine = [p for p in live if p.module == module]
        compared = sorted(set().union(*(projections[p.contact_id].compared for p in mine)))
        for r in zoho.crm.get_many([p.zoho_id for p in mine], read_fields(compared), module=module):
            records[(module, str(r.get("id")))] = r
    for push in live:
        projection = projections[push.contact_id]
        record = records.get((push.module, push.zoho_id))
        if (
            record is None
            and lead_converted_relink(
                contact_id=push.contact_id, module=push.module, record_id=push.zoho_id, zoho=zoho
            )
            is not None
        ):
            # A Lead converted to a Contact: the contact's next push writes the Contact.
            settled.add(push, SyncPush.Verification.SUPERSEDED, now)
            report.superseded += 1
            repush.append(push.contact_id)
            continue
        if record is None:
            settled.add(push, SyncPush.Verification.MISMATCH, now)
            report.missing += 1
            differing.setdefault(push.contact_id, set()).add("")
            d = discrepancy_record(
                contact_id=push.contact_id,
                crm_field="",
                kind=Discrepancy.Kind.RECORD_MISSING,
                zoho_id=push.zoho_id,
                expected=push.sent,
                evidence=_evidence(push, None, {}),
                hint=HINTS[Discrepancy.Kind.RECORD_MISSING].format(zoho_id=push.zoho_id),
                push=push,
                now=now,
            ).discrepancy
            report.discrepancies.append(d.pk)
            continue
        readback = read_back(record, projection.compared)
        differences = projection.differences(readback)
        if not differences:
            settled.add(push, SyncPush.Verification.VERIFIED, now, readback)
            verified.append((push, projection))
            report.verified += 1
        elif not push.response and push.attempt <= settings.SYNC_MAX_RETRIES:
            # Zoho never answered this write (its worker died, or a 429 or timeout cut it
            # off) and the record does not hold it: a resend, not a discrepancy yet. Past
            # the retry budget it is a discrepancy like any other (below).
            settled.add(push, SyncPush.Verification.MISMATCH, now, readback)
            report.mismatched += 1
            repush.append(push.contact_id)
            differing.setdefault(push.contact_id, set()).update(differences)
        else:
            settled.add(push, SyncPush.Verification.MISMATCH, now, readback)
            report.mismatched += 1
            mismatches.append((push, record, differences))
            differing.setdefault(push.contact_id, set()).update(differences)
    for push, _, _ in mismatches:
        projection = projections[push.contact_id]
        matching = [f for f in projection.compared if f not in differing[push.contact_id]]
        if _all_read_here(push.contact_id, settled):
            discrepancies_resolve(
                contact_id=push.contact_id,
                crm_fields=matching,
                resolution=f"verified by push {push.pk}",
                now=now,
            )
    if mismatches:
        ours = zoho.crm.api_user_id()
        for push, record, differences in mismatches:
            blocked = fields_not_editable(zoho=zoho, module=push.module)
            readback = read_back(record, projections[push.contact_id].compared)
            modifier = record.get("Modified_By") or {}
            by_us = str(modifier.get("id", "")) == ours
            # One transaction per contact: a retry claim sees all of this read-back's
            # confirmations or none, so the contact's fields stay on one retry schedule
            # (claimed apart, each field would re-push the contact on its own).
            with transaction.atomic():
                for crm_field, (expected, actual) in differences.items():
                    kind = (
                        Discrepancy.Kind.NOT_APPLIED
                        if crm_field in blocked or by_us
                        else Discrepancy.Kind.OVERWRITTEN
                    )
                    d = discrepancy_record(
                        contact_id=push.contact_id,
                        crm_field=crm_field,
                        kind=kind,
                        zoho_id=push.zoho_id,
                        expected=expected,
                        actual=actual,
                        evidence=_evidence(push, record, readback),
                        hint=HINTS[kind].format(field=crm_field),
                        push=push,
                        now=now,
                    ).discrepancy
                    report.discrepancies.append(d.pk)
    with transaction.atomic():
        # A push settled as superseded or mismatched without a discrepancy leaves with its
        # resend queued, in the same transaction: no path leaves it unanswered.
        settled.save()
        # A contact is verified when each of its written records is (a Lead and a Contact, or
        # duplicates written to all): only then are its discrepancies resolved.
        whole = [(p, pr) for p, pr in verified if p.contact_id not in differing and _all_verified(p, pr)]
        _verified_save(whole, now)
        withdrawal_clocks_verified(pushes=[p for p, _ in whole])
        report.requeued += contacts_requeue(contact_ids=sorted(set(repush)))
        # API clients' webhooks hear of their changes verified or failed, once this is committed.
        transaction.on_commit(partial(webhooks_after_verify, push_ids=[p.pk for p in settled]), robust=True)
    return report


def _all_read_here(contact_id: int, settled: list[SyncPush]) -> bool:
    """Whether this read-back settled a push of every written record of the contact (only then
    may a field that matched on every record resolve its discrepancy)."""
    written = set(
        CrmLinkRecord.objects.filter(contact_id=contact_id, role__in=CrmLinkRecord.WRITTEN).values_list(
            "module", "record_id"
        )
    )
    here = {(p.module, p.zoho_id) for p in settled if p.contact_id == contact_id}
    return written <= here


class _Settled(list[SyncPush]):
    """The pushes settled by one read-back, written in one statement."""

    def add(
        self, push: SyncPush, verification: str, now: datetime, readback: Mapping[str, Any] | None = None
    ) -> None:
        push.verification = verification
        push.verified_at = now
        if readback is not None:
            push.readback = dict(readback)
        self.append(push)

    def save(self) -> None:
        if self:
            SyncPush.objects.bulk_update(self, ["verification", "verified_at", "readback"])


def _verified_save(verified: list[tuple[SyncPush, Projection]], now: datetime) -> None:
    """A matching read-back resolves the contact's open discrepancies on the compared fields
    (and on the whole record) and dates the link's last verified write."""
    by_fields: dict[tuple[str, ...], list[SyncPush]] = {}
    for push, projection in verified:
        by_fields.setdefault(tuple(projection.compared), []).append(push)
    for compared, pushes in by_fields.items():
        # Open discrepancies are few: find the contacts that have any in one query, and resolve
        # theirs naming the push that verified them.
        contact_ids = [p.contact_id for p in pushes]
        open_contacts = set(
            Discrepancy.objects.filter(
                status=Discrepancy.Status.OPEN, contact_id__in=contact_ids, crm_field__in=[*compared, ""]
            ).values_list("contact_id", flat=True)
        )
        for push in pushes:
            if push.contact_id in open_contacts:
                discrepancies_resolve(
                    contact_id=push.contact_id,
                    crm_fields=[*compared, ""],
                    resolution=f"verified by push {push.pk}",
                    now=now,
                )
    CrmLink.objects.filter(contact_id__in=[p.contact_id for p, _ in verified]).update(last_verified_at=now)


def _all_verified(push: SyncPush, projection: Projection) -> bool:
    """Whether every written record of the push's contact holds the projection: its latest push
    is verified with these values (a contact with a Lead and a Contact, or duplicates written to
    all, is verified when each of them is)."""
    written = list(
        CrmLinkRecord.objects.filter(contact_id=push.contact_id, role__in=CrmLinkRecord.WRITTEN).values_list(
            "module", "record_id"
        )
    )
    if len(written) <= 1:
        return True
    latest: dict[tuple[str, str], SyncPush] = {}
    for other in SyncPush.objects.filter(contact_id=push.contact_id).order_by("-id"):
        latest.setdefault((other.module, other.zoho_id), other)
    return all(
        (key in latest)
        and latest[key].verification == SyncPush.Verification.VERIFIED
        and latest[key].sent == projection.values
        for key in written
    )


def _repush(*, contact_ids: list[int], zoho: ZohoClient) -> PushReport:
    report = PushReport()
    for start in range(0, len(contact_ids), BATCH_CONTACTS):
        report.merge(
            contacts_push(contact_ids=contact_ids[start : start + BATCH_CONTACTS], zoho=zoho, force=True)
        )
    return report


# -- retries -----------------------------------------------------------------------------------


@dataclass
class RetryReport:
    discrepancies: int = 0
    contacts: int = 0


def discrepancies_retry_due(*, zoho: ZohoClient, now: datetime | None = None) -> RetryReport:
    """Re-push the current projection of every contact whose discrepancy is due for a retry."""
    now = now or timezone.now()
    report = RetryReport()
    due = Discrepancy.objects.filter(
        status=Discrepancy.Status.OPEN,
        next_retry_at__lte=now,
        retries__lt=settings.SYNC_MAX_RETRIES,
    ).exclude(kind__in=[Discrepancy.Kind.DUPLICATE, Discrepancy.Kind.NOT_IN_CRM])
    ids = list(due.order_by("next_retry_at").values_list("id", flat=True)[:1000])
    if not ids:
        return report
    with transaction.atomic():
        claimed = list(
            Discrepancy.objects.select_for_update().filter(pk__in=ids, next_retry_at__lte=now, status="open")
        )
        for d in claimed:
            d.next_retry_at = now + lease()
            d.evidence = {**d.evidence, "retry_since": now.isoformat()}
            d.save(update_fields=["next_retry_at", "evidence", "updated_at"])
    contact_ids = sorted({d.contact_id for d in claimed})
    report.discrepancies = len(claimed)
    report.contacts = len(contact_ids)
    _repush(contact_ids=contact_ids, zoho=zoho)
    return report
