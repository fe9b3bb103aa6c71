"""Delivering API clients' webhooks (`sync.webhooks`): one attempt a run, retried with backoff."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from sync.webhooks import WebhookFailed, webhook_deliver


@shared_task(
    bind=True,
    name="sync.webhook_deliver",
    autoretry_for=(WebhookFailed,),
    # 2 s, 4 s, 8 s … at most an hour apart; `webhook_deliver` stops raising at WEBHOOK_MAX_ATTEMPTS.
    retry_backoff=2,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=None,
    acks_late=True,
)
def webhook_deliver_task(self: Any, delivery_id: int) -> dict[str, Any]:
    attempt = webhook_deliver(delivery_id=delivery_id)
    if attempt is None:
        return {"attempt": None}
    return {"attempt": attempt.number, "status": attempt.status, "response_code": attempt.response_code}
