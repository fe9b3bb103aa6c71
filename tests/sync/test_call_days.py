"""The call log's tallies per day (`CallDay`, sync/tallies.py `callday_tally`): summed from the
stored hours, read by the pages that show days (the trends' year, the health page's 7 and 30
days), with the same figures as summing the hours, in the same number of queries."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sync.models import CallDay, CallHour, ZohoCall
from sync.selectors import calls_per_day_in_window
from sync.tallies import callday_tally, callhour_tally

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
FIGURES = ("calls", "errors", "throttled", "credits_sum", "ms_sum", "timed")


def call(at: datetime, *, operation: str = "crm.update", status: int = 200) -> None:
    ZohoCall.objects.create(
        service=ZohoCall.Service.CRM,
        operation=operation,
        method="PUT",
        path="/crm/v8/Contacts",
        started_at=at,
        finished_at=at + timedelta(milliseconds=150),
        duration_ms=150,
        http_status=status,
        credits=1 if status == 200 else 0,
        outcome=ZohoCall.Outcome.OK if status == 200 else ZohoCall.Outcome.ERROR,
    )


@pytest.fixture
def fifty_days() -> None:
    """Calls over the 50 days before NOW (two operations, some errors), the hours stored by
    beat as it ran every day (each run stores the last 31 days' missing hours)."""
    for day in range(50, -1, -1):
        for hour in (1, 9, 17):
            at = NOW - timedelta(days=day, hours=hour, minutes=7)
            call(at)
            call(at + timedelta(minutes=3), operation="crm.get", status=500 if day % 4 == 0 else 200)
        callhour_tally(now=NOW - timedelta(days=day))
    callhour_tally(now=NOW)


def per_day(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        sums = out.setdefault((row["hour"], row["service"], row["operation"]), [0] * len(FIGURES))
        for i, name in enumerate(FIGURES):
            sums[i] += row[name] or 0
    return out


@pytest.mark.parametrize("days", [2, 7, 30, 45])
def test_stored_days_give_the_figures_of_the_hours_in_as_many_queries(fifty_days: None, days: int) -> None:
    since = NOW - timedelta(days=days, minutes=20)
    from_hours = per_day(calls_per_day_in_window(since=since, until=NOW))

    stored = callday_tally(now=NOW)
    with CaptureQueriesContext(connection) as queries:
        from_days = per_day(calls_per_day_in_window(since=since, until=NOW))

    # every day before today that has stored hours (beat's first run stored 31 empty days too)
    first = CallHour.objects.order_by("hour").values_list("hour", flat=True)[0]
    assert stored == (NOW.date() - first.date()).days == 81
    assert from_days == from_hours
    assert sum(v[0] for v in from_days.values()) == sum(
        1 for c in ZohoCall.objects.filter(started_at__gte=since, started_at__lte=NOW)
    )
    # The stored days read once, then remembered while CallDay holds the same rows (tally_memo).
    assert len(queries.captured_queries) <= 6
    with CaptureQueriesContext(connection) as again:
        assert per_day(calls_per_day_in_window(since=since, until=NOW)) == from_days
    assert len(again.captured_queries) <= 5
    assert not any('"sync_callday"."service"' in q["sql"] for q in again.captured_queries)
    assert callday_tally(now=NOW) == 0  # stored once


def test_a_day_is_stored_once_its_24_hours_are_and_the_days_in_order(fifty_days: None) -> None:
    callday_tally(now=NOW)
    newest = CallDay.objects.order_by("-day").values_list("day", flat=True).first()
    assert newest == date(2026, 5, 31)  # yesterday; today is not over
    day = CallDay.objects.filter(day=date(2026, 5, 20)).exclude(service="")
    hours = CallHour.objects.filter(
        hour__gte=datetime(2026, 5, 20, tzinfo=UTC), hour__lt=datetime(2026, 5, 21, tzinfo=UTC)
    )
    assert {(d.operation, d.calls, d.errors) for d in day} == {
        (
            op,
            sum(h.calls for h in hours if h.operation == op),
            sum(h.errors for h in hours if h.operation == op),
        )
        for op in ("crm.update", "crm.get")
    }

    # An hour of a day within beat's window missing (beat has not stored it yet): that day waits,
    # and so does every later one, so the stored days keep no gap.
    CallDay.objects.filter(day__gte=date(2026, 5, 25)).delete()
    CallHour.objects.filter(hour=datetime(2026, 5, 27, 5, tzinfo=UTC)).delete()
    assert callday_tally(now=NOW) == 2  # the 25th and 26th
    assert not CallDay.objects.filter(day__gte=date(2026, 5, 27)).exists()
    since = NOW - timedelta(days=10)
    waiting = per_day(calls_per_day_in_window(since=since, until=NOW))
    callhour_tally(now=NOW)  # beat stores the missing hour
    assert callday_tally(now=NOW) == 5  # the 27th to the 31st
    assert per_day(calls_per_day_in_window(since=since, until=NOW)) == waiting


def test_beat_stores_the_days_after_the_hours() -> None:
    from config.celery import app as celery_app
    from sync.tasks.tallies import callhour_tally as task

    for day in range(3, 0, -1):
        call(NOW - timedelta(days=day, hours=2))
    CallHour.objects.all().delete()
    with time_machine.travel(NOW, tick=False):
        task.apply()
    assert CallDay.objects.exclude(service="").count() == 3
    assert "sync.callhour_tally" in celery_app.tasks


def test_the_remembered_days_follow_the_stored_ones(fifty_days: None) -> None:
    """A process keeps the stored days it read (compliance/tally_memo.py) only while CallDay holds
    the same rows: days deleted (CallDay is derived) with their hours are gone from the figures."""
    callday_tally(now=NOW)
    since = NOW - timedelta(days=10)
    day = datetime(2026, 5, 25, tzinfo=UTC)
    before = per_day(calls_per_day_in_window(since=since, until=NOW))
    assert before[day, "crm", "crm.get"][0] == 3

    CallDay.objects.filter(day=day.date()).delete()
    CallHour.objects.filter(hour__gte=day, hour__lt=day + timedelta(days=1)).delete()
    after = per_day(calls_per_day_in_window(since=since, until=NOW))
    assert (day, "crm", "crm.get") not in after
    assert {k: v for k, v in before.items() if k[0] != day} == after
