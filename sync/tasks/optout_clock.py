"""Task: the opt-out clock's beat run (see sync/optout_clock.py).

Start the clocks of new withdrawals, settle the open ones against the evidence, raise the
alert of each withdrawal whose alert time (two business days before its deadline) has come, and
keep the page's time-to-effect figures.
It calls no Zoho API and every step is idempotent, so it needs neither retries nor `ZohoTask`.
"""

from __future__ import annotations

from datetime import datetime

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from sync.alerts import alert_opt_out_deadline
from sync.optout_clock import (
    clock_missing,
    time_to_effect_store,
    withdrawal_clocks_alert_due,
    withdrawal_clocks_open,
    withdrawal_clocks_settle,
)

# Alerts raised per run at most, and events read per run at most (SCAN_IDS each step): a backlog
# (the first run's backfill of 90 days) is worked off over the next runs.
ALERTS_PER_RUN = 500
OPEN_STEPS_PER_RUN = 50


def optout_clock_run(*, now: datetime | None = None) -> dict[str, int]:
    """One cycle; returns what it did. `manage.py`-free: tests and the task call the same thing."""
    now = now or timezone.now()
    started = withdrawal_clocks_open(now=now, max_steps=OPEN_STEPS_PER_RUN)
    effective = withdrawal_clocks_settle(now=now)
    alerted = 0
    for clock in withdrawal_clocks_alert_due(now=now)[:ALERTS_PER_RUN]:
        with transaction.atomic():
            if alert_opt_out_deadline(clock=clock, missing=", ".join(clock_missing(clock)), now=now):
                alerted += 1
    time_to_effect_store(now=now)  # the page's median and p95, as of this run
    return {"started": started, "effective": effective, "alerted": alerted}


@shared_task(name="sync.optout_clock")
def optout_clock() -> dict[str, int]:
    return optout_clock_run()
