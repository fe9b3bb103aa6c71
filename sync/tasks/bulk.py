"""The background run of an admin's bulk action on a group of discrepancies (`sync.bulk`)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings

from sync.bulk import bulk_action_run
from sync.models import BulkAction
from sync.tasks.base import ZohoTask

logger = logging.getLogger(__name__)


@shared_task(bind=True, base=ZohoTask, name="sync.bulk_action_run", acks_late=True)
def bulk_action(self: Any, bulk_id: int) -> dict[str, Any]:
    """Run one recorded bulk action; a retry's pushes are read back by ``sync.verify_due``."""
    bulk = bulk_action_run(bulk_id=bulk_id)
    if bulk.action == BulkAction.Action.RETRY and bulk.done:
        from sync.tasks.push import verify_due

        delay = int(settings.CONSENT_VERIFY_DELAY_S) + 1
        try:
            verify_due.apply_async(countdown=delay, expires=delay + 600, retry=False)
        except Exception:
            logger.warning("Could not queue the read-back; the periodic verify will", exc_info=True)
    return {"matched": bulk.matched, "done": bulk.done, "refused": bulk.refused, "status": bulk.status}
