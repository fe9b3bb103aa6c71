"""The shared Zoho access token.

Zoho Accounts allows 10 access-token mints per refresh token per 10 minutes,
so every process shares one token through the Django cache (Redis in
production) and only one of them refreshes it at a time:

* the token is refreshed ``refresh_margin_s`` (5 min) before it expires;
* the refresher holds the cache's shared lock (`sync.zoho.locks`: a Redis lock
  that expires, or ``flock`` on a file); threads of one process also queue on
  a local lock;
* the others wait, re-reading the cache, and use what the refresher stored
  (or the old token while it is still valid).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.cache import BaseCache, caches

from sync.zoho.config import ZohoConfig
from sync.zoho.errors import ZohoTransientError
from sync.zoho.locks import SharedLock, cache_lock

logger = logging.getLogger("sync.zoho.auth")

# Below this many seconds of life left, a token is not handed out at all.
MIN_USABLE_S = 10.0
POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class AccessToken:
    value: str = field(repr=False)
    api_domain: str
    expires_at: float  # seconds since the epoch

    def remaining(self, now: float) -> float:
        return self.expires_at - now


class TokenManager:
    """Hands out a valid access token, minting one only when needed, once for everybody.

    ``mint`` performs the refresh-token grant (the transport's logged call) and
    raises `ZohoAuthError` / `ZohoAuthRevoked` / `ZohoTransientError`.
    """

    def __init__(
        self,
        config: ZohoConfig,
        mint: Callable[[], AccessToken],
        *,
        cache: BaseCache | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._mint = mint
        self.cache = cache if cache is not None else caches["default"]
        self._clock = clock
        self._sleep = sleep
        self._local = threading.Lock()
        # The key names the credentials without containing them.
        digest = hashlib.sha256(
            f"{config.accounts_url}|{config.client_id}|{config.refresh_token}".encode()
        ).hexdigest()[:24]
        self.key = f"{config.cache_prefix}:token:{digest}"
        self.lock_key = f"{config.cache_prefix}:token-lock:{digest}"

    def _new_lock(self) -> SharedLock:
        return cache_lock(self.cache, self.lock_key, expire_s=self.config.refresh_lock_timeout_s)

    # The shared cache -------------------------------------------------------

    def cached(self) -> AccessToken | None:
        raw: Any = self.cache.get(self.key)
        if not isinstance(raw, dict):
            return None
        try:
            return AccessToken(str(raw["access_token"]), str(raw["api_domain"]), float(raw["expires_at"]))
        except (KeyError, TypeError, ValueError):
            return None

    def _store(self, token: AccessToken) -> None:
        ttl = max(1, int(token.remaining(self._clock())))
        value = {"access_token": token.value, "api_domain": token.api_domain, "expires_at": token.expires_at}
        self.cache.set(self.key, value, timeout=ttl)

    def invalidate(self, value: str) -> None:
        """Forget the shared token if it is still `value` (Zoho refused it)."""
        current = self.cached()
        if current is not None and current.value == value:
            self.cache.delete(self.key)

    # Handing out tokens -------------------------------------------------------

    def _fresh(self, token: AccessToken | None, reject: str | None) -> bool:
        return (
            token is not None
            and token.value != reject
            and token.remaining(self._clock()) > self.config.refresh_margin_s
        )

    def _usable(self, token: AccessToken | None, reject: str | None) -> bool:
        return token is not None and token.value != reject and token.remaining(self._clock()) > MIN_USABLE_S

    def get(self, *, reject: str | None = None) -> AccessToken:
        """A token with at least the refresh margin left (or, while another process
        refreshes, one still valid). ``reject``: a token Zoho just refused."""
        token = self.cached()
        if self._fresh(token, reject):
            assert token is not None
            return token
        if reject is not None:
            self.invalidate(reject)
        # Threads of this process queue here; one that finds another refreshing
        # and holds a still-valid token goes on with it.
        if not self._local.acquire(blocking=not self._usable(token, reject)):
            assert token is not None
            return token
        try:
            return self._get_or_refresh(reject)
        finally:
            self._local.release()

    def _get_or_refresh(self, reject: str | None) -> AccessToken:
        deadline = time.monotonic() + self.config.refresh_lock_timeout_s
        while True:
            token = self.cached()
            if self._fresh(token, reject):
                assert token is not None
                return token
            lock = self._new_lock()
            if lock.acquire(blocking=False):
                try:
                    token = self.cached()  # someone may have refreshed meanwhile
                    if self._fresh(token, reject):
                        assert token is not None
                        return token
                    token = self._mint()
                    self._store(token)
                    logger.info(
                        "Zoho access token refreshed (valid for %d s)", token.remaining(self._clock())
                    )
                    return token
                finally:
                    lock.release()
            if self._usable(token, reject):
                assert token is not None
                return token  # another process refreshes; this one is still good
            if time.monotonic() > deadline:
                raise ZohoTransientError(
                    "timed out waiting for another process to refresh the Zoho access token",
                    code="token_lock_timeout",
                )
            self._sleep(POLL_S)

    @contextlib.contextmanager
    def holding_lock(self) -> Iterator[None]:
        """Hold the refresh lock (tests use it to play 'another process is refreshing')."""
        lock = self._new_lock()
        if not lock.acquire(blocking=False):
            raise RuntimeError("refresh lock is busy")
        try:
            yield
        finally:
            lock.release()
