"""Celery tasks of the sync: thin, ids in, a service does the work.

`push` holds the outbox consumer, verification and retries; `pull` the
Campaigns pull and reconciliation; `audit` the stranded-change audit; `tallies` the
health page's hourly tallies; `bulk` admins' bulk actions on discrepancies; `webhooks` the
API clients' webhook deliveries; `erasure` the Zoho part of erasures. Celery's autodiscovery
imports this package.
"""

from sync.tasks import audit, bulk, erasure, pull, push, tallies, webhooks

__all__ = ["audit", "bulk", "erasure", "pull", "push", "tallies", "webhooks"]
