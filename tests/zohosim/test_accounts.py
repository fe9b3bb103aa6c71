from __future__ import annotations

import httpx

from tests.zohosim.conftest import TOKEN_FORM, mint
from zohosim import LiveServer, create_app


def test_it_mints_an_access_token_with_api_domain_and_no_refresh_token(
    sim: LiveServer, http: httpx.Client
) -> None:
    resp = http.post("/oauth/v2/token", data=TOKEN_FORM)

    assert resp.status_code == 200
    body = resp.json()
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert body["api_domain"] == sim.url
    assert "refresh_token" not in body
    assert body["access_token"]


def test_it_accepts_the_grant_in_the_query_string(http: httpx.Client) -> None:
    assert "access_token" in http.post("/oauth/v2/token", params=TOKEN_FORM).json()


def test_it_answers_token_errors_with_http_200(http: httpx.Client) -> None:
    bad_refresh = http.post("/oauth/v2/token", data={**TOKEN_FORM, "refresh_token": "nope"})
    bad_client = http.post("/oauth/v2/token", data={**TOKEN_FORM, "client_secret": "nope"})

    assert (bad_refresh.status_code, bad_refresh.json()) == (200, {"error": "invalid_code"})
    assert (bad_client.status_code, bad_client.json()) == (200, {"error": "invalid_client"})


def test_it_throttles_the_eleventh_mint_in_ten_minutes(sim: LiveServer, http: httpx.Client) -> None:
    for _ in range(10):
        assert "access_token" in http.post("/oauth/v2/token", data=TOKEN_FORM).json()

    throttled = http.post("/oauth/v2/token", data=TOKEN_FORM)
    sim.state.clock.advance(601)
    again = http.post("/oauth/v2/token", data=TOKEN_FORM)

    assert throttled.status_code == 200
    assert throttled.json()["error"] == "Access Denied"
    assert throttled.json()["error_description"].startswith("You have made too many requests")
    assert "access_token" in again.json()


def test_the_eleventh_active_token_evicts_the_oldest(sim: LiveServer, http: httpx.Client) -> None:
    tokens = [mint(http) for _ in range(10)]
    sim.state.clock.advance(601)
    tokens.append(mint(http))

    def status(tok: str) -> int:
        return http.get(
            "/crm/v8/users",
            params={"type": "CurrentUser"},
            headers={"Authorization": f"Zoho-oauthtoken {tok}"},
        ).status_code

    assert status(tokens[0]) == 401
    assert status(tokens[1]) == 200
    assert status(tokens[-1]) == 200


def test_an_expired_token_gets_invalid_token(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    sim.state.clock.advance(3601)

    resp = http.get("/crm/v8/users", params={"type": "CurrentUser"}, headers=auth)

    assert resp.status_code == 401
    assert resp.json() == {
        "code": "INVALID_TOKEN",
        "details": {},
        "message": "invalid oauth token",
        "status": "error",
    }


def test_a_missing_or_bearer_header_is_authentication_failure(http: httpx.Client) -> None:
    missing = http.get("/crm/v8/users")
    bearer = http.get("/crm/v8/users", headers={"Authorization": "Bearer abc"})

    assert missing.status_code == bearer.status_code == 401
    assert missing.json()["code"] == bearer.json()["code"] == "AUTHENTICATION_FAILURE"


def test_revoking_the_refresh_token_kills_it_and_its_access_tokens(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    resp = http.post("/oauth/v2/token/revoke", data={"token": "zohosim-refresh-token"})

    assert resp.json() == {"status": "success"}
    assert http.post("/oauth/v2/token", data=TOKEN_FORM).json() == {"error": "invalid_code"}
    assert http.get("/crm/v8/users", headers=auth).json()["code"] == "INVALID_TOKEN"


def test_it_works_in_process_through_wsgi_transport() -> None:
    app = create_app(config={"api_domain": "https://www.zohoapis.eu"})
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://sim") as client:
        body = client.post("/oauth/v2/token", data=TOKEN_FORM).json()
        users = client.get(
            "/crm/v2.1/users",
            params={"type": "CurrentUser"},
            headers={"Authorization": f"Zoho-oauthtoken {body['access_token']}"},
        ).json()

    assert body["api_domain"] == "https://www.zohoapis.eu"
    assert users["users"][0]["id"] == "5725767000000000001"
    assert users["users"][0]["profile"]["name"] == "Administrator"


def test_users_come_in_pages_of_at_most_200(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    for n in range(201):
        sim.state.add_user(f"57257670002{n:05}", f"User {n}", f"user{n}@example.com")
    total = len(sim.state.users)

    first = http.get("/crm/v8/users", params={"type": "AllUsers"}, headers=auth).json()
    second = http.get("/crm/v8/users", params={"type": "AllUsers", "page": 2}, headers=auth).json()
    past = http.get("/crm/v8/users", params={"type": "AllUsers", "page": 3, "per_page": 200}, headers=auth)
    too_many = http.get("/crm/v8/users", params={"type": "AllUsers", "per_page": 201}, headers=auth)

    assert (len(first["users"]), first["info"]["more_records"]) == (200, True)
    assert (len(second["users"]), second["info"]["more_records"]) == (total - 200, False)
    assert past.status_code == 204
    assert (too_many.status_code, too_many.json()["details"]) == (400, {"param_name": "per_page"})
