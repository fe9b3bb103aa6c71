"""Requests per client IP on the public link pages: a fixed window of one minute in the cache
(Redis in production, shared by every process), LINK_RATE_LIMIT_PER_MIN requests in each."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

WINDOW_S = 60


def link_rate_exceeded(ip: str | None) -> bool:
    """Count this request; True when the address has used up its minute."""
    limit = settings.LINK_RATE_LIMIT_PER_MIN
    if limit <= 0:
        return False
    window = int(time.time()) // WINDOW_S
    key = f"lifecycle:rate:{ip or 'unknown'}:{window}"
    if cache.add(key, 1, timeout=WINDOW_S + 5):
        return limit < 1
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=WINDOW_S + 5)
        count = 1
    return count > limit
