from __future__ import annotations

import threading

import httpx
import pytest

from tests.zohosim.conftest import TOKEN_FORM
from zohosim import LiveServer
from zohosim.config import SimConfig


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(credits_limit=10, fault_seed=1)


def users(http: httpx.Client, auth: dict[str, str]) -> httpx.Response:
    return http.get("/crm/v8/users", params={"type": "CurrentUser"}, headers=auth)


def test_credits_header_appears_once_half_is_used_and_429_has_no_retry_after(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    responses = [users(http, auth) for _ in range(11)]

    assert [r.headers.get("X-API-CREDITS-REMAINING") for r in responses[:10]] == [
        None, None, None, None, "5", "4", "3", "2", "1", "0",
    ]  # fmt: skip
    last = responses[10]
    assert last.status_code == 429
    assert last.json()["code"] == "TOO_MANY_REQUESTS"
    assert last.json()["status"] == "error" and last.json()["details"] == {}
    assert "Retry-After" not in last.headers


def test_credits_roll_off_after_24_hours(sim: LiveServer, http: httpx.Client, auth: dict[str, str]) -> None:
    for _ in range(10):
        users(http, auth)
    assert users(http, auth).status_code == 429

    sim.state.clock.advance(86_401)
    # the token expired meanwhile: mint a new one
    token = http.post("/oauth/v2/token", data=TOKEN_FORM).json()["access_token"]

    assert users(http, {"Authorization": f"Zoho-oauthtoken {token}"}).status_code == 200


def test_edition_formula_and_caps() -> None:
    assert SimConfig(edition="free").daily_credits() == 5000
    assert SimConfig(edition="standard", users=1000).daily_credits() == 100_000
    assert SimConfig(edition="enterprise", users=10).daily_credits() == 60_000
    assert SimConfig(edition="ultimate", users=10).daily_credits() == 70_000
    assert SimConfig(edition="professional").concurrency() == 15


def test_concurrency_cap_answers_429_while_calls_are_in_flight(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    sim.state.config.update({"credits_limit": None, "edition": "free"})
    sim.state.set_fault("slow", delay_s=0.6, ops=["crm.users"])
    statuses: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        with httpx.Client(base_url=sim.url, timeout=10) as client:
            status = users(client, auth).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(statuses) == [200] * 5 + [429] * 3
    assert sim.state.quota.stats()["peak_in_flight"] == 5


def test_sub_concurrency_limits_heavy_calls(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    sim.state.config.update({"credits_limit": None, "sub_concurrency_limit": 2})
    sim.state.set_fault("slow", delay_s=0.6, ops=["crm.search"])
    statuses: list[int] = []

    def call() -> None:
        with httpx.Client(base_url=sim.url, timeout=10) as client:
            statuses.append(
                client.get("/crm/v8/Contacts/search", params={"email": "a@b.co"}, headers=auth).status_code
            )

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(statuses) == [204, 204, 429, 429]
