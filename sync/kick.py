"""Push soon after a change commits, not only at the next periodic sweep.

The ledger calls `outbox_kick` after every commit that wrote outbox rows
(``LEDGER_OUTBOX_NOTIFY`` names it; see `compliance.outbox`). It queues one
``sync.outbox_sweep`` to run ``SYNC_PUSH_DELAY_S`` later, at most once per that
window across all processes: the changes committed meanwhile go out together, 100
contacts a call, instead of one call per change. The sweep goes to the urgent queue
(`config.celery`), so that it never waits behind the batches of a backlog.

A commit needs no kick of its own only when a sweep is queued to run after it: the
cache key holds the time the queued sweep runs, and a process remembers it, so that
the thousand commits of a batch ingest cost no I/O. (Remembering only when this
process last tried would lose a commit made after the sweep another process queued
had already run: nothing would push it until the periodic sweep.)

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
# When the sweep this process knows of runs (wall clock: other processes queued it too).
_covered_until = 0.0


def _covered(now: float, due: float) -> bool:
    """Is a sweep already queued to run after ``now``? If not, this process's sweep, due at
    ``due``, is the one (the key names it for the others)."""
    global _covered_until
    if now < _covered_until:
        return True
    delay = due - now
    if not cache.add(KICK_KEY, due, timeout=delay):
        queued = cache.get(KICK_KEY)
        if queued is not None and float(queued) > now:
            _covered_until = float(queued)
            return True
        # That sweep's time has come (it may have claimed already): ours follows it.
        cache.set(KICK_KEY, due, timeout=delay)
    _covered_until = due
    return False


def outbox_kick() -> None:
    """Queue a sweep ``SYNC_PUSH_DELAY_S`` from now unless one is already queued to run after now."""
    if not settings.SYNC_PUSH_ON_COMMIT:
        return
    delay = int(settings.SYNC_PUSH_DELAY_S)
    now = time.time()
    if delay > 0 and _covered(now, now + delay):
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
