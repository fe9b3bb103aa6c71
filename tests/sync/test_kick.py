"""`sync.kick`: a commit queues one sweep on the real broker, at most one per window across processes."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from config.celery import URGENT_QUEUE
from sync import kick


@pytest.fixture
def broker(engine_broker_url: str, kicks_to: Any) -> Any:
    with kicks_to(engine_broker_url):
        yield redis.Redis.from_url(engine_broker_url)


def queued(broker: Any) -> list[dict[str, Any]]:
    """The sweeps queued: on the urgent queue, not behind the batches on the default one."""
    assert broker.llen("celery") == 0
    return [json.loads(m)["headers"] for m in broker.lrange(URGENT_QUEUE, 0, -1)]


def test_a_burst_of_commits_queues_one_delayed_sweep(broker: Any) -> None:
    for _ in range(500):
        kick.outbox_kick()

    messages = queued(broker)
    assert [m["task"] for m in messages] == ["sync.outbox_sweep"]
    assert messages[0]["eta"] is not None and messages[0]["expires"] is not None


def test_another_process_in_the_same_window_queues_nothing_more(broker: Any) -> None:
    kick.outbox_kick()
    kick._covered_until = 0.0  # what a second process, which has not kicked yet, starts from

    kick.outbox_kick()

    assert len(queued(broker)) == 1


def test_a_commit_after_the_sweep_another_process_queued_has_run_queues_one_more(broker: Any) -> None:
    # Given a sweep queued by another process, and a commit here within its window (nothing more queued)
    kick.outbox_kick()
    kick._covered_until = 0.0  # (this process had not kicked yet)
    time.sleep(0.6)
    kick.outbox_kick()
    assert len(queued(broker)) == 1

    # When this process commits again once that sweep's time has come, less than a window
    # after its own first commit
    time.sleep(0.6)
    kick.outbox_kick()

    # Then a second sweep is queued: the first may have claimed before this commit
    assert len(queued(broker)) == 2


def test_with_no_delay_every_commit_queues_a_sweep_at_once(broker: Any, settings: Any) -> None:
    settings.SYNC_PUSH_DELAY_S = 0
    for _ in range(3):
        kick.outbox_kick()

    messages = queued(broker)
    assert len(messages) == 3 and all(m["eta"] is None for m in messages)


def test_turned_off_it_queues_nothing(broker: Any, settings: Any) -> None:
    settings.SYNC_PUSH_ON_COMMIT = False
    kick.outbox_kick()
    assert queued(broker) == []


def test_an_unreachable_broker_loses_the_kick_not_the_write(
    settings: Any, kicks_to: Any, caplog: Any
) -> None:
    with kicks_to("redis://127.0.0.1:1/0"):
        settings.SYNC_PUSH_DELAY_S = 0  # no window: this kick surely tries the broker
        kick.outbox_kick()
    assert "periodic sweep will" in caplog.text
