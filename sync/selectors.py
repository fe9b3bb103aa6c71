"""Reads for the sync pages (alert banner, discrepancy, health and alert pages), aggregated in the database.

Every function here is a fixed number of queries however many rows there are: counts
are GROUP BY queries, lists are querysets with their joins chosen, for the tables to
paginate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet, Sum, Window
from django.db.models.functions import TruncHour
from django.utils import timezone

from sync import quota
from sync.models import Alert, Discrepancy, ReconciliationRun, SyncPush, ZohoCall
from sync.outbox import outbox_pending_count

HEALTH_WINDOW = timedelta(hours=24)
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
    """Every CRM field a discrepancy was ever recorded on, for the filter's choices."""
    return list(Discrepancy.objects.order_by("crm_field").values_list("crm_field", flat=True).distinct())


def discrepancies_list(
    *, status: str = "", kind: str = "", crm_field: str | None = None
) -> QuerySet[Discrepancy]:
    """Discrepancies newest first, with their contact, narrowed by whichever filters are given.

    ``crm_field=""`` means record-level discrepancies; ``None`` means any field.
    """
    rows = Discrepancy.objects.select_related("contact")
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

    @property
    def busiest_hour_calls(self) -> int:
        return max((h.calls for h in self.hours), default=0)

    @property
    def credits_used_percent(self) -> float:
        daily = int(self.budget.get("daily") or 0)
        return 100.0 * int(self.budget.get("used_24h") or 0) / daily if daily else 0.0


def _call_counts() -> dict[str, Any]:
    return {
        "calls": Count("id"),
        "errors": Count("id", filter=Q(outcome=ERROR)),
        "throttled": Count("id", filter=Q(http_status=429)),
    }


def calls_per_hour(*, since: datetime, until: datetime) -> list[HourStats]:
    """Calls, errors and 429s per hour of the window; hours without calls are there with zeros."""
    rows = (
        ZohoCall.objects.filter(started_at__gte=since, started_at__lte=until)
        .annotate(hour=TruncHour("started_at"))
        .values("hour")
        .annotate(**_call_counts())
        .order_by("hour")
    )
    found = {row["hour"]: row for row in rows}
    hours: list[HourStats] = []
    hour = since.replace(minute=0, second=0, microsecond=0)
    while hour <= until:
        row = found.get(hour, {})
        hours.append(
            HourStats(
                hour=hour,
                calls=row.get("calls", 0),
                errors=row.get("errors", 0),
                throttled=row.get("throttled", 0),
            )
        )
        hour += timedelta(hours=1)
    return hours


def calls_per_endpoint(*, since: datetime, until: datetime) -> list[EndpointStats]:
    """Calls, errors, 429s, credits and mean latency per service and operation, busiest first."""
    rows = (
        ZohoCall.objects.filter(started_at__gte=since, started_at__lte=until)
        .values("service", "operation")
        .annotate(**_call_counts(), credits_sum=Sum("credits"), avg_ms=Avg("duration_ms"))
        .order_by("-calls", "service", "operation")
    )
    return [
        EndpointStats(
            service=row["service"],
            operation=row["operation"],
            calls=row["calls"],
            errors=row["errors"],
            throttled=row["throttled"],
            credits=row["credits_sum"] or 0,
            avg_ms=row["avg_ms"],
        )
        for row in rows
    ]


def push_verification_counts(*, since: datetime) -> list[Tally]:
    """How the pushes of the window ended: verified, mismatch, superseded, pending, rejected.

    A push's window is that of its CRM update call: filtering through the call uses the
    call log's (service, started_at) index and the push's call_id index, where a filter on
    the push's own created_at would scan every push ever made.
    """
    rows = (
        SyncPush.objects.filter(call__service=ZohoCall.Service.CRM, call__started_at__gte=since)
        .values("verification")
        .annotate(n=Count("id"))
        .order_by()
    )
    found = {row["verification"]: row["n"] for row in rows}
    return [
        Tally(key=value, label=label, count=found.get(value, 0))
        for value, label in SyncPush.Verification.choices
    ]


def reconciliation_runs_recent(*, limit: int = RECONCILIATION_RUNS_SHOWN) -> list[ReconciliationRun]:
    return list(ReconciliationRun.objects.order_by("-id")[:limit])


def sync_health(*, now: datetime | None = None) -> SyncHealth:
    """Everything the health page shows, for the 24 hours up to ``now``."""
    until = now or timezone.now()
    since = until - HEALTH_WINDOW
    endpoints = calls_per_endpoint(since=since, until=until)
    totals = CallStats(
        calls=sum(e.calls for e in endpoints),
        errors=sum(e.errors for e in endpoints),
        throttled=sum(e.throttled for e in endpoints),
    )
    return SyncHealth(
        since=since,
        until=until,
        totals=totals,
        hours=calls_per_hour(since=since, until=until),
        endpoints=endpoints,
        # The quota's own count (CRM credits Zoho charged for, and its header when lower).
        budget=quota.status(),
        verification=push_verification_counts(since=since),
        outbox_backlog=outbox_pending_count(),
        reconciliation_runs=reconciliation_runs_recent(),
    )
