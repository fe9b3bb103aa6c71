"""Reads for the overview and the trends page: a fixed number of queries whatever the ledger's size.

No page counts consent events: the figures come from the tallies beat keeps
(`compliance.tallies`: `ConsentDay`, `ConsentCount`) plus the few events past their mark, and
the Zoho calls from `sync`'s stored hours (`CallHour`). None of these functions writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import TruncWeek
from django.utils import timezone

from compliance import tally_memo
from compliance.models import (
    ConsentCount,
    ConsentDay,
    ConsentEvent,
    ConsentStatus,
    Purpose,
    Seal,
    Source,
    VerifyRun,
)
from compliance.tallies import consent_day_stamp, consent_days_live
from compliance.verify_runs import verify_run_latest
from sync.models import OPEN_CLOCK, WithdrawalClock, WithdrawalClockMark
from sync.optout_clock import BACKFILL_DAYS as CLOCK_BACKFILL_DAYS
from sync.optout_clock import MARK as CLOCK_MARK
from sync.optout_clock import PERMISSIVE as CLOCK_PERMISSIVE
from sync.optout_clock import WITHDRAWN as CLOCK_WITHDRAWN
from sync.optout_clock import deadline_after
from sync.selectors import CallStats, calls_per_day_in_window

STATUSES = [value for value, _label in ConsentStatus.choices]
SOURCE_LABELS = dict(Source.choices)

# -- consent tallies ---------------------------------------------------------------------------


def consent_live() -> list[dict[str, Any]]:
    """The events past the tallies' mark, tallied the same way (a few minutes' worth)."""
    return consent_days_live()


def _day_rows(*, since: date, until: date | None = None, live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored and live tallies (day, purpose_id, source, previous_status, status, moved, events) of the days
    from `since` (to `until`, inclusive, when given): one query."""
    stored = ConsentDay.objects.filter(day__gte=since)
    if until is not None:
        stored = stored.filter(day__lte=until)
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in stored.values(
            "day", "purpose_id", "source", "previous_status", "status", "moved", "events"
        )
    ]
    return rows + [r for r in live if r["day"] >= since and (until is None or r["day"] <= until)]


@dataclass(frozen=True)
class PurposeNow:
    code: str
    name: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def opted_in(self) -> int:
        return self.counts.get(ConsentStatus.OPTED_IN, 0)

    @property
    def opt_in_rate(self) -> float | None:
        """Opted-in contacts as a percentage of those with any decision on the purpose."""
        return 100.0 * self.opted_in / self.total if self.total else None


def _counts_now(live: list[dict[str, Any]]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
    for purpose_id, status, n in ConsentCount.objects.values_list("purpose_id", "status", "contacts"):
        counts[purpose_id][status] += n
    for row in live:
        if not row["moved"]:
            continue
        counts[row["purpose_id"]][row["status"]] += row["events"]
        if row["previous_status"]:
            counts[row["purpose_id"]][row["previous_status"]] -= row["events"]
    return counts


def consent_now(*, live: list[dict[str, Any]] | None = None) -> list[PurposeNow]:
    """Each purpose's consents per status now, with the opt-in rate (two queries)."""
    counts = _counts_now(consent_live() if live is None else live)
    return [
        PurposeNow(code=p.code, name=p.name, counts=dict(counts.get(p.pk) or dict.fromkeys(STATUSES, 0)))
        for p in Purpose.objects.order_by("code")
    ]


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class SourceWeeks:
    source: str
    label: str
    this_week: int
    last_week: int

    @property
    def change(self) -> int:
        return self.this_week - self.last_week


def changes_this_week(*, today: date, live: list[dict[str, Any]] | None = None) -> list[SourceWeeks]:
    """Consent events per source this week (Monday on) and last week, busiest first (one query)."""
    this_monday = week_start(today)
    last_monday = this_monday - timedelta(days=7)
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in _day_rows(since=last_monday, until=today, live=consent_live() if live is None else live):
        found[row["source"]][0 if row["day"] >= this_monday else 1] += row["events"]
    rows = [
        SourceWeeks(source=s, label=SOURCE_LABELS.get(s, s), this_week=v[0], last_week=v[1])
        for s, v in found.items()
    ]
    return sorted(rows, key=lambda r: (-r.this_week, -r.last_week, r.source))


# -- withdrawals in flight ---------------------------------------------------------------------


@dataclass(frozen=True)
class WithdrawalsWaiting:
    """Withdrawals not yet in effect everywhere, as the opt-out clock (`sync.optout_clock`) knows
    them: each clock waits for CRM's read-back and for every Campaigns list it needs."""

    waiting_crm: int  # CRM not verified yet (Campaigns may be waiting too)
    waiting_lists: int  # verified in CRM (or not needed there), a Campaigns list still to go
    not_started: int  # recorded since the clock's last run (no clock yet)
    overdue_count: int
    oldest_at: datetime | None
    deadline_at: datetime | None
    now: datetime

    @property
    def total(self) -> int:
        return self.waiting_crm + self.waiting_lists + self.not_started

    @property
    def overdue(self) -> bool:
        return self.deadline_at is not None and self.deadline_at <= self.now


def withdrawals_waiting(*, now: datetime | None = None) -> WithdrawalsWaiting:
    """The open clocks (the partial index sync_wclock_open: a bounded set), split by the leg they
    wait for, with the earliest deadline; plus the withdrawals recorded since the clocks' cursor
    (events past `WithdrawalClockMark`, read by primary key), which have no clock yet. Two queries,
    three before the clock ever ran."""
    now = now or timezone.now()
    crm_pending = Q(crm_required=True, crm_verified_at__isnull=True)
    clocks = WithdrawalClock.objects.filter(OPEN_CLOCK).aggregate(
        crm=Count("id", filter=crm_pending),
        lists=Count("id", filter=~crm_pending),
        overdue=Count("id", filter=Q(deadline_at__lte=now)),
        oldest=Min("recorded_at"),
        deadline=Min("deadline_at"),
    )
    mark = WithdrawalClockMark.objects.filter(pk=CLOCK_MARK).values_list("last_event_id", flat=True).first()
    new_events = ConsentEvent.objects.filter(status__in=CLOCK_WITHDRAWN, previous_status__in=CLOCK_PERMISSIVE)
    if mark is not None:
        new_events = new_events.filter(id__gt=mark)
    else:  # the clock never ran: the withdrawals of its backfill window
        new_events = new_events.filter(recorded_at__gte=now - timedelta(days=CLOCK_BACKFILL_DAYS))
    unclocked = new_events.aggregate(n=Count("id"), oldest=Min("recorded_at"))
    oldest = min((at for at in (clocks["oldest"], unclocked["oldest"]) if at is not None), default=None)
    deadlines = [clocks["deadline"]] if clocks["deadline"] is not None else []
    if unclocked["oldest"] is not None:
        deadlines.append(deadline_after(unclocked["oldest"], settings.OPT_OUT_DEADLINE_BUSINESS_DAYS))
    return WithdrawalsWaiting(
        waiting_crm=clocks["crm"],
        waiting_lists=clocks["lists"],
        not_started=unclocked["n"],
        # (a withdrawal without a clock yet is minutes old: never past its deadline)
        overdue_count=clocks["overdue"],
        oldest_at=oldest,
        deadline_at=min(deadlines, default=None),
        now=now,
    )


# -- integrity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Integrity:
    last_seal: Seal | None
    last_run: VerifyRun | None
    now: datetime

    @property
    def seal_age(self) -> timedelta | None:
        return self.now - self.last_seal.created_at if self.last_seal else None

    @property
    def seal_stale(self) -> bool:
        """Beat seals every hour: a seal older than two hours means sealing has stopped."""
        age = self.seal_age
        return age is None or age > timedelta(hours=2)

    @property
    def run_age(self) -> timedelta | None:
        return self.now - self.last_run.started_at if self.last_run else None


def integrity(*, now: datetime | None = None) -> Integrity:
    return Integrity(
        last_seal=Seal.objects.order_by("-sequence").first(),
        last_run=verify_run_latest(),
        now=now or timezone.now(),
    )


# -- Zoho calls --------------------------------------------------------------------------------


def _stats(rows: Iterable[dict[str, Any]]) -> CallStats:
    calls = errors = throttled = 0
    for row in rows:
        calls += row["calls"]
        errors += row["errors"]
        throttled += row["throttled"]
    return CallStats(calls=calls, errors=errors, throttled=throttled)


@dataclass(frozen=True)
class ErrorRates:
    today: CallStats
    last_30_days: CallStats

    @property
    def worse(self) -> bool:
        return self.today.calls > 0 and self.today.error_rate > self.last_30_days.error_rate


def error_rates(*, now: datetime | None = None) -> ErrorRates:
    """Zoho calls' error rate today (UTC, midnight on) against the 30 days before today."""
    now = now or timezone.now()
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = calls_per_day_in_window(since=midnight - timedelta(days=30), until=now)
    return ErrorRates(
        today=_stats(r for r in rows if r["hour"] >= midnight),
        last_30_days=_stats(r for r in rows if r["hour"] < midnight),
    )


# -- the trends page ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentTrends:
    weeks: list[date]
    # source -> events per week
    changes_by_source: dict[str, list[int]]
    # purpose code -> events per week
    changes_by_purpose: dict[str, list[int]]
    # purpose code -> opt-in rate (%) at each week's end; None without any decision yet
    opt_in_rate: dict[str, list[float | None]]


def consent_trends(*, since: date, until: date, purpose: str = "", source: str = "") -> ConsentTrends:
    """Weekly consent events by source and by purpose from `since` to `until` (weeks start on
    Monday), narrowed to one purpose and/or one source; and each purpose's opt-in rate at the end
    of each week (not narrowed by source: a rate is of everybody's consent).

    The rates walk back from the current counts (`ConsentCount`) through each week's net moves,
    so the moves after `until` (and those of the first week before `since`) are read too. The
    database sums the stored days per week: a year is a few thousand rows whatever the ledger's
    size. Five queries, and one for the live events.
    """
    live = consent_live()
    purposes = {p.pk: p.code for p in Purpose.objects.order_by("code")}
    first_week = week_start(since)
    weeks: list[date] = []
    week = first_week
    while week <= until:
        weeks.append(week)
        week += timedelta(days=7)
    after = len(weeks)
    index = {w: i for i, w in enumerate(weeks)}
    by_source: dict[str, list[int]] = {}
    by_purpose: dict[str, list[int]] = {}
    # purpose code -> status -> net move per week (index), or after the range (`after`)
    moves: dict[str, dict[str, list[int]]] = {
        code: {s: [0] * (after + 1) for s in STATUSES} for code in purposes.values()
    }

    def count(row: dict[str, Any], i: int, *, in_range: bool) -> None:
        code = purposes.get(row["purpose_id"])
        if code is None:
            return
        if row["moved"]:
            moves[code][row["status"]][i] += row["events"]
            if row["previous_status"]:
                moves[code][row["previous_status"]][i] -= row["events"]
        if not in_range or (purpose and code != purpose) or (source and row["source"] != source):
            return
        by_source.setdefault(row["source"], [0] * after)[i] += row["events"]
        by_purpose.setdefault(code, [0] * after)[i] += row["events"]

    in_range, before, after_range = _stored_week_rows(since=since, until=until, first_week=first_week)
    for row in in_range:
        count(row, index[row["week"]], in_range=True)
    for row in before:
        count(row, 0, in_range=False)
    for row in after_range:
        count(row, after, in_range=False)
    for row in live:
        if row["day"] >= first_week:
            i = index[week_start(row["day"])] if row["day"] <= until else after
            count(row, i, in_range=since <= row["day"] <= until)
    now_counts = _counts_now(live)
    rates: dict[str, list[float | None]] = {}
    for purpose_id, code in purposes.items():
        if purpose and code != purpose:
            continue
        counts = dict(now_counts.get(purpose_id) or dict.fromkeys(STATUSES, 0))
        # Back to the end of the range: undo what happened after it.
        for s in STATUSES:
            counts[s] -= moves[code][s][after]
        series: list[float | None] = [None] * after
        for i in range(after - 1, -1, -1):
            total = sum(counts.values())
            series[i] = round(100.0 * counts[ConsentStatus.OPTED_IN] / total, 1) if total else None
            for s in STATUSES:
                counts[s] -= moves[code][s][i]
        rates[code] = series
    return ConsentTrends(
        weeks=weeks, changes_by_source=by_source, changes_by_purpose=by_purpose, opt_in_rate=rates
    )


def _stored_week_rows(
    *, since: date, until: date, first_week: date
) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """The stored days' (`ConsentDay`) events summed per week from `since` to `until`, and the
    moves (events that became the current decision) before `since` in its week and after `until`:
    read once per process while the tallies' mark stays (`compliance.tally_memo`)."""

    def read() -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
        group = ("purpose_id", "source", "previous_status", "status", "moved")
        in_range = (
            ConsentDay.objects.filter(day__gte=since, day__lte=until)
            .annotate(week=TruncWeek("day"))
            .values("week", *group)
            .annotate(events=Sum("events"))
            .order_by()
        )
        moved_only = (
            ConsentDay.objects.filter(moved=True).values(*group).annotate(events=Sum("events")).order_by()
        )
        return (
            tuple(in_range),
            tuple(moved_only.filter(day__gte=first_week, day__lt=since)),
            tuple(moved_only.filter(day__gt=until)),
        )

    return tally_memo.remembered(("consent-weeks", since, until, first_week), consent_day_stamp(), read)


@dataclass(frozen=True)
class EndpointRates:
    """Errors and calls of one endpoint per period (day or month)."""

    endpoint: str
    calls: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)

    def rates(self) -> list[float | None]:
        return [round(100.0 * e / c, 1) if c else None for c, e in zip(self.calls, self.errors, strict=True)]


@dataclass(frozen=True)
class CallTrends:
    days: list[date]
    months: list[date]
    daily: list[EndpointRates]
    monthly: list[EndpointRates]
    credits_per_day: list[int]


def call_trends(*, since: date, until: date, endpoints_shown: int = 6) -> CallTrends:
    """Zoho API error rates per endpoint per day and per month, and CRM credits per day, from
    `since` to `until` (UTC days, inclusive): the stored hours summed by the database. The
    `endpoints_shown` busiest endpoints each get their line; the others are summed as "other"."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    rows = calls_per_day_in_window(since=start, until=min(end - timedelta(microseconds=1), timezone.now()))
    days = [since + timedelta(days=i) for i in range((until - since).days + 1)]
    months: list[date] = []
    for d in days:
        if not months or (d.year, d.month) != (months[-1].year, months[-1].month):
            months.append(d.replace(day=1))
    busiest: dict[str, int] = defaultdict(int)
    for row in rows:
        busiest[row["operation"]] += row["calls"]
    shown = [op for op, _n in sorted(busiest.items(), key=lambda kv: (-kv[1], kv[0]))[:endpoints_shown]]
    names = [*shown, "other"] if len(busiest) > len(shown) else shown
    daily = {name: EndpointRates(name, [0] * len(days), [0] * len(days)) for name in names}
    monthly = {name: EndpointRates(name, [0] * len(months), [0] * len(months)) for name in names}
    month_index = {(m.year, m.month): i for i, m in enumerate(months)}
    credits = [0] * len(days)
    for row in rows:
        day = row["hour"].date()
        i = (day - since).days
        if not 0 <= i < len(days):
            continue
        name = row["operation"] if row["operation"] in shown else "other"
        daily[name].calls[i] += row["calls"]
        daily[name].errors[i] += row["errors"]
        m = month_index[day.year, day.month]
        monthly[name].calls[m] += row["calls"]
        monthly[name].errors[m] += row["errors"]
        credits[i] += row["credits_sum"] or 0
    return CallTrends(
        days=days,
        months=months,
        daily=list(daily.values()),
        monthly=list(monthly.values()),
        credits_per_day=credits,
    )
