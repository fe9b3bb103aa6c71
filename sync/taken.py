"""Calls Zoho took, remembered so that the retry of the work that made them does not make them again.

A unit of work that makes many calls (a batch's Campaigns unsubscribes, a re-permission batch's
adds, a push batch's look-ups) stops at the first transient error and is retried whole. Each call
Zoho took is marked at once in the shared cache (Redis in production), under a key its caller
makes unique to that one piece of work, and the retry skips the marked ones: it does only the
rest, so the work progresses however often Zoho fails, and nothing Zoho took is sent twice. A
read keeps its answer for a while instead of a mark (`answer_keep`, `answer`). Keys and answers
hold no personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.cache import cache

# Longer than any retry of the same work waits (Celery's backoff caps at minutes, an outbox row is
# claimed again within the hour); short enough that the cache does not fill with old marks.
REMEMBERED_S = 7 * 86400


def taken(keys: Iterable[str]) -> set[str]:
    """Those of `keys` marked taken (one round trip)."""
    wanted = list(keys)
    return set(cache.get_many(wanted)) if wanted else set()


def taken_mark(key: str) -> None:
    """Zoho took the call of `key`: marked at once, so a worker that dies on the next call has
    this one remembered all the same."""
    cache.set(key, True, timeout=REMEMBERED_S)


def answer_keep(key: str, value: Any, timeout_s: int) -> None:
    """Zoho answered the read of `key`: its answer kept for `timeout_s` (as long as a retry of
    the same work may use it without reading again what may have changed since)."""
    cache.set(key, value, timeout=timeout_s)


def answer(key: str) -> Any | None:
    """The answer kept under `key`, or None."""
    return cache.get(key)
