"""The call log's tallies per UTC day (sync/tallies.py), summed from the stored hours."""

from __future__ import annotations

from django.db import models


class CallDay(models.Model):
    """`CallHour`'s figures summed over one whole UTC day, per service and operation.

    Written by `sync.tallies.callday_tally` (beat, after the hours) once all 24 hours of the day
    are stored, with an empty row (no service, no operation) so that a day without calls is
    stored too. The pages that show days (the trends' year, the health page's 7 and 30 days, the
    overview's 30-day error rate) read one row per day and operation instead of 24; a day not
    stored is summed from its hours. Derived from `CallHour`, so it can be deleted at any time.
    """

    day = models.DateField()
    service = models.CharField(max_length=16)
    operation = models.CharField(max_length=64)
    calls = models.PositiveIntegerField()
    errors = models.PositiveIntegerField()
    throttled = models.PositiveIntegerField()
    credits = models.PositiveIntegerField()
    ms_sum = models.BigIntegerField()
    timed = models.PositiveIntegerField()

    class Meta:
        constraints = [
            # Also the pages' index: every read is a range of days.
            models.UniqueConstraint(fields=["day", "service", "operation"], name="sync_callday_one_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.operation}: {self.calls} calls"
