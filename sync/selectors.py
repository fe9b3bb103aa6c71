"""Reads for the sync pages (alert banner, discrepancy, health and alert pages), aggregated in the database.

Every function here is a fixed number of queries however many rows there are: counts
are GROUP BY queries, lists are querysets with their joins chosen, for the tables to
paginate. None writes: the health page's hourly call tallies are stored by beat
(`sync.tallies.callhour_tally`), and an hour it has not stored yet is counted here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet, Sum, Window
from django.db.models.functions import TruncDate, TruncHour
from django.utils import timezone

from compliance import tally_memo
from sync import quota
from sync.models import (
    Alert,
    CallDay,
    CallHour,
    Discrepancy,
    FieldMapping,
    ReconciliationRun,
    SyncAudit,
    SyncPush,
    ZohoCall,
)
from sync.outbox import outbox_pending_count

HEALTH_WINDOW = timedelta(hours=24)
# The health page's windows (?window=…): the day's per hour, the longer ones per day.
HEALTH_WINDOWS = {
    "24h": ("24 hours", HEALTH_WINDOW),
    "7d": ("7 days", timedelta(days=7)),
    "30d": ("30 days", timedelta(days=30)),
}
# How far back `sync.tallies.callhour_tally` stores each hour: the longest window, and a day more
# for the overview's "30 days before today", which starts at a midnight up to 31 days ago.
TALLY_WINDOW = timedelta(days=31)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# A call is logged when it starts and completed when it ends, at most ZOHO_TIMEOUT_S later
# (a Bulk Read download a little more): an hour's tallies are final this long after its end,
# and `sync.tallies.callhour_tally` stores them from then on.
CLOSED_AFTER = timedelta(minutes=10)
RECONCILIATION_RUNS_SHOWN = 5
ERROR = ZohoCall.Outcome.ERROR

# -- the alert banner ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertBanner:
    count: int
    newest_id: int
    newest_kind: str
    newest_message: str
    newest_at: datetime

    @property
    def headline(self) -> str:
        """The newest alert's first line (alert messages run over several lines)."""
        return self.newest_message.strip().splitlines()[0] if self.newest_message.strip() else ""


def alert_banner() -> AlertBanner | None:
    """How many alerts wait for acknowledgement, and the newest one; None when none do.

    One query: the count is a window over the unacknowledged rows (the partial index
    `sync_alert_unacked`), the newest row is the first of them.
    """
    row = (
        Alert.objects.filter(acknowledged_at__isnull=True)
        .annotate(total=Window(expression=Count("id")))
        .order_by("-created_at", "-id")
        .values("id", "kind", "message", "created_at", "total")
        .first()
    )
    if row is None:
        return None
    return AlertBanner(
        count=row["total"],
        newest_id=row["id"],
        newest_kind=row["kind"],
        newest_message=row["message"],
        newest_at=row["created_at"],
    )


# -- alerts --------------------------------------------------------------------------------------


def alerts_list(*, include_acknowledged: bool) -> QuerySet[Alert]:
    """Alerts newest first: only those waiting for acknowledgement, or all of them."""
    alerts = Alert.objects.all()
    if not include_acknowledged:
        alerts = alerts.filter(acknowledged_at__isnull=True)
    return alerts.order_by("-created_at", "-id")


def alerts_of_discrepancy(*, discrepancy: Discrepancy) -> QuerySet[Alert]:
    return Alert.objects.filter(discrepancy=discrepancy).order_by("-created_at", "-id")


# -- discrepancies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    key: str
    label: str
    count: int


@dataclass(frozen=True)
class OpenDiscrepancies:
    total: int
    by_kind: list[Tally]
    by_field: list[Tally]


def discrepancies_open_counts() -> OpenDiscrepancies:
    """Open discrepancies per kind and per CRM field, largest first (two GROUP BY queries)."""
    open_rows = Discrepancy.objects.filter(status=Discrepancy.Status.OPEN).order_by()
    kinds = dict(Discrepancy.Kind.choices)
    by_kind = [
        Tally(key=row["kind"], label=kinds.get(row["kind"], row["kind"]), count=row["n"])
        for row in open_rows.values("kind").annotate(n=Count("id")).order_by("-n", "kind")
    ]
    by_field = [
        Tally(key=row["crm_field"], label=row["crm_field"] or "(whole record)", count=row["n"])
        for row in open_rows.values("crm_field").annotate(n=Count("id")).order_by("-n", "crm_field")
    ]
    return OpenDiscrepancies(total=sum(t.count for t in by_kind), by_kind=by_kind, by_field=by_field)


def discrepancy_fields() -> list[str]:
    """The CRM fields a discrepancy can be on, for the filter's choices, in one query.

    Discrepancies are recorded on mapped fields or on the whole record (""): every field of a
    mapping, active or not, the record, and whatever field an open discrepancy is on. (A
    DISTINCT over every discrepancy ever recorded reads the whole table: there is no index
    on the field.) Resolved discrepancies on a field no mapping names any more are listed
    under "Any field".
    """
    mapped = FieldMapping.objects.order_by().values_list("crm_field", flat=True)
    open_fields = (
        Discrepancy.objects.filter(status=Discrepancy.Status.OPEN)
        .order_by()
        .values_list("crm_field", flat=True)
    )
    return sorted({"", *mapped.union(open_fields)})


def discrepancies_list(
    *, status: str = "", kind: str = "", crm_field: str | None = None
) -> QuerySet[Discrepancy]:
    """Discrepancies newest first, with their contact, narrowed by whichever filters are given.

    ``crm_field=""`` means record-level discrepancies; ``None`` means any field.
    """
    # Not the columns the list does not show: the rows are sorted before the page is cut, and
    # evidence makes them wide.
    rows = Discrepancy.objects.select_related("contact").defer("evidence", "hint", "resolution")
    if status:
        rows = rows.filter(status=status)
    if kind:
        rows = rows.filter(kind=kind)
    if crm_field is not None:
        rows = rows.filter(crm_field=crm_field)
    return rows.order_by("-opened_at", "-id")


def discrepancy_get(*, discrepancy_id: int) -> Discrepancy:
    """One discrepancy with its contact; raises Discrepancy.DoesNotExist."""
    return Discrepancy.objects.select_related("contact").get(pk=discrepancy_id)


# -- sync health ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallStats:
    calls: int = 0
    errors: int = 0
    throttled: int = 0

    @property
    def error_rate(self) -> float:
        """Errors as a percentage of calls (0 without calls)."""
        return 100.0 * self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class HourStats(CallStats):
    hour: datetime | None = None


@dataclass(frozen=True)
class EndpointStats(CallStats):
    service: str = ""
    operation: str = ""
    credits: int = 0
    avg_ms: float | None = None


@dataclass(frozen=True)
class AuditSummary:
    """The stranded-change audit (`sync.audit`): its last run, and what it found in the window."""

    last: SyncAudit
    runs: int
    stranded: int


def audit_summary(*, since: datetime) -> AuditSummary | None:
    last = SyncAudit.objects.order_by("-ran_at").first()
    if last is None:
        return None
    window = SyncAudit.objects.filter(ran_at__gte=since).aggregate(runs=Count("id"), stranded=Sum("stranded"))
    return AuditSummary(last=last, runs=window["runs"], stranded=window["stranded"] or 0)


@dataclass(frozen=True)
class SyncHealth:
    since: datetime
    until: datetime
    totals: CallStats
    hours: list[HourStats]
    endpoints: list[EndpointStats]
    budget: dict[str, Any]
    verification: list[Tally]
    outbox_backlog: int
    reconciliation_runs: list[ReconciliationRun] = field(default_factory=list)
    audit: AuditSummary | None = None
    # ?window=: its key and label, and whether `hours` holds hours or days.
    window: str = "24h"
    window_label: str = "24 hours"
    per: str = "hour"

    @property
    def busiest_hour_calls(self) -> int:
        return max((h.calls for h in self.hours), default=0)

    @property
    def credits_used_percent(self) -> float:
        daily = int(self.budget.get("daily") or 0)
        return 100.0 * int(self.budget.get("used_24h") or 0) / daily if daily else 0.0


def _bucket_figures() -> dict[str, Any]:
    """What each hour's or day's bucket of calls adds up (CallHour's columns)."""
    return {
        "calls": Count("started_at"),
        "errors": Count("started_at", filter=Q(outcome=ERROR)),
        "throttled": Count("started_at", filter=Q(http_status=429)),
        "credits_sum": Sum("credits"),
        "ms_sum": Sum("duration_ms"),
        "timed": Count("duration_ms"),
    }


def call_tallies(calls: QuerySet[ZohoCall]) -> list[dict[str, Any]]:
    """Calls, errors, 429s, credits and latency of these calls per hour, service and operation.

    The call log's (started_at) index includes every column this reads, so PostgreSQL answers
    a window of it from the index alone.
    """
    return list(
        calls.annotate(hour=TruncHour("started_at"))
        .values("hour", "service", "operation")
        .annotate(**_bucket_figures())
        .order_by()
    )


def hour_start(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def final_hours(*, since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The whole hours of the window that are over and final: from the first (inclusive) to the
    second (exclusive); empty when the second is not after the first."""
    first_whole = since if since == hour_start(since) else hour_start(since) + HOUR
    return first_whole, hour_start(until - CLOSED_AFTER)


def _stored_hours(start: datetime, end: datetime) -> tuple[list[dict[str, Any]], datetime]:
    """The stored tallies (`CallHour`, written by `sync.tallies.callhour_tally`) of the whole hours
    from `start` to `end`, with calls, up to the first hour not stored yet; and that hour (`end`
    when every hour is stored), from which the caller counts the call log itself."""
    stored: list[dict[str, Any]] = [
        dict(row)
        for row in CallHour.objects.filter(hour__gte=start, hour__lt=end).values(
            "hour", "service", "operation", "calls", "errors", "throttled", "ms_sum", "timed",
            credits_sum=F("credits"),
        )
    ]  # fmt: skip
    have = {row["hour"] for row in stored}
    hour = start
    while hour < end and hour in have:
        hour += HOUR
    return [row for row in stored if row["hour"] < hour and row["calls"]], hour


def calls_in_window(*, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Calls, errors, 429s, credits and latency per hour, service and operation of the window.

    One pass feeds both the per-hour and the per-endpoint tables. Whole hours that are over come
    from `CallHour` (stored by beat's `callhour_tally`); the window's first part of an hour, the
    hours not yet final and any final hour not stored yet (beat is late) are counted from the
    call log. Three queries, and nothing written: the figures are the same either way.
    """
    first_whole, final_until = final_hours(since=since, until=until)
    if final_until <= first_whole:
        return call_tallies(ZohoCall.objects.filter(started_at__gte=since, started_at__lte=until))
    stored, counted_from = _stored_hours(first_whole, final_until)
    return (
        call_tallies(ZohoCall.objects.filter(started_at__gte=since, started_at__lt=first_whole))
        + stored
        + call_tallies(ZohoCall.objects.filter(started_at__gte=counted_from, started_at__lte=until))
    )


def calls_per_hour(rows: list[dict[str, Any]], *, since: datetime, until: datetime) -> list[HourStats]:
    """Calls, errors and 429s per hour of the window; hours without calls are there with zeros."""
    found: dict[datetime, list[int]] = {}
    for row in rows:
        totals = found.setdefault(row["hour"], [0, 0, 0])
        totals[0] += row["calls"]
        totals[1] += row["errors"]
        totals[2] += row["throttled"]
    hours: list[HourStats] = []
    hour = hour_start(since)
    while hour <= until:
        calls, errors, throttled = found.get(hour, (0, 0, 0))
        hours.append(HourStats(hour=hour, calls=calls, errors=errors, throttled=throttled))
        hour += HOUR
    return hours


def calls_per_endpoint(rows: list[dict[str, Any]]) -> list[EndpointStats]:
    """Calls, errors, 429s, credits and mean latency per service and operation, busiest first."""
    found: dict[tuple[str, str], list[int]] = {}
    for row in rows:
        totals = found.setdefault((row["service"], row["operation"]), [0, 0, 0, 0, 0, 0])
        for i, key in enumerate(("calls", "errors", "throttled", "credits_sum", "ms_sum", "timed")):
            totals[i] += row[key] or 0
    endpoints = [
        EndpointStats(
            service=service,
            operation=operation,
            calls=calls,
            errors=errors,
            throttled=throttled,
            credits=credits,
            avg_ms=ms / timed if timed else None,
        )
        for (service, operation), (calls, errors, throttled, credits, ms, timed) in found.items()
    ]
    return sorted(endpoints, key=lambda e: (-e.calls, e.service, e.operation))


def push_verification_counts(*, since: datetime) -> list[Tally]:
    """How the pushes made since `since` ended: verified, mismatch, superseded, pending, rejected.

    The push log's (created_at) index carries the verification too, so PostgreSQL counts the
    window's pushes from the index alone, without visiting the rows.
    """
    rows = (
        SyncPush.objects.filter(created_at__gte=since)
        .values("verification")
        # verification (never null), not id: the index holds it, and not the id.
        .annotate(n=Count("verification"))
        .order_by()
    )
    found = {row["verification"]: row["n"] for row in rows}
    return [
        Tally(key=value, label=label, count=found.get(value, 0))
        for value, label in SyncPush.Verification.choices
    ]


def reconciliation_runs_recent(*, limit: int = RECONCILIATION_RUNS_SHOWN) -> list[ReconciliationRun]:
    return list(ReconciliationRun.objects.order_by("-id")[:limit])


def _day_tallies(calls: QuerySet[ZohoCall]) -> list[dict[str, Any]]:
    """`call_tallies`' figures per UTC day (key "hour": the day's midnight) instead of per hour."""
    return list(
        calls.annotate(hour=TruncDate("started_at", tzinfo=UTC))
        .values("hour", "service", "operation")
        .annotate(**_bucket_figures())
        .order_by()
    )


def calls_per_day_in_window(*, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """`calls_in_window`'s figures per UTC day, service and operation (key "hour": the day, as a
    midnight), for windows of days to months (the trends' year): one row per day and operation.

    Whole days that beat stored come from `CallDay` (summed from their hours by
    `sync.tallies.callday_tally`, which leaves no gap between them); the other whole hours that are over come from `CallHour` up to
    the newest one stored, summed per day by the database; the window's
    first part of an hour and everything after that newest hour are counted from the call log.
    Beat stores every missing hour of the last `TALLY_WINDOW` on each run, so the stored hours
    have no gap in it (an hour older than that beat never stored is not counted). Five queries,
    four while the stored days read are the ones this process read last (`_stored_days`).
    """
    first_whole, final_until = final_hours(since=since, until=until)
    if final_until <= first_whole:
        return _as_midnights(
            _day_tallies(ZohoCall.objects.filter(started_at__gte=since, started_at__lte=until))
        )
    stored_hours = CallHour.objects.filter(hour__gte=first_whole, hour__lt=final_until)
    newest = stored_hours.aggregate(newest=Max("hour"))["newest"]
    counted_from = newest + HOUR if newest is not None else first_whole
    # The stored days (`CallDay`, no gap between them: see `callday_tally`) inside the stored hours
    # read: read as days; only the hours before the first whole day and after the last stored
    # one are summed.
    first_day = _midnight(first_whole) + (DAY if first_whole != _midnight(first_whole) else timedelta())
    last_day = _midnight(counted_from)
    from_days, days_end = _stored_days(first_day, last_day)
    from_hours = (
        stored_hours.filter(Q(hour__lt=first_day) | Q(hour__gte=days_end), calls__gt=0, hour__lt=counted_from)
        .annotate(d=TruncDate("hour", tzinfo=UTC))
        .values("d", "service", "operation")
        .annotate(
            calls_n=Sum("calls"),
            errors_n=Sum("errors"),
            throttled_n=Sum("throttled"),
            credits_n=Sum("credits"),
            ms_n=Sum("ms_sum"),
            timed_n=Sum("timed"),
        )
        .values_list(
            "d", "service", "operation", "calls_n", "errors_n", "throttled_n", "credits_n", "ms_n", "timed_n"
        )
        .order_by()
    )
    rows = [dict(zip(_DAY_KEYS, row, strict=True)) for row in (*from_hours, *from_days)]
    return _as_midnights(
        _day_tallies(ZohoCall.objects.filter(started_at__gte=since, started_at__lt=first_whole))
        + rows
        + _day_tallies(ZohoCall.objects.filter(started_at__gte=counted_from, started_at__lte=until))
    )


_DAY_KEYS = ("hour", "service", "operation", "calls", "errors", "throttled", "credits_sum", "ms_sum", "timed")


def _stored_days(first_day: datetime, last_day: datetime) -> tuple[tuple[tuple[Any, ...], ...], datetime]:
    """The stored days (`CallDay`) from `first_day` to `last_day` (midnights, the second excluded):
    their rows with calls, in `_DAY_KEYS`' order (the day as its midnight); and the midnight after
    the newest of them (`first_day` when none is stored), from which the hours are summed. Kept by
    the process while the call days are the same (`compliance.tally_memo`: CallDay is insert-only
    and derived, so its count and highest id change with any row added or deleted)."""
    stamp = tuple(CallDay.objects.aggregate(rows=Count("id"), highest=Max("id")).values())

    def read() -> tuple[tuple[tuple[Any, ...], ...], datetime]:
        found = []
        newest: date | None = None
        for day, *figures in CallDay.objects.filter(
            day__gte=first_day.date(), day__lt=last_day.date()
        ).values_list(
            "day", "service", "operation", "calls", "errors", "throttled", "credits", "ms_sum", "timed"
        ):
            newest = day if newest is None or day > newest else newest
            if figures[2]:  # calls: an empty row only says the day was stored
                found.append((datetime(day.year, day.month, day.day, tzinfo=UTC), *figures))
        end = datetime(newest.year, newest.month, newest.day, tzinfo=UTC) + DAY if newest else first_day
        return tuple(found), end

    return tally_memo.remembered(("call-days", first_day, last_day), stamp, read)


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _as_midnights(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows' days (dates from the database) as UTC midnights, the key the hourly rows use."""
    for row in rows:
        day = row["hour"]
        if not isinstance(day, datetime):
            row["hour"] = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return rows


def calls_per_day(rows: list[dict[str, Any]], *, since: datetime, until: datetime) -> list[HourStats]:
    """Calls, errors and 429s per UTC day of the window; days without calls are there with zeros."""
    found: dict[datetime, list[int]] = {}
    for row in rows:
        totals = found.setdefault(row["hour"], [0, 0, 0])
        totals[0] += row["calls"]
        totals[1] += row["errors"]
        totals[2] += row["throttled"]
    days: list[HourStats] = []
    day = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day <= until:
        calls, errors, throttled = found.get(day, (0, 0, 0))
        days.append(HourStats(hour=day, calls=calls, errors=errors, throttled=throttled))
        day += DAY
    return days


def health_window(key: str) -> tuple[str, str, timedelta]:
    """The window ?window=`key` names (key, label, length); the 24 hours for anything else."""
    if key not in HEALTH_WINDOWS:
        key = "24h"
    label, length = HEALTH_WINDOWS[key]
    return key, label, length


def sync_health(*, now: datetime | None = None, window: str = "24h") -> SyncHealth:
    """Everything the health page shows, for the window up to ``now``: the 24 hours per hour, the
    7 or 30 days per day (their calls from the stored hours, so no slower than the day's).

    The pushes' verification stays the last 24 hours' whatever the window: counting a month of
    pushes would read a month of the push log's index.
    """
    until = now or timezone.now()
    key, label, length = health_window(window)
    since = until - length
    if length > HEALTH_WINDOW:
        calls = calls_per_day_in_window(since=since, until=until)
        periods = calls_per_day(calls, since=since, until=until)
    else:
        calls = calls_in_window(since=since, until=until)
        periods = calls_per_hour(calls, since=since, until=until)
    endpoints = calls_per_endpoint(calls)
    totals = CallStats(
        calls=sum(e.calls for e in endpoints),
        errors=sum(e.errors for e in endpoints),
        throttled=sum(e.throttled for e in endpoints),
    )
    return SyncHealth(
        since=since,
        until=until,
        totals=totals,
        hours=periods,
        endpoints=endpoints,
        # The quota's own count (CRM credits Zoho charged for, and its header when lower).
        budget=quota.status(),
        verification=push_verification_counts(since=until - HEALTH_WINDOW),
        outbox_backlog=outbox_pending_count(),
        reconciliation_runs=reconciliation_runs_recent(),
        audit=audit_summary(since=since),
        window=key,
        window_label=label,
        per="day" if length > HEALTH_WINDOW else "hour",
    )
