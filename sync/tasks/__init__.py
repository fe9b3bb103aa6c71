"""Celery tasks of the sync: thin, ids in, a service does the work.

`push` holds the outbox consumer, verification and retries; `pull` the
Campaigns pull and reconciliation. Celery's autodiscovery imports this package.
"""

from sync.tasks import pull, push

__all__ = ["pull", "push"]
