"""The shared access token: minting, sharing, refreshing ahead of expiry, refresh errors."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from sync.models import ZohoCall
from sync.zoho import ZohoAuthError, ZohoAuthRevoked, ZohoClient, ZohoRateLimited
from tests.sync.conftest import Sim, make_client


def test_it_mints_a_token_and_takes_the_api_host_from_the_token(zoho: ZohoClient, sim: Sim) -> None:
    user = zoho.crm.current_user()

    assert user.email
    assert sim.mints() == 1
    assert zoho.tokens.cached() is not None
    assert zoho.tokens.cached().api_domain == sim.url  # type: ignore[union-attr]
    mint = ZohoCall.objects.get(operation="accounts.refresh")
    assert (mint.service, mint.method, mint.path, mint.outcome) == (
        "accounts",
        "POST",
        "/oauth/v2/token",
        "ok",
    )


def test_it_sends_the_zoho_oauthtoken_scheme(sim: Sim, db: None) -> None:
    seen: list[str] = []

    def hook(request: object) -> None:
        seen.append(request.headers.get("Authorization", ""))  # type: ignore[attr-defined]

    import httpx

    http = httpx.Client(event_hooks={"request": [hook]})
    client = make_client(sim, http=http)

    client.crm.current_user()

    assert seen[-1].startswith("Zoho-oauthtoken ")
    assert not any(h.lower().startswith("bearer") for h in seen)
    http.close()


def test_later_calls_reuse_the_cached_token(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    zoho.crm.fields("Contacts")
    zoho.crm.search_by_email("nobody@example.com")

    assert sim.mints() == 1


def test_a_second_client_on_the_same_cache_reuses_the_token(sim: Sim, db: None) -> None:
    from django.core.cache.backends.locmem import LocMemCache

    cache = LocMemCache("zoho-shared-test", {})
    first = make_client(sim, cache=cache, cache_prefix="shared")
    second = make_client(sim, cache=cache, cache_prefix="shared")

    first.crm.current_user()
    second.crm.current_user()

    assert sim.mints() == 1


def test_it_refreshes_five_minutes_before_expiry_not_earlier(zoho: ZohoClient, sim: Sim) -> None:
    with time_machine.travel(dt.datetime.now(tz=dt.UTC), tick=True) as traveller:
        zoho.crm.current_user()
        traveller.shift(dt.timedelta(minutes=50))
        zoho.crm.current_user()
        assert sim.mints() == 1

        traveller.shift(dt.timedelta(minutes=6))  # 56 min: less than 5 min left
        zoho.crm.current_user()

    assert sim.mints() == 2


def test_a_401_invalid_token_refreshes_once_and_succeeds(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    sim.expire_tokens()

    user = zoho.crm.current_user()

    assert user.id
    assert sim.mints() == 2
    rows = list(ZohoCall.objects.filter(operation="crm.current_user").order_by("id"))
    assert [(r.http_status, r.zoho_code, r.outcome) for r in rows] == [
        (200, "", "ok"),
        (401, "INVALID_TOKEN", "error"),
        (200, "", "ok"),
    ]


def test_the_expire_tokens_fault_makes_calls_refresh_once(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    sim.fault("expire_tokens", ratio=1.0, ops=["crm.users"], for_s=60)

    with pytest.raises(ZohoAuthError) as caught:
        zoho.crm.current_user()

    # Every token is refused: one refresh, one retry, then a permanent error.
    assert caught.value.code == "INVALID_TOKEN"
    assert sim.mints() == 2
    assert len(sim.calls("crm.users")) == 3


def test_a_revoked_refresh_token_raises_zoho_auth_revoked(sim: Sim, db: None) -> None:
    client = make_client(sim, refresh_token="revoked-or-unknown")

    with pytest.raises(ZohoAuthRevoked) as caught:
        client.crm.current_user()

    assert caught.value.permanent is True
    assert caught.value.code == "invalid_code"
    assert "ZOHO_REFRESH_TOKEN" in str(caught.value)
    row = ZohoCall.objects.get(operation="accounts.refresh")
    assert (row.http_status, row.zoho_code, row.outcome, row.permanent) == (
        200,
        "invalid_code",
        "error",
        True,
    )


def test_a_wrong_client_raises_an_auth_error_naming_the_data_centre(sim: Sim, db: None) -> None:
    client = make_client(sim, client_secret="not-the-secret")

    with pytest.raises(ZohoAuthError) as caught:
        client.crm.current_user()

    assert not isinstance(caught.value, ZohoAuthRevoked)
    assert caught.value.permanent is True
    assert caught.value.code == "invalid_client"
    assert "wrong data centre" in str(caught.value)
    assert "ZOHO_DC=us" in str(caught.value)


def test_the_wrong_dc_fault_surfaces_as_invalid_client(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()  # a token from "the right" DC
    sim.fault("wrong_dc")

    with pytest.raises(ZohoAuthError) as caught:
        zoho.crm.current_user()

    # The API refuses the token (INVALID_TOKEN), the refresh says invalid_client.
    assert caught.value.code == "invalid_client"
    assert "data centre" in str(caught.value)
    assert ZohoCall.objects.filter(operation="crm.current_user", zoho_code="INVALID_TOKEN").count() == 1


def test_the_mint_throttle_is_a_rate_limit(sim: Sim, db: None) -> None:
    sim.config(token_mint_limit=0)
    client = make_client(sim)

    with pytest.raises(ZohoRateLimited) as caught:
        client.crm.current_user()

    assert caught.value.permanent is False


def test_another_process_refreshing_lets_a_valid_token_through(zoho: ZohoClient, sim: Sim) -> None:
    with time_machine.travel(dt.datetime.now(tz=dt.UTC), tick=True) as traveller:
        zoho.crm.current_user()
        traveller.shift(dt.timedelta(minutes=57))
        with zoho.tokens.holding_lock():  # "another process" is refreshing
            zoho.crm.current_user()
        assert sim.mints() == 1

        zoho.crm.current_user()  # nobody refreshes: this one does

    assert sim.mints() == 2
