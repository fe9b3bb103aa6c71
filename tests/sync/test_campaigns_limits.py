"""Campaigns' per-method limits kept by the client (sync/zoho/campaigns_limits.py), against
zohosim's own 500-calls-a-window lock over real HTTP, and shared by clients through Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from sync.zoho import ZohoClient, ZohoRateLimited
from sync.zoho.campaigns_limits import LIMITS, CampaignsLimits, Window, campaigns_method
from tests.sync.conftest import Sim, make_client

LIST = "3zlistlimits01"


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _limits(
    client: ZohoClient,
    cache: Any,
    *,
    calls: int,
    clock: Clock | None = None,
    prefix: str | None = None,
    **kwargs: Any,
) -> CampaignsLimits:
    """The client's limits, with getlistsubscribers and listunsubscribe allowed `calls` in 300 s."""
    window = (Window(calls, 300, 15),)
    limits = CampaignsLimits(
        cache,
        prefix or client.config.cache_prefix,
        limits={"getlistsubscribers": window, "listunsubscribe": window},
        clock=clock or Clock(),
        **kwargs,
    )
    client.transport.campaigns_limits = limits
    return limits


def _seed(sim: Sim, count: int) -> None:
    sim.seed(
        lists=[
            {
                "listkey": LIST,
                "name": "Newsletter",
                "subscribers": [{"email": f"u{i}@example.com", "status": "unsub"} for i in range(count)],
            }
        ]
    )


def _page(client: ZohoClient) -> list[dict[str, Any]]:
    return list(client.campaigns.list_subscribers(LIST, "unsub", page_size=100))


def test_the_documented_limits_are_kept() -> None:
    # zoho-api.md section 4: 500 calls in 5 minutes for these, and listsubscribe's three windows.
    for method in ("getlistsubscribers", "listunsubscribe", "contactdonotmail", "listsubscriberscount"):
        assert [(w.calls, w.seconds) for w in LIMITS[method]] == [(500, 300)]
    assert [(w.calls, w.seconds) for w in LIMITS["listsubscribe"]] == [
        (500, 60),
        (12_500, 3600),
        (75_000, 86_400),
    ]
    assert campaigns_method("/api/v1.1/json/listunsubscribe") == "listunsubscribe"
    assert campaigns_method("/api/v1.1/getlistsubscribers") == "getlistsubscribers"


def test_calls_stop_short_of_zohos_lock_and_nothing_over_is_sent(zoho: ZohoClient, sim: Sim) -> None:
    # Zoho (the sim) locks the method for 30 minutes at its 11th call in the window.
    sim.config(campaigns_method_limit=10, campaigns_method_window_s=300)
    _seed(sim, 3)
    _limits(zoho, LocMemCache(f"t-{uuid.uuid4().hex}", {}), calls=10)

    for _ in range(9):  # 90 % of 10
        assert len(_page(zoho)) == 3
    with pytest.raises(ZohoRateLimited) as caught:
        _page(zoho)

    assert caught.value.code == "campaigns_limit"
    assert "not sent" in str(caught.value)
    assert len(sim.calls("campaigns.getlistsubscribers")) == 9
    # Zoho never locked the method: another app of the org still gets its answer.
    other = make_client(sim)
    assert len(_page(other)) == 3
    other.close()


def test_the_window_moves_on(zoho: ZohoClient, sim: Sim) -> None:
    _seed(sim, 1)
    clock = Clock()
    limits = _limits(zoho, LocMemCache(f"t-{uuid.uuid4().hex}", {}), calls=4, clock=clock)
    for _ in range(3):
        _page(zoho)
        clock.now += 20
    with pytest.raises(ZohoRateLimited):
        _page(zoho)

    # Counted in 15 s buckets overlapping the window: the first call leaves it within
    # 300 + 15 s of being made, never sooner.
    clock.now += 300 - 60
    with pytest.raises(ZohoRateLimited):
        _page(zoho)
    clock.now += 15
    _page(zoho)
    assert len(sim.calls("campaigns.getlistsubscribers")) == 4
    assert limits.count("getlistsubscribers", Window(4, 300, 15)) == 3


def test_clients_sharing_redis_share_the_count(sim: Sim, redis_url: str, db: None) -> None:
    # Two workers (two clients, one Redis): together they stay within the limit.
    _seed(sim, 1)
    cache = RedisCache(redis_url, {})
    first, second = make_client(sim), make_client(sim)
    prefix = first.config.cache_prefix
    clock = Clock()
    for client in (first, second):
        client.transport.campaigns_limits = CampaignsLimits(
            cache, prefix, limits={"getlistsubscribers": (Window(10, 300, 15),)}, clock=clock
        )
    for _ in range(4):
        _page(first)
        _page(second)
    _page(first)
    with pytest.raises(ZohoRateLimited):
        _page(second)
    with pytest.raises(ZohoRateLimited):
        _page(first)
    assert len(sim.calls("campaigns.getlistsubscribers")) == 9
    first.close()
    second.close()


def test_a_method_zoho_refuses_is_paused_for_every_worker_and_escalates(zoho: ZohoClient, sim: Sim) -> None:
    # Another app of the org used the method up: Zoho refuses at once, ours had room.
    _seed(sim, 1)
    sim.fault("campaigns_lock", method="getlistsubscribers")
    cache = LocMemCache(f"t-{uuid.uuid4().hex}", {})
    clock = Clock()
    limits = _limits(zoho, cache, calls=500, clock=clock)
    with pytest.raises(ZohoRateLimited) as caught:
        _page(zoho)
    assert caught.value.code != "campaigns_paused"  # Zoho's own answer
    assert limits.paused_for("getlistsubscribers") == 15

    # Another worker on the same cache sends nothing meanwhile; other methods are not paused.
    other = make_client(sim)
    _limits(other, cache, calls=500, clock=clock, prefix=zoho.config.cache_prefix)
    with pytest.raises(ZohoRateLimited) as paused:
        _page(other)
    assert paused.value.code == "campaigns_paused"
    assert len(sim.calls("campaigns.getlistsubscribers")) == 1
    assert limits.paused_for("listunsubscribe") == 0

    # After the pause Zoho is asked again; refused again, the pause doubles.
    clock.now += 16
    with pytest.raises(ZohoRateLimited):
        _page(other)
    assert len(sim.calls("campaigns.getlistsubscribers")) == 2
    assert limits.paused_for("getlistsubscribers") == 30

    # Zoho's lock ends: the calls go, and the escalation ends.
    sim.http.post("/_sim/clock", json={"advance_s": 1801})
    clock.now += 31
    assert len(_page(zoho)) == 1
    sim.fault("campaigns_lock", method="getlistsubscribers")
    with pytest.raises(ZohoRateLimited):
        _page(zoho)
    assert limits.paused_for("getlistsubscribers") == 15
    other.close()


def test_the_pause_stops_at_the_documented_lock() -> None:
    clock = Clock()
    limits = CampaignsLimits(LocMemCache(f"t-{uuid.uuid4().hex}", {}), "p", clock=clock)
    lengths = [limits.pause("listunsubscribe") for _ in range(9)]
    # A refusal may be one 429 of a busy moment: asked again soon, then less and less often.
    assert lengths == [15, 30, 60, 120, 240, 480, 960, 1800, 1800]


def test_listsubscribe_keeps_each_of_its_windows() -> None:
    clock = Clock()
    limits = CampaignsLimits(
        LocMemCache(f"t-{uuid.uuid4().hex}", {}),
        "p",
        limits={"listsubscribe": (Window(10, 60, 5), Window(20, 3600, 120))},
        clock=clock,
    )
    for _ in range(2):  # 9 a minute (90 % of 10), the minute's window moving on between
        for _ in range(9):
            limits.before_call("listsubscribe")
        # Counted in 5 s buckets: the calls leave the minute's window 60 to 65 s after them.
        with pytest.raises(ZohoRateLimited, match=r"9 calls in the last 60 s.*room again in 65 s"):
            limits.before_call("listsubscribe")
        clock.now += 65
    # Then the hour's 18 of 20 are used (130 s in): room again when the first calls' 120 s
    # bucket leaves it.
    with pytest.raises(ZohoRateLimited, match=r"18 calls in the last 3600 s.*room again in 3590 s"):
        limits.before_call("listsubscribe")
    # A refused call took no place in any window.
    assert limits.count("listsubscribe", Window(20, 3600, 120)) == 18


def test_the_settings_reach_the_client(settings: Any) -> None:
    settings.ZOHO_CAMPAIGNS_LIMIT_SHARE = 0.5
    settings.ZOHO_CAMPAIGNS_COOLDOWN_S = 30
    settings.ZOHO_CAMPAIGNS_LOCK_S = 600
    client = ZohoClient.from_settings()
    limits = client.transport.campaigns_limits
    assert limits is not None
    assert (limits.share, limits.cooldown_s, limits.lock_s) == (0.5, 30, 600)
    assert limits.allowed(LIMITS["listunsubscribe"][0]) == 250
    client.close()
