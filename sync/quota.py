"""The Zoho CRM API quota: one budget and one rate limit for every worker on every machine.

How callers use it
------------------
`ZohoClient.from_settings()` hands the transport (`sync/zoho/transport.py`) the
gate named by ``ZOHO_QUOTA_GATE`` (this module's `gate`, one per
``ZohoConfig.cache_prefix``); the transport asks it before each CRM call and
reports the answer after it::

    gate.before_call(operation)            # may wait (rate limit, 429 cool-down) or raise QuotaDeferred
    ...send...
    gate.after_call(http_status, credits_remaining)

Code that sends CRM calls says how urgent they are with a context variable; the
transport needs no argument for it::

    with quota.urgency(quota.WITHDRAWAL):   # push of an opt-out / suppression
        zoho.crm.update(batch)
    with quota.urgency(quota.OPT_IN):       # push of an opt-in, verification (the default)
        ...
    with quota.urgency(quota.RECONCILE):    # reconciliation and backfills
        ...

Rules
-----
* **Rate limit**, shared through the Django cache (Redis when ``CACHE_URL`` is
  set: one limit for all machines; the file cache with ``flock`` for the
  embedded demo, shared by the processes of its one machine). A fixed window
  per second holds ``ZOHO_RATE_LIMIT_PER_S`` calls. Urgency decides how much of
  each second a class may fill: withdrawals all of it, opt-ins
  ``ZOHO_RATE_SHARE_OPT_IN`` (0.8), reconciliation ``ZOHO_RATE_SHARE_RECONCILE``
  (0.5), so lower classes leave room for higher ones. A caller over its share
  waits for the next second.
* **429**: any worker that gets HTTP 429 sets a shared cool-down (starting at
  ``ZOHO_429_COOLDOWN_S``, doubling while 429s keep coming, at most
  ``ZOHO_429_COOLDOWN_MAX_S``). Every worker's next CRM call waits until it
  ends (lower urgency a little longer, so withdrawals go first), not only the
  one that got the 429. A wait longer than ``ZOHO_QUOTA_MAX_WAIT_S`` raises
  `ZohoRateLimited` instead, so a Celery task retries later rather than
  blocking its worker.
* **Budget**: credits used over a rolling 24 h are summed from the `ZohoCall`
  log (calls Zoho answered 401, 429 or 5xx cost nothing); the latest
  ``X-API-CREDITS-REMAINING`` (Zoho sends it once half the day's credits are
  used; it also counts other apps of the org) is taken when it is lower. The
  daily allowance is ``ZOHO_DAILY_CREDITS``; the reserve is
  ``ZOHO_CREDITS_RESERVE_FRACTION`` of it. Below the reserve, reconciliation
  and backfills run only in the off-peak window ``ZOHO_OFF_PEAK_HOURS``
  (``"0-6"``: from 00:00 to 06:00 UTC); before that their calls raise
  `QuotaDeferred` (with ``retry_at``). Withdrawals and opt-ins are never held
  back by the budget: only Zoho's own 429 stops them.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.db.models import Sum
from django.utils import timezone

from sync.zoho.errors import ZohoRateLimited, ZohoTransientError
from sync.zoho.locks import SharedCounters

WITHDRAWAL = "withdrawal"
OPT_IN = "opt_in"
RECONCILE = "reconcile"
BACKFILL = "backfill"  # the same class as reconciliation
URGENCIES = (WITHDRAWAL, OPT_IN, RECONCILE, BACKFILL)

_urgency: ContextVar[str] = ContextVar("zoho_urgency", default=OPT_IN)


@contextlib.contextmanager
def urgency(level: str) -> Iterator[None]:
    """Mark the CRM calls made inside the block as ``withdrawal``, ``opt_in`` or ``reconcile``."""
    if level not in URGENCIES:
        raise ValueError(f"unknown urgency {level!r}; one of {', '.join(URGENCIES)}")
    token = _urgency.set(level)
    try:
        yield
    finally:
        _urgency.reset(token)


def current_urgency() -> str:
    return _urgency.get()


def is_low_priority(level: str) -> bool:
    return level in (RECONCILE, BACKFILL)


class QuotaDeferred(ZohoTransientError):
    """Low-priority work must wait: the budget is below the reserve outside the off-peak window."""

    def __init__(self, message: str, *, retry_at: datetime) -> None:
        super().__init__(message, code="quota_deferred")
        self.retry_at = retry_at


@dataclass(frozen=True)
class QuotaSettings:
    daily_credits: int = 100_000
    reserve_fraction: float = 0.2
    rate_per_s: int = 10
    share_opt_in: float = 0.8
    share_reconcile: float = 0.5
    cooldown_s: float = 2.0
    cooldown_max_s: float = 60.0
    max_wait_s: float = 30.0
    off_peak_start_hour: int = 0
    off_peak_end_hour: int = 6
    # How long the budget (one aggregate over the call log) is reused before it is summed again.
    budget_cache_s: float = 30.0
    enabled: bool = True

    @classmethod
    def from_settings(cls) -> QuotaSettings:
        hours = str(settings.ZOHO_OFF_PEAK_HOURS)
        start, _, end = hours.partition("-")
        return cls(
            daily_credits=int(settings.ZOHO_DAILY_CREDITS),
            reserve_fraction=float(settings.ZOHO_CREDITS_RESERVE_FRACTION),
            rate_per_s=int(settings.ZOHO_RATE_LIMIT_PER_S),
            share_opt_in=float(settings.ZOHO_RATE_SHARE_OPT_IN),
            share_reconcile=float(settings.ZOHO_RATE_SHARE_RECONCILE),
            cooldown_s=float(settings.ZOHO_429_COOLDOWN_S),
            cooldown_max_s=float(settings.ZOHO_429_COOLDOWN_MAX_S),
            max_wait_s=float(settings.ZOHO_QUOTA_MAX_WAIT_S),
            off_peak_start_hour=int(start or 0) % 24,
            off_peak_end_hour=int(end or 6) % 24,
            enabled=bool(settings.ZOHO_QUOTA_ENABLED),
        )

    @property
    def reserve(self) -> int:
        return int(self.daily_credits * self.reserve_fraction)


@dataclass(frozen=True)
class Budget:
    daily: int
    used: int
    header_remaining: int | None
    remaining: int
    reserve: int

    @property
    def tight(self) -> bool:
        return self.remaining < self.reserve


class QuotaGate:
    """The shared rate limit, 429 cool-down and budget for one Zoho org (one ``scope``)."""

    def __init__(
        self,
        *,
        cache: BaseCache | None = None,
        scope: str = "zoho",
        config: QuotaSettings | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache = cache if cache is not None else caches["default"]
        self.scope = scope
        self.config = config or QuotaSettings.from_settings()
        self.clock = clock
        self.sleep = sleep
        self.counters = SharedCounters(self.cache, f"{scope}-quota")
        self._budget: tuple[float, Budget] | None = None

    # Keys ---------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return f"{self.scope}:quota:{name}"

    # The hook -----------------------------------------------------------------

    def before_call(self, operation: str = "", *, level: str | None = None) -> None:
        """Wait for a cool-down and for room in this second; defer low-priority work when tight."""
        if not self.config.enabled:
            return
        level = level or current_urgency()
        if is_low_priority(level):
            retry_at = self.deferral(level=level)
            if retry_at is not None:
                raise QuotaDeferred(
                    f"{operation or 'call'} deferred: Zoho credits below the reserve; "
                    f"low-priority work waits for the off-peak window ({retry_at.isoformat()})",
                    retry_at=retry_at,
                )
        waited = 0.0
        while True:
            pause = self.cooldown_remaining(level=level)
            if pause <= 0:
                pause = self._take_slot(level)
            if pause <= 0:
                return
            if waited + pause > self.config.max_wait_s:
                raise ZohoRateLimited(
                    f"{operation or 'call'}: Zoho rate limit shared by all workers; "
                    f"waited {waited:.1f} s, retry later",
                    code="quota_wait",
                )
            self.sleep(pause)
            waited += pause

    def after_call(self, http_status: int | None, credits_remaining: int | None = None) -> None:
        """Report Zoho's answer: a 429 cools every worker down; keep the credits header."""
        if not self.config.enabled:
            return
        if credits_remaining is not None:
            self.cache.set(self._key("remaining"), (credits_remaining, self.clock()), timeout=24 * 3600)
            self._budget = None
        if http_status == 429:
            self.cooldown_start()
        elif http_status is not None and http_status < 400:
            # A success ends the escalation (not the cool-down in force).
            self.cache.delete(self._key("cooldown-level"))

    # Rate limit -----------------------------------------------------------------

    def share(self, level: str) -> int:
        limit = self.config.rate_per_s
        if level == WITHDRAWAL:
            return limit
        fraction = self.config.share_opt_in if level == OPT_IN else self.config.share_reconcile
        return max(1, int(limit * fraction))

    def _take_slot(self, level: str) -> float:
        """0 when a slot of this second was taken, else the seconds to the next window."""
        now = self.clock()
        second = int(now)
        key = self._key(f"rate:{second}")
        count = self.counters.incr(key, ttl=5)
        if count <= self.share(level):
            return 0.0
        # Not sent: give the slot back, so waiting callers do not crowd out the ones allowed.
        self.counters.decr(key)
        return max(0.001, second + 1 - now)

    def calls_this_second(self) -> int:
        return int(self.cache.get(self._key(f"rate:{int(self.clock())}")) or 0)

    # 429 cool-down --------------------------------------------------------------

    def cooldown_start(self) -> float:
        """Set (or lengthen) the shared cool-down after a 429; returns its length in seconds."""
        return self.counters.pause(
            level_key=self._key("cooldown-level"),
            until_key=self._key("cooldown"),
            first_s=self.config.cooldown_s,
            max_s=self.config.cooldown_max_s,
            now=self.clock(),
        )

    def cooldown_remaining(self, *, level: str | None = None) -> float:
        until = self.cache.get(self._key("cooldown"))
        if until is None:
            return 0.0
        pause = float(until) - self.clock()
        if pause <= 0:
            return 0.0
        level = level or current_urgency()
        if level != WITHDRAWAL:
            # Lower urgency waits a little longer, so withdrawals take the first slots.
            pause += random.uniform(0.05, 0.25) * (2 if is_low_priority(level) else 1)
        return pause

    # Budget -------------------------------------------------------------------

    def budget(self, *, now: datetime | None = None, fresh: bool = False) -> Budget:
        """Credits left of the rolling 24 h: our own call log, and Zoho's header when lower."""
        moment = self.clock()
        if (
            not fresh
            and now is None
            and self._budget
            and moment - self._budget[0] < self.config.budget_cache_s
        ):
            return self._budget[1]
        from sync.models import ZohoCall

        now = now or timezone.now()
        since = now - timedelta(hours=24)
        used = (
            ZohoCall.objects.filter(service=ZohoCall.Service.CRM, started_at__gte=since)
            # Zoho charges nothing for calls it refused with 401, 429 or 5xx.
            .exclude(http_status__in=(401, 429))
            .exclude(http_status__gte=500)
            .aggregate(total=Sum("credits"))["total"]
            or 0
        )
        header: int | None = None
        seen = self.cache.get(self._key("remaining"))
        if seen is not None and moment - float(seen[1]) < 24 * 3600:
            header = int(seen[0])
        else:
            latest = (
                ZohoCall.objects.filter(credits_remaining__isnull=False, started_at__gte=since)
                .order_by("-started_at")
                .values_list("credits_remaining", flat=True)
                .first()
            )
            header = int(latest) if latest is not None else None
        remaining = self.config.daily_credits - used
        if header is not None:
            remaining = min(remaining, header)
        result = Budget(
            daily=self.config.daily_credits,
            used=int(used),
            header_remaining=header,
            remaining=int(remaining),
            reserve=self.config.reserve,
        )
        self._budget = (moment, result)
        return result

    def in_off_peak(self, now: datetime | None = None) -> bool:
        hour = (now or timezone.now()).astimezone(UTC).hour
        start, end = self.config.off_peak_start_hour, self.config.off_peak_end_hour
        if start == end:
            return True
        return start <= hour < end if start < end else (hour >= start or hour < end)

    def next_off_peak(self, now: datetime | None = None) -> datetime:
        now = (now or timezone.now()).astimezone(UTC)
        start = now.replace(hour=self.config.off_peak_start_hour, minute=0, second=0, microsecond=0)
        return start if start > now else start + timedelta(days=1)

    def deferral(self, *, level: str = RECONCILE, now: datetime | None = None) -> datetime | None:
        """None when work of this urgency may run now; else when to try again (the next off-peak start)."""
        if not self.config.enabled or not is_low_priority(level):
            return None
        if self.in_off_peak(now):
            return None
        if not self.budget(now=now).tight:
            return None
        return self.next_off_peak(now)


_gates: dict[str, QuotaGate] = {}
_gates_lock = threading.Lock()


def gate(scope: str = "zoho") -> QuotaGate:
    """The process's gate for one cache scope (`ZohoConfig.cache_prefix`: one per Zoho org)."""
    found = _gates.get(scope)
    if found is None:
        with _gates_lock:
            found = _gates.get(scope)
            if found is None:
                found = _gates[scope] = QuotaGate(scope=scope)
    return found


def gates_reset() -> None:
    """Forget the process's gates (tests that change settings or caches); clients made
    before keep the gate they were handed."""
    with _gates_lock:
        _gates.clear()


def gate_install(scope: str, instance: QuotaGate) -> None:
    with _gates_lock:
        _gates[scope] = instance


def status(scope: str = "zoho") -> dict[str, Any]:
    """What an operator page shows: budget, cool-down, this second's calls. The budget is the
    gate's, as the engine reads it: at most `budget_cache_s` old (summing a day of the call log
    was a third of the health page's time at 1,800,000 calls)."""
    g = gate(scope)
    budget = g.budget()
    return {
        "daily": budget.daily,
        "used_24h": budget.used,
        "remaining": budget.remaining,
        "header_remaining": budget.header_remaining,
        "reserve": budget.reserve,
        "tight": budget.tight,
        "off_peak": g.in_off_peak(),
        "cooldown_s": round(g.cooldown_remaining(level=WITHDRAWAL), 2),
        "calls_this_second": g.calls_this_second(),
    }
