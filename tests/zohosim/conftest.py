"""Fixtures for the simulator's own tests: no Django, no database; real HTTP on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from zohosim import LiveServer
from zohosim.config import SimConfig

TOKEN_FORM = {
    "grant_type": "refresh_token",
    "refresh_token": "zohosim-refresh-token",
    "client_id": "zohosim-client",
    "client_secret": "zohosim-secret",
}


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(fault_seed=7)


@pytest.fixture
def sim(sim_config: SimConfig) -> Iterator[LiveServer]:
    with LiveServer(config=sim_config) as server:
        yield server


@pytest.fixture
def http(sim: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, timeout=10) as client:
        yield client


def mint(http: httpx.Client) -> str:
    body = http.post("/oauth/v2/token", data=TOKEN_FORM).json()
    return str(body["access_token"])


@pytest.fixture
def auth(http: httpx.Client) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {mint(http)}"}


@pytest.fixture
def contact_ids(sim: LiveServer) -> list[str]:
    return [
        sim.state.add_contact(First_Name=f"P{i}", Last_Name="Person", Email=f"p{i}@example.com")
        for i in range(3)
    ]
