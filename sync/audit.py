"""The audit: no change is stranded between the ledger and Zoho.

The sync promises that every change ends verified in Zoho, or flagged and alerted. Put as an
invariant the database alone can check: every contact whose current ledger state (its
projection) differs from its last verified push has at least one of

- a pending outbox row (a push is queued),
- a push awaiting its read-back (Zoho answered, or is being asked: a push younger than the
  outbox lease may still be in flight),
- an open discrepancy (flagged; the retries and the alert take it from there).

Contacts that are not in CRM, or whose address several CRM records share, have nothing to
verify against and are left out (the second kind has its discrepancy).

`sync_audit` checks the contacts with a push made in the last ``SYNC_AUDIT_WINDOW_S``
(the daily reconciliation compares everything else with Zoho itself), re-queues each one that
breaks the invariant, logs it as the bug it is, and stores the count for the sync health
page. It makes no Zoho call; beat runs it every few minutes, `manage.py sync_audit` by hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compliance.models import OutboxEntry
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, SyncAudit, SyncPush
from sync.outbox import contacts_requeue, lease
from sync.projection import project

logger = logging.getLogger(__name__)

# Contacts projected per query.
CHUNK = 1000
# Stranded contact ids kept on the audit row.
KEEP_IDS = 1000


@dataclass
class AuditReport:
    checked: int = 0
    stranded: list[int] = field(default_factory=list)


def _covered(contact_ids: list[int], now: datetime) -> tuple[set[int], set[tuple[int, str]]]:
    """(those of these contacts with a queued push, an open discrepancy, or no CRM record to
    verify against; the records (contact, record id) with a push awaiting its read-back)."""
    queued = OutboxEntry.objects.filter(contact_id__in=contact_ids, processed_at__isnull=True)
    flagged = Discrepancy.objects.filter(contact_id__in=contact_ids, status=Discrepancy.Status.OPEN)
    unlinked = CrmLink.objects.filter(contact_id__in=contact_ids).exclude(state=CrmLink.State.LINKED)
    covered: set[int] = set()
    for rows in (queued, flagged, unlinked):
        covered.update(rows.values_list("contact_id", flat=True))
    awaiting = SyncPush.objects.filter(
        Q(verify_due_at__isnull=False) | Q(created_at__gte=now - lease()),
        contact_id__in=contact_ids,
        verification=SyncPush.Verification.PENDING,
    )
    return covered, set(awaiting.values_list("contact_id", "zoho_id"))


def _last_verified(contact_ids: list[int]) -> dict[tuple[int, str], SyncPush]:
    """Each record's last verified push, for these contacts."""
    last: dict[tuple[int, str], SyncPush] = {}
    verified = SyncPush.objects.filter(
        contact_id__in=contact_ids, verification=SyncPush.Verification.VERIFIED
    ).order_by("contact_id", "-id")
    for push in verified.only("id", "contact_id", "zoho_id", "sent"):
        last.setdefault((push.contact_id, push.zoho_id), push)
    return last


def _stranded(contact_ids: list[int], now: datetime) -> list[int]:
    """The contacts of which a written CRM record (each of a Lead and a Contact, each of
    duplicates written to all) differs from the ledger with nothing under way for it."""
    covered, awaiting = _covered(contact_ids, now)
    candidates = [c for c in contact_ids if c not in covered]
    if not candidates:
        return []
    projections = project(candidates)
    last = _last_verified(candidates)
    records: dict[int, set[str]] = {}
    for contact_id, record_id in CrmLinkRecord.objects.filter(
        contact_id__in=candidates, role__in=CrmLinkRecord.WRITTEN
    ).values_list("contact_id", "record_id"):
        records.setdefault(contact_id, set()).add(record_id)
    # A contact linked before its records had rows of their own: the records it was pushed to.
    for contact_id, record_id in SyncPush.objects.filter(
        contact_id__in=[c for c in candidates if c not in records]
    ).values_list("contact_id", "zoho_id"):
        records.setdefault(contact_id, set()).add(record_id)
    stranded = []
    for contact_id in candidates:
        for record_id in sorted(records.get(contact_id, ())):
            key = (contact_id, record_id)
            if key in awaiting:
                continue
            if key not in last or _differs(last[key].sent, projections[contact_id].values):
                stranded.append(contact_id)
                break
    return stranded


def _differs(sent: dict[str, Any], projected: dict[str, Any]) -> bool:
    """Whether the ledger's projection differs from what the last verified push sent, on the
    fields the projection has: a process that has not read the org's consent picklists (they
    are cached from Zoho's field metadata by the pushes) projects without the picklist fields,
    and must not take every contact for stranded."""
    return any(sent.get(name) != value for name, value in projected.items())


def stranded_find(*, now: datetime | None = None) -> AuditReport:
    """The contacts with a push in the window that break the invariant (read only)."""
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.SYNC_AUDIT_WINDOW_S)
    recent = sorted(set(SyncPush.objects.filter(created_at__gte=since).values_list("contact_id", flat=True)))
    report = AuditReport(checked=len(recent))
    for start in range(0, len(recent), CHUNK):
        report.stranded += _stranded(recent[start : start + CHUNK], now)
    return report


def sync_audit(*, now: datetime | None = None) -> AuditReport:
    """Find the stranded contacts, re-queue them and record the run."""
    now = now or timezone.now()
    report = stranded_find(now=now)
    with transaction.atomic():
        # Checked once more: a change that moved on while the audit read (a push committed,
        # a read-back settled with its resend) is not stranded.
        report.stranded = _stranded(report.stranded, timezone.now()) if report.stranded else []
        contacts_requeue(contact_ids=report.stranded)
        SyncAudit.objects.create(
            ran_at=now,
            window_from=now - timedelta(seconds=settings.SYNC_AUDIT_WINDOW_S),
            checked=report.checked,
            stranded=len(report.stranded),
            stranded_contacts=report.stranded[:KEEP_IDS],
        )
    for contact_id in report.stranded:
        # Each one is a path in the sync that left a change behind: a bug to find.
        logger.error(
            "Stranded change: contact %s differs from its last verified push with no queued push, "
            "no push awaiting read-back and no open discrepancy; re-queued.",
            contact_id,
        )
    return report
