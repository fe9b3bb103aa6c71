"""The Celery app. Workers: `celery -A config worker`; the schedule: `celery -A config beat`."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("consentdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="ops.beat_heartbeat", ignore_result=True)
def beat_heartbeat() -> None:
    """Beat schedules this every minute: /healthz's "last beat" reads when a worker last ran it."""
    from config.health import beat_heartbeat_record

    beat_heartbeat_record()
