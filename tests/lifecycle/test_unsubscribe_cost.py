"""What a one-click unsubscribe costs: a repeat answers 2xx from one query, the rate limit is one
Redis round trip and still limits, and the fast path refuses what the full path refuses."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.lifecycle.tokens import links_revoke
from compliance.models import ConsentEvent
from tests.lifecycle.conftest import events_of, record
from tests.sync.conftest import REDIS_URL

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def ana_in(pending: ConsentEvent) -> Any:
    contact = pending.contact
    record(
        contact,
        "email_marketing",
        "opted_in",
        evidence={"double_opt_in_confirmed_at": "2026-03-02T10:00:00Z"},
    )
    return contact


def test_a_repeated_one_click_answers_from_one_query(
    public: Client, ana_in: Any, unsubscribe_path: Callable[..., str], django_assert_num_queries: Any
) -> None:
    path = unsubscribe_path(ana_in)  # an "all email purposes" link
    first = public.post(path, ONE_CLICK, content_type=FORM)
    assert first.content == b"Unsubscribed.\n"
    count = ConsentEvent.objects.count()

    with django_assert_num_queries(1):
        again = public.post(path, ONE_CLICK, content_type=FORM)

    assert again.status_code == 200 and again.content == b"Already unsubscribed.\n"
    assert ConsentEvent.objects.count() == count


@pytest.mark.postgres
def test_a_first_one_click_reads_twice_and_writes_in_two_statements(
    public: Client, ana_in: Any, unsubscribe_path: Callable[..., str]
) -> None:
    path = unsubscribe_path(ana_in)  # an "all email purposes" link
    count = ConsentEvent.objects.count()

    with CaptureQueriesContext(connection) as queries:
        response = public.post(path, ONE_CLICK, content_type=FORM)

    assert response.content == b"Unsubscribed.\n"
    statements = [
        q["sql"] for q in queries.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    # The link's chains with their states, the contact; the chain's lock, then the event with
    # its personal values, outbox row and state in one statement.
    assert len(statements) == 4, statements
    assert ConsentEvent.objects.count() == count + 1
    assert [e.status for e in events_of(ana_in)][-1] == "opted_out"


def test_a_repeat_after_a_new_opt_in_unsubscribes_again(
    public: Client, ana_in: Any, unsubscribe_path: Callable[..., str]
) -> None:
    path = unsubscribe_path(ana_in, purpose="email_marketing")
    public.post(path, ONE_CLICK, content_type=FORM)
    record(
        ana_in,
        "email_marketing",
        "opted_in",
        occurred_at=timezone.now(),
        evidence={"double_opt_in_confirmed_at": "2026-03-03T10:00:00Z"},
    )

    response = public.post(path, ONE_CLICK, content_type=FORM)

    assert response.content == b"Unsubscribed.\n"
    assert [e.status for e in events_of(ana_in)][-3:] == ["opted_out", "opted_in", "opted_out"]


def test_a_revoked_link_is_refused_even_when_the_person_is_unsubscribed(
    public: Client, ana_in: Any, unsubscribe_path: Callable[..., str]
) -> None:
    path = unsubscribe_path(ana_in)
    public.post(path, ONE_CLICK, content_type=FORM)
    links_revoke(contact=ana_in)

    response = public.post(path, ONE_CLICK, content_type=FORM)

    assert response.status_code == 404 and b"revoked" in response.content


def test_a_tampered_link_is_a_400_before_any_query(
    public: Client, ana_in: Any, unsubscribe_path: Callable[..., str], django_assert_num_queries: Any
) -> None:
    path = unsubscribe_path(ana_in)
    with django_assert_num_queries(0):
        response = public.post(path[:-3] + "xyz", ONE_CLICK, content_type=FORM)
    assert response.status_code == 400


def test_the_rate_limit_on_redis_counts_in_one_round_trip_and_limits(
    public: Client, ana_in: Any, unsubscribe_path: Callable[..., str], settings: Any, monkeypatch: Any
) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        pytest.fail(f"Redis not reachable at {REDIS_URL}: {exc}")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": f"ratelimit-{uuid.uuid4().hex}",
        }
    }
    settings.LINK_RATE_LIMIT_PER_MIN = 3
    path = unsubscribe_path(ana_in)
    calls = []
    original = redis.Redis.pipeline

    def counting_pipeline(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "pipeline", counting_pipeline)  # an observer: the real one runs
    statuses = [
        public.post(path, ONE_CLICK, content_type=FORM, REMOTE_ADDR="198.51.100.7").status_code
        for _ in range(4)
    ]
    other = public.post(path, ONE_CLICK, content_type=FORM, REMOTE_ADDR="198.51.100.8").status_code

    assert statuses == [200, 200, 200, 429] and other == 200
    assert len(calls) == 5  # one pipelined round trip per request
