"""Zoho Campaigns' per-method call limits, kept by the client before Zoho has to enforce them.

Campaigns counts some methods apart and locks a method for 30 minutes once its limit is passed
(zoho-api.md section 4): ``getlistsubscribers``, ``listunsubscribe``, ``contactdonotmail`` and
``listsubscriberscount`` take 500 calls in 5 minutes; ``listsubscribe`` 500 a minute, 12,500 an
hour and 75,000 a day. A lock would stop every worker's unsubscribes (or pulls) for half an hour,
so the transport asks `CampaignsLimits` before each Campaigns call:

* **Counting.** Every worker counts in the shared cache (Redis in production, the file cache of
  the embedded demo), in buckets of a few seconds per method and window. A window's count is
  the sum of the buckets that overlap it, so it covers a little more than the window (never
  less): a call is sent only while that count stays within ``share`` (90 %) of Zoho's limit.
  The rest is headroom for other apps of the org and for counts taken at the same moment.
* **No room.** The call is not sent: `ZohoRateLimited` (code ``campaigns_limit``), which a
  Celery task retries later; the message says when the window has room again.
* **Zoho's own refusal** (its lock, or 2101 "retry after sometime"): the method is paused for
  every worker, ``cooldown_s`` (15 s) at first and twice as long each time Zoho refuses again,
  up to ``lock_s`` (30 minutes, the documented lock). Calls meanwhile are not sent
  (code ``campaigns_paused``); the first success ends the escalation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.core.cache import BaseCache

from sync.zoho.errors import ZohoRateLimited
from sync.zoho.locks import SharedCounters


@dataclass(frozen=True)
class Window:
    calls: int  # Zoho's limit in the window
    seconds: int  # the window's length
    bucket_s: int  # how finely it is counted


_FIVE_MINUTES = (Window(500, 300, 15),)
# zoho-api.md section 4 ("Campaigns limits").
LIMITS: dict[str, tuple[Window, ...]] = {
    "getlistsubscribers": _FIVE_MINUTES,
    "listunsubscribe": _FIVE_MINUTES,
    "contactdonotmail": _FIVE_MINUTES,
    "listsubscriberscount": _FIVE_MINUTES,
    "listsubscribe": (Window(500, 60, 5), Window(12_500, 3600, 120), Window(75_000, 86_400, 3600)),
}


def campaigns_method(path: str) -> str:
    """The Campaigns method a request path calls: ``json/listunsubscribe`` -> ``listunsubscribe``."""
    return path.rstrip("/").rsplit("/", 1)[-1]


class CampaignsLimits:
    """The per-method limits of one Zoho org's Campaigns account, shared through ``cache``."""

    def __init__(
        self,
        cache: BaseCache,
        prefix: str,
        *,
        share: float = 0.9,
        cooldown_s: float = 15.0,
        lock_s: float = 1800.0,
        limits: dict[str, tuple[Window, ...]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < share <= 1:
            raise ValueError("the share of Campaigns' limits must be above 0 and at most 1")
        self.cache = cache
        self.prefix = f"{prefix}:campaigns-limits"
        self.share = share
        self.cooldown_s = cooldown_s
        self.lock_s = lock_s
        self.limits = LIMITS if limits is None else limits
        self.clock = clock
        self.counters = SharedCounters(cache, f"{prefix}-campaigns-limits")

    def _key(self, *parts: object) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def allowed(self, window: Window) -> int:
        return max(1, math.floor(window.calls * self.share))

    # Before and after a call ------------------------------------------------------------

    def before_call(self, method: str) -> None:
        """Take a place in each of the method's windows, or raise `ZohoRateLimited` (nothing taken)."""
        paused = self.paused_for(method)
        if paused > 0:
            raise ZohoRateLimited(
                f"Zoho Campaigns {method}: paused for {paused:.0f} s more after Zoho refused it "
                "(its limit); not sent",
                code="campaigns_paused",
            )
        windows = self.limits.get(method, ())
        now = self.clock()
        taken: list[str] = []
        for window in windows:
            bucket = int(now // window.bucket_s)
            key = self._key(method, window.seconds, bucket)
            self.counters.incr(key, ttl=window.seconds + 2 * window.bucket_s)
            taken.append(key)
            counts = self._counts(method, window, now)
            count = sum(counts.values())
            if count > self.allowed(window):
                for done in taken:
                    self.counters.decr(done)
                # The oldest bucket counted leaves the window first.
                oldest = min((b for b, n in counts.items() if n > 0), default=bucket)
                room_in = (oldest + 1) * window.bucket_s + window.seconds - now
                raise ZohoRateLimited(
                    f"Zoho Campaigns {method}: {count - 1} calls in the last {window.seconds} s, "
                    f"the most we send of Zoho's {window.calls} (then a 30-minute lock); not sent, "
                    f"room again in {room_in:.0f} s",
                    code="campaigns_limit",
                )

    def after_call(self, method: str, *, refused: bool) -> None:
        """Zoho's answer: ``refused`` (its limit or lock) pauses the method for every worker."""
        if refused:
            self.pause(method)
        else:
            self.cache.delete(self._key(method, "pause-level"))

    # Counting ----------------------------------------------------------------------------

    def count(self, method: str, window: Window, *, now: float | None = None) -> int:
        """Calls of ``method`` counted in the buckets overlapping the last ``window.seconds``."""
        return sum(self._counts(method, window, self.clock() if now is None else now).values())

    def _counts(self, method: str, window: Window, now: float) -> dict[int, int]:
        last = int(now // window.bucket_s)
        first = int((now - window.seconds) // window.bucket_s)
        keys = {self._key(method, window.seconds, bucket): bucket for bucket in range(first, last + 1)}
        return {keys[key]: int(value) for key, value in self.cache.get_many(list(keys)).items()}

    # Zoho's refusal ----------------------------------------------------------------------

    def pause(self, method: str) -> float:
        """Pause ``method`` (or lengthen its pause); returns the pause's length in seconds."""
        return self.counters.pause(
            level_key=self._key(method, "pause-level"),
            until_key=self._key(method, "paused-until"),
            first_s=self.cooldown_s,
            max_s=self.lock_s,
            now=self.clock(),
        )

    def paused_for(self, method: str) -> float:
        until = self.cache.get(self._key(method, "paused-until"))
        return max(0.0, float(until) - self.clock()) if until is not None else 0.0
