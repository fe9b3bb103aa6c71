"""Discrepancies: one open row per contact and CRM field, opened, confirmed, retried and resolved here.

Every part of the sync that finds CRM different from the ledger calls
`discrepancy_record`: the push (Zoho's per-record errors, duplicates), the
read-back verify (not applied, overwritten, record missing), the CRM-side rules
(`sync.crm_changes`) and reconciliation (drift). Recording again confirms the open
row with the newest evidence instead of opening a second one.

Retries: a discrepancy opened with ``retry=True`` is due for a re-push of the
ledger's value after ``SYNC_RETRY_BASE_S`` (`sync.verify.discrepancies_retry_due`
runs it), backing off exponentially. A confirmation that comes from the push such
a retry made counts one failed retry; after ``SYNC_MAX_RETRIES`` failed retries
exactly one alert goes out and no more retries are scheduled. A later matching
read-back, or reconciliation finding CRM matching, resolves it
(`discrepancies_resolve`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from sync.models import Discrepancy, SyncPush

HINTS = {
    Discrepancy.Kind.OVERWRITTEN: (
        "A workflow rule or a user changed it after our write: check workflow rules on {field}."
    ),
    Discrepancy.Kind.NOT_APPLIED: (
        "Accepted but not applied: field-level security or a silent reset; check the API user's "
        "profile has edit rights on {field}."
    ),
    Discrepancy.Kind.PERMISSION_DENIED: (
        "Zoho refused the write (NO_PERMISSION): give the API user's profile edit rights on {field}."
    ),
    Discrepancy.Kind.REJECTED: "Zoho rejected the value ({code}: {message}); check the field mapping for {field}.",
    Discrepancy.Kind.RECORD_MISSING: (
        "The CRM record {zoho_id} does not exist (deleted or merged): link the contact to its new record."
    ),
    Discrepancy.Kind.DUPLICATE: (
        "Several CRM records share {email}: merge them or set the contact's Zoho id to the primary; "
        "none is written until then."
    ),
    # (Not a kind: a NOT_APPLIED discrepancy whose writes never got an answer.)
    "unanswered": (
        "Zoho never answered {attempts} writes of this change (timeouts, 429s or workers that died "
        "mid-call) and the record does not hold it: check the workers' logs and Zoho's status."
    ),
}


class Recorded(NamedTuple):
    discrepancy: Discrepancy
    created: bool


def retry_delay(retries: int) -> timedelta:
    """Backoff before retry number ``retries + 1``: SYNC_RETRY_BASE_S * 2**retries."""
    return timedelta(seconds=settings.SYNC_RETRY_BASE_S * (2**retries))


def discrepancy_record(
    *,
    contact_id: int,
    crm_field: str,
    kind: str,
    zoho_id: str = "",
    expected: Any = None,
    actual: Any = None,
    evidence: Mapping[str, Any] | None = None,
    hint: str = "",
    push: SyncPush | None = None,
    retry: bool = True,
    now: datetime | None = None,
) -> Recorded:
    """Open the discrepancy, or confirm the open one for this contact and field (see the module docstring)."""
    from sync.alerts import alert_retries_exhausted

    now = now or timezone.now()
    evidence = dict(evidence or {})
    with transaction.atomic():
        existing = (
            Discrepancy.objects.select_for_update()
            .filter(contact_id=contact_id, crm_field=crm_field, status=Discrepancy.Status.OPEN)
            .first()
        )
        if existing is None:
            try:
                with transaction.atomic():
                    created = Discrepancy.objects.create(
                        contact_id=contact_id,
                        crm_field=crm_field,
                        kind=kind,
                        zoho_id=zoho_id,
                        expected=expected,
                        actual=actual,
                        evidence=evidence,
                        hint=hint,
                        next_retry_at=now + retry_delay(0) if retry else None,
                    )
                    return Recorded(created, True)
            except IntegrityError:
                # Opened meanwhile by another worker: confirm that one instead.
                existing = Discrepancy.objects.select_for_update().get(
                    contact_id=contact_id, crm_field=crm_field, status=Discrepancy.Status.OPEN
                )
        since = existing.evidence.get("retry_since")
        # A confirmation from a push made after the retry started is that retry failing.
        failed_retry = (
            push is not None and since is not None and push.created_at >= datetime.fromisoformat(since)
        )
        existing.kind = kind
        existing.zoho_id = zoho_id or existing.zoho_id
        existing.expected = expected
        existing.actual = actual
        existing.hint = hint
        existing.evidence = {**evidence, "retry_since": None if failed_retry else since}
        max_retries = settings.SYNC_MAX_RETRIES
        if failed_retry:
            existing.retries += 1
        if existing.retries >= max_retries or not retry:
            existing.next_retry_at = None
        elif failed_retry or existing.next_retry_at is None:
            existing.next_retry_at = now + retry_delay(existing.retries)
        existing.save()
        if failed_retry and existing.retries >= max_retries:
            alert_retries_exhausted(discrepancy=existing)
        return Recorded(existing, False)


def discrepancies_resolve(
    *,
    contact_id: int | None = None,
    crm_fields: list[str] | None = None,
    ids: list[int] | None = None,
    resolution: str,
    now: datetime | None = None,
) -> int:
    """Resolve open discrepancies: the contact's on these fields (all of them when None), or these ids."""
    if contact_id is None and ids is None:
        raise ValueError("discrepancies_resolve needs a contact or ids")
    rows = Discrepancy.objects.filter(status=Discrepancy.Status.OPEN)
    if contact_id is not None:
        rows = rows.filter(contact_id=contact_id)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    if crm_fields is not None:
        rows = rows.filter(crm_field__in=crm_fields)
    now = now or timezone.now()
    return rows.update(
        status=Discrepancy.Status.RESOLVED,
        resolved_at=now,
        resolution=resolution,
        next_retry_at=None,
        updated_at=now,
    )
