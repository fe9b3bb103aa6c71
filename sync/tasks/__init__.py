"""Celery tasks of the sync: thin, ids in, a service does the work.

`push` holds the outbox consumer, verification and retries; `pull` the
Campaigns pull and reconciliation; `audit` the stranded-change audit; `tallies` the
health page's hourly tallies. Celery's autodiscovery imports this package.
"""

from sync.tasks import audit, pull, push, tallies

__all__ = ["audit", "pull", "push", "tallies"]
