"""`python manage.py optout_clock_now`: one run of the opt-out clock, synchronously.

What beat runs every minute (task ``sync.optout_clock``): start the clocks of new withdrawals (the
first run backfills the last 90 days, reading the evidence already there), settle the open ones,
and raise the deadline alerts that are due.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from sync.tasks.optout_clock import optout_clock_run


class Command(BaseCommand):
    help = "Start the clocks of new withdrawals, settle the open ones and raise due deadline alerts."

    def handle(self, *args: Any, **options: Any) -> None:
        report = optout_clock_run()
        self.stdout.write(
            f"{report['started']} clock(s) started, {report['effective']} withdrawal(s) in effect, "
            f"{report['alerted']} alert(s) raised."
        )
