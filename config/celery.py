"""The Celery app. Workers: `celery -A config worker`; the schedule: `celery -A config beat`.

Two queues, which every worker consumes (no ``-Q`` needed): the default one, and
``URGENT_QUEUE`` for the outbox sweeps and the withdrawals' pushes, so that a
withdrawal never waits behind the batches of a backlog queued before it: a worker
takes the urgent queue's next message as soon as it finishes the task in hand.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

URGENT_QUEUE = "sync.urgent"

app = Celery("consentdesk")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(
    Queue(name, Exchange(name), routing_key=name) for name in (URGENT_QUEUE, "celery")
)
# (The sweep only claims: it is quick, and what it claims first is the withdrawals.)
app.conf.task_routes = {"sync.outbox_sweep": {"queue": URGENT_QUEUE}}
app.autodiscover_tasks()


@app.task(name="ops.beat_heartbeat", ignore_result=True)
def beat_heartbeat() -> None:
    """Beat schedules this every minute: /healthz's "last beat" reads when a worker last ran it."""
    from config.health import beat_heartbeat_record

    beat_heartbeat_record()
