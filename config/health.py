"""/healthz for load balancers (django-health-check): database, cache, broker, the last beat, the seal log.

Answers 200 when every check passes, 500 naming the failed ones otherwise (JSON with
`Accept: application/json` or `?format=json`). No login: it reveals no data.
"""

from __future__ import annotations

import dataclasses
import os
import time

from django.conf import settings
from django.core.cache import cache
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView

# Written by the `ops.beat_heartbeat` task, which beat schedules every minute and a worker runs.
BEAT_HEARTBEAT_KEY = "ops:beat-heartbeat"


def beat_heartbeat_record() -> None:
    cache.set(BEAT_HEARTBEAT_KEY, time.time(), timeout=None)


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker accepts a connection."""

    def run(self) -> None:
        from config.celery import app

        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=3)
        except Exception as exc:
            raise ServiceUnavailable(f"broker unreachable ({type(exc).__name__})") from exc


@dataclasses.dataclass
class LastBeat(HealthCheck):
    """Beat scheduled, and a worker ran, the heartbeat within HEALTH_BEAT_MAX_AGE_S."""

    def run(self) -> None:
        last = cache.get(BEAT_HEARTBEAT_KEY)
        if last is None:
            raise ServiceUnavailable("no beat heartbeat yet (is celery beat running, and a worker?)")
        age = time.time() - float(last)
        if age > settings.HEALTH_BEAT_MAX_AGE_S:
            raise ServiceUnavailable(f"last beat heartbeat {age:.0f} s ago")


@dataclasses.dataclass
class SealLogWritable(HealthCheck):
    """The copy of the seal hashes outside the database can be appended to."""

    def run(self) -> None:
        path = settings.LEDGER_SEAL_LOG
        target = path if path.exists() else path.parent
        if not target.exists() or not os.access(target, os.W_OK):
            raise ServiceUnavailable("the seal log is not writable")


healthz = HealthCheckView.as_view(
    checks=(
        "health_check.checks.Database",
        "health_check.checks.Cache",
        Broker,
        LastBeat,
        SealLogWritable,
    )
)
