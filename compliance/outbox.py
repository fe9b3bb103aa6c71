"""Telling the outbox's consumer that rows are waiting, after the commit.

Every write that adds an outbox row calls `outbox_written_on_commit()`. Once the
transaction has committed (never before: the consumer must be able to read the
rows), the function named by the setting ``LEDGER_OUTBOX_NOTIFY`` is called with
no arguments; the sync names ``sync.kick.outbox_kick``, which queues a push. A
setting, not a signal, so that a reader of the service finds the effect here,
and so that `compliance` never imports `sync`.

The notification is only a nudge: it must be cheap and may fail (it is logged,
never raised into the writer). Losing one loses nothing: the periodic outbox sweep
finds every pending row whatever happened after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


@cache
def _notifier(path: str) -> Callable[[], object] | None:
    return import_string(path) if path else None


def _notify() -> None:
    notify = _notifier(settings.LEDGER_OUTBOX_NOTIFY)
    if notify is None:
        return
    try:
        notify()
    except Exception:  # a nudge; the sweep covers what it misses
        logger.warning("Outbox notification failed; the periodic sweep will push", exc_info=True)


def outbox_written_on_commit() -> None:
    """Call where an outbox row is written: the consumer hears of it after the commit."""
    transaction.on_commit(_notify)
