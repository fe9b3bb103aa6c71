"""Tasks: outbox consumption, push, verify, retries. Thin: ids in, a service does the work.

Every task is idempotent (state is re-read from the database; a push of a version
already pushed is skipped), which is what makes late acknowledgement safe: a
message whose worker died is delivered again. Only transient Zoho errors (429,
5xx, timeouts) are retried by Celery, with exponential backoff; permanent ones
are stored as discrepancies by the services, and Zoho refusing our credentials
raises the auth alert (`ZohoTask`, the base of every task here that calls Zoho).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import shared_task
from django.conf import settings

from config.celery import URGENT_QUEUE
from sync.kick import outbox_kick
from sync.outbox import outbox_claim, outbox_claim_return, outbox_claim_take, outbox_waiting
from sync.push import outbox_batch_push
from sync.tasks.base import ZohoTask
from sync.verify import discrepancies_retry_due, pushes_verify_due
from sync.zoho import ZohoClient, ZohoTransientError

logger = logging.getLogger(__name__)

# One sweep queues at most this many batches of 100 contacts; the next sweep takes the rest.
SWEEP_MAX_BATCHES = 50
# One verify run reads back at most this many batches of 100 pushes.
VERIFY_MAX_BATCHES = 50

TRANSIENT = {
    "autoretry_for": (ZohoTransientError,),
    "retry_backoff": True,
    "retry_backoff_max": 300,
    "retry_jitter": True,
    "max_retries": 10,
    "acks_late": True,
}


def _worker_name(task: Any) -> str:
    return str(getattr(task.request, "hostname", None) or socket.gethostname())


@shared_task(bind=True, name="sync.outbox_sweep", acks_late=True)
def outbox_sweep(self: Any) -> int:
    """Claim pending outbox rows, 100 contacts a batch, and queue one push per batch.

    The contacts with a withdrawal first, in batches of their own on the urgent queue,
    which workers take before the default one: the batches of a backlog, claimed ahead
    and queued there by earlier sweeps, are not in front of them, and a withdrawal
    waits only for a worker to finish the batch in hand. Then the rest (no withdrawal
    among them, even one recorded while this sweep runs), on the default queue."""
    worker = _worker_name(self)
    queued = 0
    for urgent in (True, False):
        while queued < SWEEP_MAX_BATCHES:
            claim = outbox_claim(worker=worker, urgent=urgent)
            if not claim:
                break
            push_batch.apply_async((claim.token,), queue=URGENT_QUEUE if urgent else None)
            queued += 1
    return queued


def _verify_when_due() -> None:
    """Queue the read-back for when this batch's verify delay has passed (the periodic
    ``sync.verify_due`` stays the safety net), instead of waiting for its next round."""
    delay = int(settings.CONSENT_VERIFY_DELAY_S) + 1
    try:
        verify_due.apply_async(countdown=delay, expires=delay + 600, retry=False)
    except Exception:
        logger.warning("Could not queue the read-back; the periodic verify will", exc_info=True)


@shared_task(bind=True, base=ZohoTask, name="sync.push_batch", **TRANSIENT)
def push_batch(self: Any, claim_token: str) -> dict[str, int]:
    """Push the contacts of one outbox claim (its rows are re-read by the claim's token)."""
    claim = outbox_claim_take(token=claim_token)
    if not claim:
        return {"contacts": 0}
    try:
        with ZohoClient.from_settings() as zoho:
            report = outbox_batch_push(claim=claim, zoho=zoho)
    except ZohoTransientError:
        # Celery retries this task with backoff: it must find the rows under its token again.
        outbox_claim_return(claim=claim, token=claim_token)
        raise
    if report.pushed:
        _verify_when_due()
    if outbox_waiting():
        # Rows of this batch's contacts that arrived while it was in flight waited for it.
        outbox_kick()
    return {
        "contacts": len(claim.contact_ids),
        "pushed": len(report.pushed),
        "skipped": len(report.skipped),
        "not_in_crm": len(report.not_in_crm),
        "duplicates": len(report.duplicates),
    }


@shared_task(bind=True, base=ZohoTask, name="sync.verify_due", **TRANSIENT)
def verify_due(self: Any) -> dict[str, int]:
    """Read back the pushes whose verify delay passed."""
    with ZohoClient.from_settings() as zoho:
        report = pushes_verify_due(zoho=zoho, max_batches=VERIFY_MAX_BATCHES)
    return {"verified": report.verified, "mismatched": report.mismatched, "superseded": report.superseded}


@shared_task(bind=True, base=ZohoTask, name="sync.retry_due", **TRANSIENT)
def retry_due(self: Any) -> dict[str, int]:
    """Re-push the contacts whose discrepancies are due for a retry."""
    with ZohoClient.from_settings() as zoho:
        report = discrepancies_retry_due(zoho=zoho)
    return {"discrepancies": report.discrepancies, "contacts": report.contacts}
