"""Faults from zohosim map to the right errors; every call leaves a complete ZohoCall row."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from sync.models import ZohoCall
from sync.zoho import (
    ZohoClient,
    ZohoError,
    ZohoPermanentError,
    ZohoRateLimited,
    ZohoTransientError,
)
from tests.sync.conftest import SIM_CLIENT_SECRET, SIM_REFRESH_TOKEN, Sim, make_client


def test_a_429_is_a_transient_rate_limit(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    sim.fault("rate_limit", ratio=1.0)

    with pytest.raises(ZohoRateLimited) as caught:
        zoho.crm.search_by_email("a@example.com")

    assert (caught.value.http_status, caught.value.code, caught.value.permanent) == (
        429,
        "TOO_MANY_REQUESTS",
        False,
    )
    row = ZohoCall.objects.get(operation="crm.search")
    assert (row.outcome, row.http_status, row.zoho_code, row.permanent) == (
        "error",
        429,
        "TOO_MANY_REQUESTS",
        False,
    )


def test_a_5xx_is_transient(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    sim.fault("server_error", ratio=1.0)

    with pytest.raises(ZohoTransientError) as caught:
        zoho.crm.update([{"id": "5725767000000000001", "Email_Opt_Out": True}])

    assert caught.value.http_status == 500
    assert caught.value.permanent is False
    assert not isinstance(caught.value, ZohoPermanentError)


def test_a_slow_answer_beyond_the_timeout_is_transient(sim: Sim, db: None) -> None:
    client = make_client(sim, timeout_s=0.2)
    client.crm.current_user()
    sim.fault("slow", ratio=1.0, delay_s=0.6)

    with pytest.raises(ZohoTransientError) as caught:
        client.crm.get("5725767000000000001")

    assert caught.value.code == "timeout"
    row = ZohoCall.objects.get(operation="crm.get")
    assert (row.outcome, row.zoho_code, row.permanent, row.http_status) == ("error", "timeout", False, None)
    assert row.finished_at is not None
    sim.wait_for_calls("crm.get", 1)


def test_a_slow_answer_within_the_timeout_succeeds(zoho: ZohoClient, sim: Sim) -> None:
    sim.fault("slow", ratio=1.0, delay_s=0.05)

    assert zoho.crm.get("5725767000000000001") is None


def test_a_refused_connection_is_transient_and_logged(sim: Sim, db: None) -> None:
    client = make_client(sim, accounts_url="http://127.0.0.1:9")

    with pytest.raises(ZohoTransientError) as caught:
        client.crm.current_user()

    assert caught.value.code == "connection_error"
    row = ZohoCall.objects.get(operation="accounts.refresh")
    assert (row.outcome, row.permanent) == ("error", False)


def test_the_row_is_written_before_the_call_goes_out(sim: Sim, db: None) -> None:
    pending: list[tuple[str, str]] = []

    def hook(request: httpx.Request) -> None:
        pending.extend(ZohoCall.objects.filter(outcome="pending").values_list("operation", "path"))

    http = httpx.Client(event_hooks={"request": [hook]})
    client = make_client(sim, http=http)

    client.crm.current_user()

    assert pending == [("accounts.refresh", "/oauth/v2/token"), ("crm.current_user", "/crm/v8/users")]
    assert not ZohoCall.objects.filter(outcome="pending").exists()
    http.close()


def test_the_row_is_completed_when_the_call_raised(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    sim.fault("server_error", ratio=1.0)

    with pytest.raises(ZohoError):
        zoho.crm.fields("Contacts")

    row = ZohoCall.objects.get(operation="crm.fields")
    assert row.outcome == "error"
    assert row.http_status == 500
    assert row.zoho_code == "INTERNAL_ERROR"
    assert row.permanent is False
    assert row.finished_at is not None and row.duration_ms is not None
    assert "Internal Server Error" in row.error


def test_credits_remaining_is_recorded_once_zoho_sends_it(zoho: ZohoClient, sim: Sim) -> None:
    sim.config(credits_limit=10)

    for _ in range(7):
        zoho.crm.get("5725767000000000001")

    seen = list(
        ZohoCall.objects.filter(operation="crm.get")
        .order_by("id")
        .values_list("credits_remaining", flat=True)
    )
    assert seen[0] is None  # less than half used: no header
    assert seen[-1] is not None and seen[-1] < 5
    assert (
        ZohoCall.objects.filter(credits_remaining__isnull=False).order_by("-started_at")[0].credits_remaining
        == seen[-1]
    )


def test_exhausted_credits_are_a_rate_limit(zoho: ZohoClient, sim: Sim) -> None:
    sim.config(credits_limit=2)
    zoho.crm.get("5725767000000000001")
    zoho.crm.get("5725767000000000001")

    with pytest.raises(ZohoRateLimited):
        zoho.crm.get("5725767000000000001")


def test_no_secret_reaches_a_row_or_a_log_line(sim: Sim, db: None, caplog: pytest.LogCaptureFixture) -> None:
    tokens: set[str] = set()

    def hook(request: httpx.Request) -> None:
        auth = request.headers.get("Authorization", "")
        if auth:
            tokens.add(auth.split(" ", 1)[1])

    http = httpx.Client(event_hooks={"request": [hook]})
    client = make_client(sim, http=http)
    caplog.set_level(logging.DEBUG)

    # Successes, a refresh-and-retry, a 5xx, and a failed refresh.
    client.crm.current_user()
    sim.expire_tokens()
    client.crm.search_by_email("a@example.com")
    sim.fault("server_error", ratio=1.0)
    with pytest.raises(ZohoError):
        client.crm.get("5725767000000000001")
    sim.clear_faults()
    sim.seed(lists=[{"listkey": "3zlist", "subscribers": ["a@example.com"]}])
    client.campaigns.unsubscribe("3zlist", "a@example.com")
    sim.fault("wrong_dc")
    with pytest.raises(ZohoError):
        client.crm.current_user()

    secrets = {SIM_CLIENT_SECRET, SIM_REFRESH_TOKEN, *tokens}
    assert len(tokens) >= 2
    rows: list[dict[str, Any]] = list(ZohoCall.objects.values())
    assert len(rows) >= 8
    dumped = "\n".join(str(v) for row in rows for v in row.values())
    for secret in secrets:
        assert secret not in dumped
        assert secret not in caplog.text
    http.close()
