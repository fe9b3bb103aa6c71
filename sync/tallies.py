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
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from sync.models import CallHour, ZohoCall
from sync.selectors import HOUR, TALLY_WINDOW, call_tallies, final_hours


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
