"""Push soon after a change commits, not only at the next periodic sweep.

The ledger calls `outbox_kick` after every commit that wrote outbox rows
(``LEDGER_OUTBOX_NOTIFY`` names it; see `compliance.outbox`). It queues one
``sync.outbox_sweep`` to run ``SYNC_PUSH_DELAY_S`` later, at most once per that
window across all processes: the changes committed meanwhile go out together, 100
contacts a call, instead of one call per change. The window is held twice: per
process in memory (no I/O for the thousand commits of a batch ingest), then across
processes with an atomic ``cache.add`` (Redis in production).

A kick that cannot reach the broker is logged and dropped: the periodic sweep
(every 30 s) pushes whatever a lost kick would have.
"""

from __future__ import annotations

import logging
import time

from celery import current_app
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

KICK_KEY = "sync:outbox-kick"
# By name, not by importing the task: `sync.tasks.push` imports this module (a push
# that leaves rows waiting kicks again), and the ledger's writers need no task module.
SWEEP_TASK = "sync.outbox_sweep"
_last_kick = 0.0


def outbox_kick() -> None:
    """Queue a sweep ``SYNC_PUSH_DELAY_S`` from now unless one is already queued for this window."""
    global _last_kick
    if not settings.SYNC_PUSH_ON_COMMIT:
        return
    delay = int(settings.SYNC_PUSH_DELAY_S)
    if delay > 0:
        now = time.monotonic()
        if now - _last_kick < delay:
            return
        _last_kick = now
        if not cache.add(KICK_KEY, 1, timeout=delay):
            return
    try:
        # One connection attempt and no retries: this runs in the writer's request,
        # after its commit, and a broker that is down must not hold the request for seconds.
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
            current_app.send_task(
                SWEEP_TASK, countdown=delay, expires=delay + 60, retry=False, connection=connection
            )
    except Exception:
        logger.warning("Could not queue a push after a commit; the periodic sweep will", exc_info=True)
