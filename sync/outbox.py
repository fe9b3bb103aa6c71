"""Claiming the ledger's outbox: which contacts a worker pushes next.

The ledger writes an `OutboxEntry` in every state change's transaction; the sync
consumes them here. A claim takes pending rows in urgency order (withdrawals,
then opt-ins, then the rest; oldest first) for at most `BATCH_CONTACTS` distinct
contacts, and stamps them with a unique claim token, so two workers never take
the same row:

- PostgreSQL: the candidate rows are read `FOR UPDATE SKIP LOCKED`;
- SQLite: the write transaction is IMMEDIATE (one writer at a time), and the
  stamp is a conditional UPDATE (only rows still unclaimed, or whose lease ran out).

Claims are also serialized per database (a transaction-scoped advisory lock on
PostgreSQL), so that a contact already claimed by a push in flight is never
claimed by a second worker for a newer row: two pushes of one contact racing
each other could leave the older values in Zoho.

A claim older than `lease()` is taken again (its worker died). Rows are marked
processed only after the push's outcome is stored; a transient Zoho error
releases them with a backoff by back-dating their lease.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from compliance.models import ConsentEvent, ConsentStatus, OutboxEntry
from sync.kick import outbox_kick

# Zoho takes at most 100 records per update call.
BATCH_CONTACTS = 100


def lease() -> timedelta:
    """A push takes seconds; a claim older than ``SYNC_OUTBOX_LEASE_S`` (renewed just before
    its write) belongs to a worker that died."""
    return timedelta(seconds=settings.SYNC_OUTBOX_LEASE_S)


# How many pending rows one claim looks at to find its contacts.
SCAN_ROWS = 1000
# Any 63-bit number of our own: the advisory lock that serializes claims on PostgreSQL.
_CLAIM_LOCK_KEY = 0x5F0C_0A1B


@dataclass(frozen=True)
class OutboxClaim:
    token: str
    contact_ids: list[int]
    entry_ids: list[int]

    def __bool__(self) -> bool:
        return bool(self.entry_ids)


def _claimable(now: datetime) -> Q:
    return Q(processed_at__isnull=True) & (Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - lease()))


def outbox_waiting(now: datetime | None = None) -> bool:
    """Are there rows no claim holds (e.g. of contacts that were busy when the last sweep ran)?"""
    return OutboxEntry.objects.filter(_claimable(now or timezone.now())).exists()


def outbox_pending_count() -> int:
    return OutboxEntry.objects.filter(processed_at__isnull=True).count()


def outbox_claim(
    *,
    worker: str,
    max_contacts: int = BATCH_CONTACTS,
    urgent: bool | None = None,
    now: datetime | None = None,
) -> OutboxClaim:
    """Claim the pending rows of up to `max_contacts` contacts, most urgent first.

    ``urgent``: True, only contacts with a withdrawal waiting; False, only those without.
    The sweep queues the two apart (`sync.tasks.push`), so that a withdrawal is never in a
    batch queued behind a backlog's."""
    now = now or timezone.now()
    token = f"{worker[:60]}:{uuid.uuid4().hex[:16]}"
    postgres = connection.vendor == "postgresql"
    with transaction.atomic():
        if postgres:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_CLAIM_LOCK_KEY])
        busy = OutboxEntry.objects.filter(processed_at__isnull=True, claimed_at__gte=now - lease()).values(
            "contact_id"
        )
        candidates = (
            OutboxEntry.objects.filter(_claimable(now))
            .exclude(contact_id__in=busy)
            .order_by("priority", "id")
        )
        withdrawal = Q(priority=OutboxEntry.Priority.WITHDRAWAL)
        if urgent:
            candidates = candidates.filter(withdrawal)
        elif urgent is not None:
            waiting = OutboxEntry.objects.filter(withdrawal, processed_at__isnull=True).values("contact_id")
            candidates = candidates.exclude(contact_id__in=waiting)
        if postgres:
            candidates = candidates.select_for_update(skip_locked=True)
        contact_ids: list[int] = []
        seen: set[int] = set()
        for contact_id in candidates.values_list("contact_id", flat=True)[:SCAN_ROWS]:
            if contact_id not in seen:
                seen.add(contact_id)
                contact_ids.append(contact_id)
                if len(contact_ids) >= max_contacts:
                    break
        if not contact_ids:
            return OutboxClaim(token=token, contact_ids=[], entry_ids=[])
        OutboxEntry.objects.filter(_claimable(now), contact_id__in=contact_ids).update(
            claimed_at=now, claimed_by=token, attempts=F("attempts") + 1
        )
        entry_ids = list(OutboxEntry.objects.filter(claimed_by=token).values_list("id", flat=True))
        claimed_contacts = set(
            OutboxEntry.objects.filter(claimed_by=token).values_list("contact_id", flat=True)
        )
    return OutboxClaim(
        token=token, contact_ids=[c for c in contact_ids if c in claimed_contacts], entry_ids=entry_ids
    )


def outbox_claim_take(*, token: str, now: datetime | None = None) -> OutboxClaim:
    """Start working on a claim made earlier (by the sweep that queued the task).

    The rows move to a fresh token, so a message delivered twice at once finds
    nothing the second time; a run whose worker dies leaves its rows to the lease.
    """
    now = now or timezone.now()
    run = f"{token[:80]}/{uuid.uuid4().hex[:8]}"
    OutboxEntry.objects.filter(claimed_by=token, processed_at__isnull=True).update(
        claimed_by=run, claimed_at=now
    )
    rows = list(
        OutboxEntry.objects.filter(claimed_by=run, processed_at__isnull=True).values_list("id", "contact_id")
    )
    return OutboxClaim(token=run, contact_ids=sorted({c for _, c in rows}), entry_ids=[pk for pk, _ in rows])


def outbox_claim_return(*, claim: OutboxClaim, token: str) -> int:
    """Hand a run's rows back to the claim token it took them from (its task will retry), leased anew."""
    return OutboxEntry.objects.filter(claimed_by=claim.token, processed_at__isnull=True).update(
        claimed_by=token, claimed_at=timezone.now()
    )


def outbox_finish(
    *, claim: OutboxClaim, contact_ids: list[int] | None = None, now: datetime | None = None
) -> int:
    """Mark the claim's rows (or those of some of its contacts) processed. Call inside the
    transaction that stores the push's outcome."""
    rows = OutboxEntry.objects.filter(claimed_by=claim.token, processed_at__isnull=True)
    if contact_ids is not None:
        rows = rows.filter(contact_id__in=contact_ids)
    return rows.update(processed_at=now or timezone.now())


def outbox_release(
    *, claim: OutboxClaim, delay: timedelta, contact_ids: list[int] | None = None, now: datetime | None = None
) -> int:
    """Give the claim's rows back, claimable again after `delay` (the lease is back-dated)."""
    now = now or timezone.now()
    rows = OutboxEntry.objects.filter(claimed_by=claim.token, processed_at__isnull=True)
    if contact_ids is not None:
        rows = rows.filter(contact_id__in=contact_ids)
    return rows.update(claimed_at=now - lease() + delay)


def contacts_requeue(*, contact_ids: list[int]) -> int:
    """Queue a push of these contacts' current state again: one pending row each, standing for
    the contact's latest decision (its purpose and urgency, so an email withdrawal also
    unsubscribes in Campaigns and goes first). For a write that Zoho never answered, or a
    ledger state that no push carries. Commits with the caller's transaction; the push is
    queued once it commits (`sync.kick`), and the sweep takes it otherwise."""
    if not contact_ids:
        return 0
    latest = dict(
        ConsentEvent.objects.filter(contact_id__in=contact_ids)
        .values("contact_id")
        .annotate(latest=Max("id"))
        .values_list("contact_id", "latest")
    )
    events = ConsentEvent.objects.in_bulk(list(latest.values()))
    rows = []
    for contact_id in sorted(set(contact_ids)):
        event = events.get(latest.get(contact_id, 0))
        if event is None:
            priority = OutboxEntry.Priority.OTHER
        elif event.status in (ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED):
            priority = OutboxEntry.Priority.WITHDRAWAL
        elif event.status == ConsentStatus.OPTED_IN:
            priority = OutboxEntry.Priority.OPT_IN
        else:
            priority = OutboxEntry.Priority.OTHER
        rows.append(
            OutboxEntry(
                contact_id=contact_id,
                purpose_id=event.purpose_id if event else None,
                event=event,
                priority=priority,
            )
        )
    OutboxEntry.objects.bulk_create(rows)
    transaction.on_commit(outbox_kick)
    return len(rows)


def outbox_claim_renew(*, claim: OutboxClaim, now: datetime | None = None) -> set[int]:
    """Renew the claim's lease just before its write goes out, and say which contacts it still
    holds. A contact whose rows another claim took meanwhile (this worker outlived its lease)
    is not written by this one: two writers of one contact could leave the older values."""
    now = now or timezone.now()
    OutboxEntry.objects.filter(claimed_by=claim.token, processed_at__isnull=True).update(claimed_at=now)
    return set(
        OutboxEntry.objects.filter(claimed_by=claim.token, processed_at__isnull=True).values_list(
            "contact_id", flat=True
        )
    )
