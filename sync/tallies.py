"""Tallies the pages read instead of counting again: written here, by beat, never by a page.

`callhour_tally()` (task ``sync.callhour_tally``, every 5 minutes) stores the call log's tallies
of each whole hour of the last 31 days (the health page's 30 days and the overview's 30 days
before today, `TALLY_WINDOW`) once
the hour is over and final (``CLOSED_AFTER`` past
its end: no call started in it can still be finishing), one `CallHour` row per service and
operation, and one empty row for an hour without calls so that it is not counted again. The
health page then reads 23 stored hours instead of counting a day of calls (and sums a month of
them in the database for its 30 days, the trends page a year); an hour beat has not stored yet
is counted by the page from the call log, with the same figures. Stored hours are kept: they are
the trends' history once the call log of those days is gone.

`callday_tally()` (the same task, after the hours) sums each whole UTC day whose 24 hours are
stored into `CallDay`: the trends' year is then 365 rows per operation, not 8,760.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from django.db.models import Count, Max, Min, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from sync.models import CallDay, CallHour, ZohoCall
from sync.selectors import HOUR, TALLY_WINDOW, call_tallies, final_hours

HOURS_PER_DAY = 24


def callhour_tally(*, now: datetime | None = None) -> int:
    """Store the tallies of the last 31 days' final hours that are not stored yet; how many hours.

    The first run (or one after beat stood still) counts every missing hour at once: one pass
    over the call log's index from the first missing hour to the last.
    """
    until = now or timezone.now()
    start, end = final_hours(since=until - TALLY_WINDOW, until=until)
    have = set(CallHour.objects.filter(hour__gte=start, hour__lt=end).values_list("hour", flat=True))
    missing: set[datetime] = set()
    hour = start
    while hour < end:
        if hour not in have:
            missing.add(hour)
        hour += HOUR
    if not missing:
        return 0
    counted = [
        row
        for row in call_tallies(
            ZohoCall.objects.filter(started_at__gte=min(missing), started_at__lt=max(missing) + HOUR)
        )
        if row["hour"] in missing
    ]
    empty = missing - {row["hour"] for row in counted}
    CallHour.objects.bulk_create(
        [
            CallHour(
                hour=row["hour"],
                service=row["service"],
                operation=row["operation"],
                calls=row["calls"],
                errors=row["errors"],
                throttled=row["throttled"],
                credits=row["credits_sum"] or 0,
                ms_sum=row["ms_sum"] or 0,
                timed=row["timed"],
            )
            for row in counted
        ]
        + [
            CallHour(
                hour=h, service="", operation="", calls=0, errors=0, throttled=0, credits=0, ms_sum=0, timed=0
            )
            for h in sorted(empty)
        ],
        # Two runs at once (a late beat and a manual one) store the same figures: keep the first.
        ignore_conflicts=True,
    )
    return len(missing)


def callday_tally(*, now: datetime | None = None) -> int:
    """Store the sums of each whole UTC day, before today, whose 24 hours are all stored and
    that is not stored yet, from the day after the newest one stored (the first run: from the
    first stored hour); how many days. A day partly or wholly before `TALLY_WINDOW` is stored with
    the hours it has of before the window (beat stood still then: the others never come). Days
    are stored in order, and a day that waits for an hour stops the run: between two stored days
    there is no day with stored hours that is not stored itself (the pages rely on it)."""
    until = now or timezone.now()
    today = until.astimezone(UTC).date()
    newest = CallDay.objects.aggregate(newest=Max("day"))["newest"]
    if newest is not None:
        start: date = newest + timedelta(days=1)
    else:
        first = CallHour.objects.aggregate(first=Min("hour"))["first"]
        if first is None:
            return 0
        start = first.astimezone(UTC).date()
    if start >= today:
        return 0
    hours = CallHour.objects.filter(
        hour__gte=datetime(start.year, start.month, start.day, tzinfo=UTC),
        hour__lt=datetime(today.year, today.month, today.day, tzinfo=UTC),
    ).annotate(day=TruncDate("hour", tzinfo=UTC))
    # The hours of a day beat still stores (those of its window): a day is whole when it has all
    # of them (none for a day before the window: beat stood still then, its other hours never come).
    window_first, _ = final_hours(since=until - TALLY_WINDOW, until=until)
    whole: list[date] = []
    for row in hours.values("day").annotate(n=Count("hour", distinct=True)).order_by("day"):
        midnight = datetime(row["day"].year, row["day"].month, row["day"].day, tzinfo=UTC)
        gone = min(HOURS_PER_DAY, max(0, int((window_first - midnight) / HOUR)))
        if row["n"] < HOURS_PER_DAY - gone:
            break  # in order: no day is stored before one that waits for an hour
        whole.append(row["day"])
    if not whole:
        return 0
    sums = (
        hours.filter(day__in=whole)
        .values("day", "service", "operation")
        .annotate(
            calls_n=Sum("calls"),
            errors_n=Sum("errors"),
            throttled_n=Sum("throttled"),
            credits_n=Sum("credits"),
            ms_n=Sum("ms_sum"),
            timed_n=Sum("timed"),
        )
        .order_by()
    )
    rows = [
        CallDay(
            day=row["day"],
            service=row["service"],
            operation=row["operation"],
            calls=row["calls_n"],
            errors=row["errors_n"],
            throttled=row["throttled_n"],
            credits=row["credits_n"],
            ms_sum=row["ms_n"],
            timed=row["timed_n"],
        )
        for row in sums
        if row["service"] or row["operation"]
    ]
    # The empty row: the day is stored, whatever its calls (a day without any has only this).
    rows += [
        CallDay(day=d, service="", operation="", calls=0, errors=0, throttled=0, credits=0, ms_sum=0, timed=0)
        for d in whole
    ]
    # Two runs at once store the same sums: keep the first.
    CallDay.objects.bulk_create(rows, ignore_conflicts=True)
    return len(whole)
