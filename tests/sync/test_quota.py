"""The quota: one rate limit shared by every worker, a 429 that slows everyone, reconciliation that
waits for off-peak hours when the budget is tight."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.utils import timezone

from sync import quota
from sync.models import ZohoCall
from sync.quota import QuotaDeferred, QuotaGate, QuotaSettings
from sync.reconcile import reconcile
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoRateLimited
from tests.needs import missing
from tests.sync.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_REFRESH_TOKEN, make_client

REDIS_URL = os.environ.get("QUOTA_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


@pytest.fixture
def redis_caches():
    """Two independent cache clients on one Redis (db 13), as two workers on two machines have.
    Fails, not skips, on CI when Redis is absent."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        missing(f"Redis not reachable at {REDIS_URL}: {exc}")
    return RedisCache(REDIS_URL, {}), RedisCache(REDIS_URL, {})


class Clock:
    """Controlled time for the gate: sleeping moves it, nothing really waits."""

    def __init__(self, start: float) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gates(redis_caches, clock: Clock, **config):
    scope = f"quota-test-{uuid.uuid4().hex[:8]}"
    settings = QuotaSettings(**{"rate_per_s": 4, "cooldown_s": 2.0, **config})
    return [
        QuotaGate(cache=cache, scope=scope, config=settings, clock=clock, sleep=clock.sleep)
        for cache in redis_caches
    ]


def test_two_workers_share_one_rate_limit(redis_caches):
    clock = Clock(1_000_000.25)
    first, second = gates(redis_caches, clock)

    with quota.urgency(quota.WITHDRAWAL):
        first.before_call("crm.update")
        first.before_call("crm.update")
        second.before_call("crm.update")
        second.before_call("crm.update")
        assert clock.slept == [], "four calls fit in the second"
        second.before_call("crm.update")  # the fifth waits for the next second, whoever makes it

    assert clock.slept == [pytest.approx(0.75)]
    assert first.calls_this_second() == 1


def test_two_processes_on_the_file_cache_share_one_rate_limit(tmp_path):
    """The embedded demo: processes of one machine share the file cache, whose counters a file lock guards."""
    clock = Clock(1_500_000.5)
    directory = str(tmp_path / "cache")
    first, second = gates((FileBasedCache(directory, {}), FileBasedCache(directory, {})), clock)

    for gate in (first, second, first, second):
        gate.before_call("crm.update", level=quota.WITHDRAWAL)
    assert clock.slept == []
    second.before_call("crm.update", level=quota.WITHDRAWAL)

    assert clock.slept == [pytest.approx(0.5)]
    assert first.calls_this_second() == 1


def test_lower_urgency_leaves_room_for_withdrawals(db, redis_caches):
    clock = Clock(2_000_000.0)
    first, second = gates(redis_caches, clock, rate_per_s=10, share_reconcile=0.5)

    with quota.urgency(quota.RECONCILE):
        for _ in range(5):
            first.before_call("crm.coql")
    assert clock.slept == []
    for _ in range(5):
        second.before_call("crm.update", level=quota.WITHDRAWAL)
    assert clock.slept == [], "withdrawals still had room in that second"

    first.before_call("crm.coql", level=quota.RECONCILE)
    assert len(clock.slept) == 1, "reconciliation may fill only half of a second"


def test_a_429_seen_by_one_worker_slows_every_worker(redis_caches):
    clock = Clock(3_000_000.0)
    first, second = gates(redis_caches, clock)

    first.after_call(429, None)

    assert second.cooldown_remaining(level=quota.WITHDRAWAL) == pytest.approx(2.0)
    second.before_call("crm.update", level=quota.WITHDRAWAL)
    assert clock.slept and clock.slept[0] == pytest.approx(2.0)

    # Another 429 soon after doubles the cool-down for everybody.
    second.after_call(429, None)
    assert first.cooldown_remaining(level=quota.WITHDRAWAL) == pytest.approx(4.0)


def test_a_429_from_zoho_through_the_client_cools_down_the_other_workers(sim, db, redis_caches):
    clock = Clock(timezone.now().timestamp())
    scope = f"quota-test-{uuid.uuid4().hex[:8]}"
    config = QuotaSettings(rate_per_s=100, cooldown_s=3.0)
    worker_a = QuotaGate(cache=redis_caches[0], scope=scope, config=config, clock=clock, sleep=clock.sleep)
    worker_b = QuotaGate(cache=redis_caches[1], scope=scope, config=config, clock=clock, sleep=clock.sleep)
    quota.gate_install(scope, worker_a)
    client = make_client(sim, cache_prefix=scope)
    sim.fault("rate_limit", ratio=1, ops=["crm.*"])

    with pytest.raises(ZohoRateLimited):
        client.crm.get_many(["5725767000000000999"], ["Email"])
    client.close()

    assert worker_b.cooldown_remaining(level=quota.WITHDRAWAL) == pytest.approx(3.0)


def test_a_long_wait_raises_so_the_task_retries_instead_of_blocking(redis_caches):
    clock = Clock(4_000_000.0)
    first, second = gates(redis_caches, clock, cooldown_s=60.0, cooldown_max_s=60.0, max_wait_s=10.0)
    first.after_call(429, None)

    with pytest.raises(ZohoRateLimited):
        second.before_call("crm.update", level=quota.WITHDRAWAL)


def test_the_budget_counts_24_hours_of_calls_and_zohos_header(db, redis_caches):
    gate = QuotaGate(
        cache=redis_caches[0], scope=f"q-{uuid.uuid4().hex[:8]}", config=QuotaSettings(daily_credits=1000)
    )
    now = timezone.now()
    ZohoCall.objects.bulk_create(
        [
            ZohoCall(
                service="crm",
                operation="crm.coql",
                method="POST",
                path="/",
                started_at=now - timedelta(hours=1),
                credits=3,
                http_status=200,
            ),
            ZohoCall(
                service="crm",
                operation="crm.update",
                method="PUT",
                path="/",
                started_at=now - timedelta(hours=2),
                credits=1,
                http_status=200,
            ),
            ZohoCall(
                service="crm",
                operation="crm.update",
                method="PUT",
                path="/",
                started_at=now - timedelta(hours=3),
                credits=1,
                http_status=429,
            ),
            ZohoCall(
                service="crm",
                operation="crm.update",
                method="PUT",
                path="/",
                started_at=now - timedelta(hours=25),
                credits=50,
                http_status=200,
            ),
        ]
    )
    assert gate.budget(fresh=True).used == 4
    assert gate.budget(fresh=True).remaining == 996

    gate.after_call(200, 150)  # Zoho says less is left (other apps of the org spend too)
    budget = gate.budget(fresh=True)
    assert (budget.remaining, budget.tight) == (150, True)


def spend(credits: int) -> None:
    """A CRM call of this many credits, just now."""
    ZohoCall.objects.create(
        service="crm",
        operation="crm.update",
        method="PUT",
        path="/",
        started_at=timezone.now(),
        credits=credits,
        http_status=200,
    )


def _sim_settings(settings, sim) -> None:
    settings.ZOHO_CLIENT_ID = SIM_CLIENT_ID
    settings.ZOHO_CLIENT_SECRET = SIM_CLIENT_SECRET
    settings.ZOHO_REFRESH_TOKEN = SIM_REFRESH_TOKEN
    settings.ZOHO_ACCOUNTS_URL = sim.url
    settings.ZOHO_CAMPAIGNS_URL = sim.url
    settings.ZOHO_API_DOMAIN = ""


@pytest.mark.django_db
def test_the_client_from_settings_asks_the_quota_gate_before_each_crm_call(sim, settings):
    _sim_settings(settings, sim)
    settings.ZOHO_DAILY_CREDITS = 1000
    settings.ZOHO_OFF_PEAK_HOURS = "0-6"
    quota.gates_reset()
    with time_machine.travel(datetime(2026, 3, 4, 14, 0, tzinfo=UTC), tick=True):
        spend(900)
        client = ZohoClient.from_settings(cache=LocMemCache(f"quota-{uuid.uuid4().hex}", {}))

        def crm_calls() -> list[str]:
            return [c["op"] for c in sim.calls() if str(c["op"]).startswith("crm.")]

        assert client.transport.gate is quota.gate(client.config.cache_prefix)
        with quota.urgency(quota.RECONCILE), pytest.raises(QuotaDeferred):
            client.crm.get_many(["5725767000000000999"], ["Email"])
        assert crm_calls() == [], "the gate held the call back"

        settings.ZOHO_QUOTA_GATE = ""
        ungated = ZohoClient.from_settings(cache=LocMemCache(f"quota-{uuid.uuid4().hex}", {}))
        assert ungated.transport.gate is None
        with quota.urgency(quota.RECONCILE):
            ungated.crm.get_many(["5725767000000000999"], ["Email"])
        assert len(crm_calls()) == 1
    client.close()
    ungated.close()
    quota.gates_reset()


@pytest.mark.django_db
def test_reconciliation_waits_for_off_peak_when_the_budget_is_below_the_reserve(sim, settings):
    settings.ZOHO_DAILY_CREDITS = 1000
    settings.ZOHO_CREDITS_RESERVE_FRACTION = 0.2
    settings.ZOHO_OFF_PEAK_HOURS = "0-6"
    quota.gates_reset()
    zoho = make_client(sim)  # handed a gate that reads the settings above
    afternoon = datetime(2026, 3, 4, 14, 0, tzinfo=UTC)
    with time_machine.travel(afternoon, tick=True):
        spend(900)
        with pytest.raises(QuotaDeferred) as deferred:
            reconcile(client=zoho, method="coql")
        assert deferred.value.retry_at == datetime(2026, 3, 5, 0, 0, tzinfo=UTC)
        assert not sim.calls("crm.coql"), "no credit was spent"

        # Withdrawals are not held back by the budget.
        with quota.urgency(quota.WITHDRAWAL):
            zoho.crm.get_many(["5725767000000000999"], ["Email"])

    with time_machine.travel(datetime(2026, 3, 5, 2, 0, tzinfo=UTC), tick=True):
        quota.gates_reset()
        run = reconcile(client=zoho, method="coql")
        assert run.error == "" and sim.calls("crm.coql")
    zoho.close()
    quota.gates_reset()
