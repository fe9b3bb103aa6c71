"""Per-client request budget, shared by every process through the cache (Redis in production).

DRF's `SimpleRateThrottle` keeps a list of every request's time in the window and reads,
trims and writes that list back on every request: at the default 100,000/min that is a
list of up to 100,000 floats pickled through the cache twice per request, the cost
growing with the traffic it is meant to limit. This counts instead: one small entry per
client, `[window end, requests so far]`, the window starting at a client's first request
after the previous one ended. The price is the fixed window's: a client may spend one
window's budget at its end and the next window's at once after (at most twice the rate
over a short span), which a budget against abuse can afford. Like DRF's, the read and the
write are two cache calls, so concurrent requests may each count from the same value.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.views import APIView

from compliance.models import ApiClient


class ApiClientRateThrottle(SimpleRateThrottle):
    """One budget per API client (or signed-in user); API_THROTTLE_RATE sets it."""

    scope = "api_client"
    # Set by SimpleRateThrottle.__init__ from the rate (the type stubs leave them out).
    num_requests: int | None
    duration: int | None
    window_end = 0.0

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        principal = request.user
        if isinstance(principal, ApiClient):
            ident = f"client-{principal.pk}"
        elif principal is not None and getattr(principal, "is_authenticated", False):
            ident = f"user-{principal.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: APIView) -> bool:
        if self.rate is None or self.num_requests is None or self.duration is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        now = self.timer()
        entry = self.cache.get(key)
        if not isinstance(entry, list) or len(entry) != 2 or entry[0] <= now:
            entry = [now + self.duration, 0]
        self.window_end = float(entry[0])
        self.now = now
        if entry[1] >= self.num_requests:
            return False
        entry[1] += 1
        self.cache.set(key, entry, max(1, math.ceil(self.window_end - now)))
        return True

    def wait(self) -> float | None:
        """Seconds until the window ends and the budget is whole again (Retry-After)."""
        return max(0.0, self.window_end - self.now)


class ApiReadRateThrottle(ApiClientRateThrottle):
    """A second budget for reads, per client (or user); API_READ_THROTTLE_RATE sets it.

    Reads of people's histories are what a stolen key would walk through, so their budget is
    far below the writes' (which must carry the mobile app's peaks)."""

    scope = "api_read"
