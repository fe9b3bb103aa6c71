"""Fixtures: zohosim as a live server on loopback, and a Zoho client pointed at it."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.cache.backends.locmem import LocMemCache

from sync.zoho import NullCallLog, ZohoClient, ZohoConfig
from sync.zoho.calllog import CallLog
from tests.needs import missing
from zohosim import LiveServer

REDIS_URL = os.environ.get("ZOHO_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
SIM_CLIENT_ID = "zohosim-client"
SIM_CLIENT_SECRET = "zohosim-secret"
SIM_REFRESH_TOKEN = "zohosim-refresh-token"


class Sim:
    """The running zohosim and its control API (/_sim/...)."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=10)

    @property
    def state(self) -> Any:
        return self.server.state

    def _ok(self, response: httpx.Response) -> Any:
        assert response.status_code < 400, response.text
        return response.json()

    def reset(self, **config: Any) -> None:
        self._ok(self.http.post("/_sim/reset", json={"config": config}))

    def seed(self, **data: Any) -> Any:
        return self._ok(self.http.post("/_sim/seed", json=data))

    def add_contact(self, **fields: Any) -> str:
        return str(self._ok(self.http.post("/_sim/contacts", json={"fields": fields}))["id"])

    def contact(self, record_id: str) -> dict[str, Any]:
        return dict(self._ok(self.http.get(f"/_sim/contacts/{record_id}")))

    def fault(self, name: str, **params: Any) -> Any:
        return self._ok(self.http.put("/_sim/faults", json={name: params}))

    def clear_faults(self) -> None:
        self._ok(self.http.delete("/_sim/faults"))

    def expire_tokens(self) -> None:
        self._ok(self.http.post("/_sim/tokens/expire"))

    def writes(self) -> list[dict[str, Any]]:
        return list(self._ok(self.http.get("/_sim/writes", params={"source": "all"}))["writes"])

    def calls(self, op: str | None = None) -> list[dict[str, Any]]:
        params = {"op": op} if op else {}
        return list(self._ok(self.http.get("/_sim/calls", params=params))["calls"])

    def wait_for_calls(self, op: str, count: int, timeout_s: float = 5.0) -> None:
        """Wait until the sim has finished ``count`` calls of ``op`` (a request the client
        gave up on still runs on the server; let it end before the next test resets)."""
        deadline = time.monotonic() + timeout_s
        while len(self.calls(op)) < count:
            assert time.monotonic() < deadline, f"the sim never finished {count} {op} call(s)"
            time.sleep(0.02)

    def mints(self) -> int:
        """Successful access-token mints seen by the sim."""
        return sum(1 for c in self.calls("token") if c["code"] == "SUCCESS")

    def stats(self) -> dict[str, Any]:
        return dict(self._ok(self.http.get("/_sim/stats")))

    def config(self, **values: Any) -> None:
        self._ok(self.http.put("/_sim/config", json=values))

    def post(self, path: str, **body: Any) -> Any:
        return self._ok(self.http.post(path, json=body))


@pytest.fixture(scope="session")
def sim_server() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


@pytest.fixture
def sim(sim_server: LiveServer) -> Iterator[Sim]:
    helper = Sim(sim_server)
    helper.reset()
    yield helper
    helper.http.close()


def sim_config(sim: Sim, **overrides: Any) -> ZohoConfig:
    values: dict[str, Any] = {
        "client_id": SIM_CLIENT_ID,
        "client_secret": SIM_CLIENT_SECRET,
        "refresh_token": SIM_REFRESH_TOKEN,
        "accounts_url": sim.url,
        # No API override: the CRM host comes from the token's api_domain (the sim's URL).
        "campaigns_url": sim.url,
        "timeout_s": 5.0,
        "cache_prefix": f"zoho-test-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return ZohoConfig(**values)


def make_client(
    sim: Sim,
    *,
    cache: Any = None,
    call_log: CallLog | None = None,
    http: httpx.Client | None = None,
    **overrides: Any,
) -> ZohoClient:
    return ZohoClient(
        sim_config(sim, **overrides),
        cache=cache if cache is not None else LocMemCache(f"zoho-{uuid.uuid4().hex}", {}),
        call_log=call_log,
        http=http,
    )


@pytest.fixture
def zoho(sim: Sim, db: None) -> Iterator[ZohoClient]:
    client = make_client(sim)
    yield client
    client.close()


@pytest.fixture
def zoho_nolog(sim: Sim) -> Iterator[ZohoClient]:
    """A client that records no ZohoCall rows (for threads, which cannot share the test transaction)."""
    client = make_client(sim, call_log=NullCallLog())
    yield client
    client.close()


@pytest.fixture
def redis_url() -> str:
    """Redis db 5; a test needing it fails (not skips) on CI when Redis is absent."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        missing(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL
