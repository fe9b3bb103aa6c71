"""Requests per client IP on the public link pages: a fixed window of one minute in the cache
(Redis in production, shared by every process), LINK_RATE_LIMIT_PER_MIN requests in each."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache

WINDOW_S = 60


def link_rate_exceeded(ip: str | None) -> bool:
    """Count this request; True when the address has used up its minute."""
    limit = settings.LINK_RATE_LIMIT_PER_MIN
    if limit <= 0:
        return False
    window = int(time.time()) // WINDOW_S
    key = f"lifecycle:rate:{ip or 'unknown'}:{window}"
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        # One round trip (INCR and EXPIRE pipelined) instead of the cache API's two or three.
        return _redis_count(backend, key) > limit
    if cache.add(key, 1, timeout=WINDOW_S + 5):
        return limit < 1
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=WINDOW_S + 5)
        count = 1
    return count > limit


def _redis_count(redis_cache: Any, key: str) -> int:
    full_key = redis_cache.make_and_validate_key(key)
    client = redis_cache._cache.get_client(full_key, write=True)
    pipe = client.pipeline(transaction=False)
    pipe.incr(full_key)
    pipe.expire(full_key, WINDOW_S + 5)
    count, _ = pipe.execute()
    return int(count)
