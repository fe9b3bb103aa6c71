"""API credits over a rolling 24 h window and concurrency counters (zoho-api.md section 4)."""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zohosim.state import SimState

TOO_MANY_REQUESTS_MESSAGE = "Number of API requests for the 24 hour period is exceeded or the concurrency limit of the user for the app is exceeded"


def coql_credits(limit: int) -> int:
    """Credits by LIMIT: 1-200 -> 1, 201-1000 -> 2, 1001-2000 -> 3 (UNVERIFIED for CRM)."""
    if limit <= 200:
        return 1
    if limit <= 1000:
        return 2
    return 3


class Quota:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.window: deque[tuple[float, int]] = deque()
        self.used_in_window = 0
        self.total_used = 0
        self.in_flight = 0
        self.in_flight_heavy = 0
        self.peak_in_flight = 0
        self.peak_in_flight_heavy = 0
        self.calls_by_op: Counter[str] = Counter()
        self.credits_by_op: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()

    def _expire(self, now: float) -> None:
        cutoff = now - self.state.config.credits_window_s
        while self.window and self.window[0][0] <= cutoff:
            _, cost = self.window.popleft()
            self.used_in_window -= cost

    def limit(self) -> int | None:
        return self.state.config.daily_credits()

    def used(self) -> int:
        with self._lock:
            self._expire(self.state.now())
            return self.used_in_window

    def remaining(self) -> int | None:
        limit = self.limit()
        return None if limit is None else max(0, limit - self.used())

    def can_spend(self, cost: int) -> bool:
        limit = self.limit()
        if limit is None:
            return True
        return self.used() + cost <= limit

    def charge(self, op: str, cost: int) -> None:
        with self._lock:
            now = self.state.now()
            self._expire(now)
            if cost:
                self.window.append((now, cost))
                self.used_in_window += cost
                self.total_used += cost
                self.credits_by_op[op] += cost

    def header_value(self) -> str | None:
        """``X-API-CREDITS-REMAINING`` once at least half of the daily credits are used."""
        limit = self.limit()
        if limit is None:
            return None
        used = self.used()
        if used * 2 >= limit:
            return str(max(0, limit - used))
        return None

    def acquire(self, heavy: bool) -> bool:
        cfg = self.state.config
        with self._lock:
            if self.in_flight >= cfg.concurrency():
                return False
            if heavy and self.in_flight_heavy >= cfg.sub_concurrency_limit:
                return False
            self.in_flight += 1
            if heavy:
                self.in_flight_heavy += 1
                self.peak_in_flight_heavy = max(self.peak_in_flight_heavy, self.in_flight_heavy)
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            return True

    def release(self, heavy: bool) -> None:
        with self._lock:
            self.in_flight -= 1
            if heavy:
                self.in_flight_heavy -= 1

    def stats(self) -> dict[str, Any]:
        limit = self.limit()
        used = self.used()
        return {
            "edition": self.state.config.edition,
            "credits_limit": limit,
            "credits_used": used,
            "credits_remaining": None if limit is None else max(0, limit - used),
            "credits_used_total": self.total_used,
            "concurrency_limit": self.state.config.concurrency(),
            "sub_concurrency_limit": self.state.config.sub_concurrency_limit,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "peak_in_flight_heavy": self.peak_in_flight_heavy,
            "calls_by_op": dict(self.calls_by_op),
            "credits_by_op": dict(self.credits_by_op),
            "rejected_by_reason": dict(self.rejected),
        }
