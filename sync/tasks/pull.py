"""Tasks: Campaigns pull and reconciliation (see sync/campaigns_pull.py, sync/reconcile.py).

Both are idempotent (a pull records each row once; reconciliation only compares
and opens/closes discrepancies), so a redelivered message does no harm. Zoho
refusing our credentials raises the auth alert (`ZohoTask`).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.utils import timezone

from sync.campaigns_pull import campaigns_pull as campaigns_pull_service
from sync.quota import QuotaDeferred
from sync.reconcile import reconcile as reconcile_service
from sync.tasks.base import ZohoTask
from sync.zoho.errors import ZohoTransientError

# Reconciliation deferred for the off-peak window looks again at most this often
# (shorter than the broker's visibility timeout, so the countdown is never redelivered early).
RECONCILE_RECHECK_S = 3600


@shared_task(
    name="sync.campaigns_pull",
    bind=True,
    base=ZohoTask,
    autoretry_for=(ZohoTransientError,),
    retry_backoff=60,
    retry_backoff_max=600,
    max_retries=3,
)
def campaigns_pull(self: Any) -> dict[str, Any]:
    result = campaigns_pull_service()
    if result.transient_errors:
        # Everything that could be read was recorded; the rest is read again later.
        raise ZohoTransientError(
            f"Campaigns pull: {result.transient_errors} read(s) failed: {result.errors[:3]}"
        )
    return result.as_dict()


@shared_task(
    name="sync.reconcile",
    bind=True,
    base=ZohoTask,
    autoretry_for=(ZohoTransientError,),
    retry_backoff=300,
    retry_backoff_max=3600,
    max_retries=3,
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 60,
)
def reconcile(self: Any) -> dict[str, Any]:
    try:
        run = reconcile_service()
    except QuotaDeferred as exc:
        delay = max(60, min(RECONCILE_RECHECK_S, int((exc.retry_at - timezone.now()).total_seconds())))
        self.apply_async(countdown=delay)
        return {"deferred_until": exc.retry_at.isoformat(), "recheck_in_s": delay}
    return {"run": run.pk, "opened": run.opened, "resolved": run.resolved, "records_read": run.records_read}
