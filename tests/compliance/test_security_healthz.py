"""/healthz: database, cache, broker, the last beat, the seal log writable; 200 only when all pass."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.utils import timezone

from config.celery import beat_heartbeat
from config.health import BEAT_HEARTBEAT_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_heartbeat_left_over() -> None:
    cache.delete(BEAT_HEARTBEAT_KEY)


def healthz(client):
    return client.get("/healthz", HTTP_ACCEPT="application/json")


def test_it_answers_200_when_every_check_passes_without_a_login(client) -> None:
    beat_heartbeat()

    response = healthz(client)

    assert response.status_code == 200, response.content
    results = response.json()
    assert len(results) == 5
    assert set(results.values()) == {"OK"}


def test_it_fails_without_a_recent_beat(client, settings) -> None:
    assert "no beat heartbeat" in str(healthz(client).json())
    beat_heartbeat()

    with time_machine.travel(timezone.now() + timedelta(seconds=settings.HEALTH_BEAT_MAX_AGE_S + 60)):
        response = healthz(client)

    assert response.status_code == 500
    assert "last beat heartbeat" in str(response.json())


def test_it_fails_when_the_seal_log_cannot_be_written(client, settings, tmp_path) -> None:
    beat_heartbeat()
    # (The tests may run as root, whom file modes do not stop: a missing mount stands in.)
    settings.LEDGER_SEAL_LOG = tmp_path / "unmounted-volume" / "seals.log"

    response = healthz(client)

    assert response.status_code == 500
    assert "seal log is not writable" in str(response.json())


def test_it_fails_when_the_broker_is_down(client, settings) -> None:
    beat_heartbeat()
    from config.celery import app

    app.conf.broker_url = "redis://127.0.0.1:1/0"
    try:
        response = healthz(client)
    finally:
        app.conf.broker_url = settings.CELERY_BROKER_URL

    assert response.status_code == 500
    assert "broker unreachable" in str(response.json())
