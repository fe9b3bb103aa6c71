from __future__ import annotations

import json

import httpx
import pytest

from zohosim import LiveServer
from zohosim.config import SimConfig


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(campaigns_method_limit=5)


@pytest.fixture
def listkey(http: httpx.Client) -> str:
    http.post(
        "/_sim/seed",
        json={
            "lists": [
                {"listkey": "LK1", "name": "News", "subscribers": [f"s{i}@example.com" for i in range(5)]}
            ],
            "campaigns": [{"campaignkey": "CK1", "name": "Spring", "listkeys": ["LK1"]}],
        },
    )
    return "LK1"


# Every call names its answer format (zoho-api.md section 7); zohosim answers JSON only.
J = {"resfmt": "JSON"}


def info(email: str) -> str:
    return json.dumps({"Contact Email": email})


def test_unsubscribe_moves_the_contact_to_unsub(
    http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    resp = http.post(
        "/api/v1.1/json/listunsubscribe",
        data={"resfmt": "JSON", "listkey": listkey, "contactinfo": info("s1@example.com")},
        headers=auth,
    )
    unsub = http.get(
        "/api/v1.1/getlistsubscribers",
        params={"resfmt": "JSON", "listkey": listkey, "status": "unsub"},
        headers=auth,
    )
    count = http.get(
        "/api/v1.1/listsubscriberscount",
        params={"resfmt": "JSON", "listkey": listkey, "status": "active"},
        headers=auth,
    )

    assert resp.status_code == 200
    assert resp.json()["code"] == 0 and resp.json()["status"] == "success"
    assert [r["contact_email"] for r in unsub.json()["list_of_details"]] == ["s1@example.com"]
    assert unsub.json()["code"] == "0"
    assert count.json()["Code"] == "0" and count.json()["no_of_contacts"] == 4


def test_paging_with_fromindex_and_range(http: httpx.Client, auth: dict[str, str], listkey: str) -> None:
    first = http.get(
        "/api/v1.1/getlistsubscribers",
        params={**J, "listkey": listkey, "fromindex": 1, "range": 2},
        headers=auth,
    )
    third = http.get(
        "/api/v1.1/getlistsubscribers",
        params={**J, "listkey": listkey, "fromindex": 5, "range": 2},
        headers=auth,
    )

    assert [r["contact_email"] for r in first.json()["list_of_details"]] == [
        "s0@example.com",
        "s1@example.com",
    ]
    assert [r["contact_email"] for r in third.json()["list_of_details"]] == ["s4@example.com"]


def test_errors_are_http_200_envelopes(http: httpx.Client, auth: dict[str, str], listkey: str) -> None:
    bad_list = http.get("/api/v1.1/getlistsubscribers", params={**J, "listkey": "nope"}, headers=auth)
    not_member = http.post(
        "/api/v1.1/json/listunsubscribe",
        data={**J, "listkey": listkey, "contactinfo": info("x@example.com")},
        headers=auth,
    )
    no_auth = http.get("/api/v1.1/listsubscriberscount", params={**J, "listkey": listkey})

    assert bad_list.status_code == not_member.status_code == no_auth.status_code == 200
    assert (bad_list.json()["code"], bad_list.json()["status"]) == ("2501", "error")
    assert not_member.json()["code"] == 2103
    assert no_auth.json()["Code"] == "1007"


def test_subscribe_and_do_not_mail(http: httpx.Client, auth: dict[str, str], listkey: str) -> None:
    sub = http.post(
        "/api/v1.1/json/listsubscribe",
        data={**J, "listkey": listkey, "contactinfo": info("new@example.com")},
        headers=auth,
    )
    dnm = http.post(
        "/api/v1.1/json/contactdonotmail", data={**J, "contactinfo": info("s0@example.com")}, headers=auth
    )
    unsub = http.get(
        "/api/v1.1/getlistsubscribers", params={**J, "listkey": listkey, "status": "unsub"}, headers=auth
    )
    lists = http.get("/api/v1.1/getmailinglists", params={"resfmt": "JSON"}, headers=auth)

    assert sub.json()["status"] == "success"
    assert dnm.json()["code"] == 0
    assert [r["contact_email"] for r in unsub.json()["list_of_details"]] == ["s0@example.com"]
    assert lists.json()["list_of_details"][0]["listkey"] == listkey


def test_per_method_lock_after_the_call_limit(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    params = {**J, "listkey": listkey}
    codes = [
        http.get("/api/v1.1/getlistsubscribers", params=params, headers=auth).json()["code"] for _ in range(6)
    ]
    other = http.get("/api/v1.1/listsubscriberscount", params=params, headers=auth).json()["Code"]
    sim.state.clock.advance(1801)
    unlocked = http.get("/api/v1.1/getlistsubscribers", params=params, headers=auth).json()["code"]

    assert codes == ["0"] * 5 + ["2201"]
    assert other == "0"
    assert unlocked == "0"


def test_campaigns_lock_fault(http: httpx.Client, auth: dict[str, str], listkey: str) -> None:
    http.put("/_sim/faults", json={"campaigns_lock": {"method": "listunsubscribe"}})

    resp = http.post(
        "/api/v1.1/json/listunsubscribe",
        data={**J, "listkey": listkey, "contactinfo": info("s1@example.com")},
        headers=auth,
    )

    assert resp.status_code == 200 and resp.json()["code"] == 2201


def test_simulated_unsubscribe_and_bounces_show_in_reports(
    http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    http.post("/_sim/campaigns/unsubscribe", json={"email": "s1@example.com"})
    http.post("/_sim/campaigns/bounce", json={"email": "s2@example.com", "kind": "hard"})
    http.post("/_sim/campaigns/bounce", json={"email": "s3@example.com", "kind": "soft"})

    def recipients(action: str) -> list[str]:
        resp = http.post(
            "/api/v1.1/getcampaignrecipientsdata",
            data={**J, "campaignkey": "CK1", "action": action},
            headers=auth,
        )
        return [r["contactemailaddress"] for r in resp.json()["list_of_details"]]

    bounced = http.get(
        "/api/v1.1/getlistsubscribers", params={**J, "listkey": listkey, "status": "bounce"}, headers=auth
    )
    campaigns = http.get("/api/v1.1/recentsentcampaigns", params=J, headers=auth).json()

    assert recipients("optoutleads") == ["s1@example.com"]
    assert recipients("senthardbounce") == ["s2@example.com"]
    assert recipients("sentsoftbounce") == ["s3@example.com"]
    assert len(recipients("sentcontacts")) == 5
    assert [r["contact_email"] for r in bounced.json()["list_of_details"]] == ["s2@example.com"]
    assert campaigns["recent_campaigns"][0]["campaign_key"] == "CK1"
    bad = http.post(
        "/api/v1.1/getcampaignrecipientsdata",
        data={**J, "campaignkey": "nope", "action": "sentcontacts"},
        headers=auth,
    )
    assert bad.json()["code"] == "6002"


# ----- HTTP methods, resfmt, paging and statuses, as zoho-api.md section 7 gives them

POST_ONLY = {
    "json/listsubscribe": {"listkey": "LK1", "contactinfo": info("get@example.com")},
    "json/listunsubscribe": {"listkey": "LK1", "contactinfo": info("s1@example.com")},
    "json/contactdonotmail": {"contactinfo": info("s2@example.com")},
    "addlistsubscribersinbulk": {"listkey": "LK1", "emailids": "bulk@example.com"},
    "getcampaignrecipientsdata": {"campaignkey": "CK1", "action": "sentcontacts"},
}
GET_ONLY = {
    "listsubscriberscount": {"listkey": "LK1"},
    "getmailinglists": {},
    "recentsentcampaigns": {},
}


def error_of(resp: httpx.Response) -> tuple[int, str, str]:
    """(HTTP status, code as a string, status) of a Campaigns answer, whichever spelling it uses."""
    body = resp.json()
    return resp.status_code, str(body.get("code", body.get("Code"))), body["status"]


def emails(sim: LiveServer, listkey: str, status: str) -> list[str]:
    return sorted(s.email for s in sim.state.lists[listkey].subscribers.values() if s.status == status)


@pytest.mark.parametrize("method", sorted(POST_ONLY))
def test_post_only_methods_refuse_get_as_a_wrong_url(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], listkey: str, method: str
) -> None:
    resp = http.get(f"/api/v1.1/{method}", params={**J, **POST_ONLY[method]}, headers=auth)
    no_auth = http.get(f"/api/v1.1/{method}", params={**J, **POST_ONLY[method]})

    assert error_of(resp) == (200, "1004", "error")
    assert "POST" in resp.json()["message"]
    assert error_of(no_auth) == (200, "1004", "error")  # a wrong URL, before the token is looked at
    # Nothing happened: nobody subscribed, unsubscribed or moved to do-not-mail.
    assert emails(sim, listkey, "active") == [f"s{i}@example.com" for i in range(5)]
    assert emails(sim, listkey, "unsub") == []
    assert sim.state.donotmail == set()
    assert [c["code"] for c in http.get("/_sim/calls").json()["calls"] if c["path"].endswith(method)] == [
        "1004",
        "1004",
    ]


@pytest.mark.parametrize("method", sorted(GET_ONLY))
def test_read_only_methods_refuse_post(
    http: httpx.Client, auth: dict[str, str], listkey: str, method: str
) -> None:
    posted = http.post(f"/api/v1.1/{method}", data={**J, **GET_ONLY[method]}, headers=auth)
    got = http.get(f"/api/v1.1/{method}", params={**J, **GET_ONLY[method]}, headers=auth)

    assert error_of(posted) == (200, "1004", "error")
    assert error_of(got) == (200, "0", "success")


def test_getlistsubscribers_takes_get_and_post(
    http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    params = {**J, "listkey": listkey, "fromindex": 1, "range": 2}

    got = http.get("/api/v1.1/getlistsubscribers", params=params, headers=auth)
    posted = http.post("/api/v1.1/getlistsubscribers", data=params, headers=auth)

    assert got.json()["list_of_details"] == posted.json()["list_of_details"]
    assert len(got.json()["list_of_details"]) == 2


@pytest.mark.parametrize(
    ("method", "verb", "params"),
    [
        ("getlistsubscribers", "GET", {"listkey": "LK1"}),
        ("listsubscriberscount", "GET", {"listkey": "LK1"}),
        ("json/listunsubscribe", "POST", {"listkey": "LK1", "contactinfo": info("s1@example.com")}),
        ("getcampaignrecipientsdata", "POST", {"campaignkey": "CK1", "action": "sentcontacts"}),
    ],
)
@pytest.mark.parametrize("resfmt", [None, "XML", "json", "HTML"])
def test_a_call_without_resfmt_json_is_refused(
    sim: LiveServer,
    http: httpx.Client,
    auth: dict[str, str],
    listkey: str,
    method: str,
    verb: str,
    params: dict[str, str],
    resfmt: str | None,
) -> None:
    values = params if resfmt is None else {**params, "resfmt": resfmt}
    if verb == "GET":
        resp = http.get(f"/api/v1.1/{method}", params=values, headers=auth)
    else:
        resp = http.post(f"/api/v1.1/{method}", data=values, headers=auth)

    assert error_of(resp) == (200, "1004", "error")
    assert "resfmt" in resp.json()["message"]
    assert resp.headers["Content-Type"].startswith("application/json")
    assert emails(sim, listkey, "unsub") == []  # the unsubscribe did not happen


@pytest.mark.parametrize("name", ["fromindex", "range"])
@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", "", "+2", "1e2"])
def test_paging_params_must_be_positive_integers(
    http: httpx.Client, auth: dict[str, str], listkey: str, name: str, value: str
) -> None:
    listed = http.get(
        "/api/v1.1/getlistsubscribers", params={**J, "listkey": listkey, name: value}, headers=auth
    )
    recipients = http.post(
        "/api/v1.1/getcampaignrecipientsdata",
        data={**J, "campaignkey": "CK1", "action": "sentcontacts", name: value},
        headers=auth,
    )
    lists = http.get("/api/v1.1/getmailinglists", params={**J, name: value}, headers=auth)

    for resp in (listed, recipients, lists):
        assert error_of(resp) == (200, "1004", "error")
        assert name in resp.json()["message"]


def test_range_above_the_maximum_is_refused_or_capped(
    http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    http.post(
        "/_sim/seed",
        json={
            "lists": [
                {"listkey": "BIG", "name": "Big", "subscribers": [f"b{i:03}@example.com" for i in range(150)]}
            ]
        },
    )

    def page(size: int) -> httpx.Response:
        return http.get(
            "/api/v1.1/getlistsubscribers", params={**J, "listkey": "BIG", "range": size}, headers=auth
        )

    at_max = page(100)
    over = page(101)
    http.put("/_sim/config", json={"campaigns_range_over_max": "cap"})
    capped = page(150)

    assert len(at_max.json()["list_of_details"]) == 100
    assert error_of(over) == (200, "1004", "error")
    assert "at most 100" in over.json()["message"]
    assert len(capped.json()["list_of_details"]) == 100


def test_statuses_of_the_list_and_of_the_count(
    http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    def listed(status: str) -> httpx.Response:
        return http.get(
            "/api/v1.1/getlistsubscribers", params={**J, "listkey": listkey, "status": status}, headers=auth
        )

    def counted(status: str) -> httpx.Response:
        return http.get(
            "/api/v1.1/listsubscriberscount", params={**J, "listkey": listkey, "status": status}, headers=auth
        )

    for status in ("active", "recent", "most recent"):
        assert len(listed(status).json()["list_of_details"]) == 5, status
    for status in ("active", "unsub", "bounce", "spam"):
        assert error_of(counted(status))[1:] == ("0", "success"), status
    assert error_of(listed("spam")) == (200, "2502", "error")  # spam is for the count only
    assert error_of(listed("opened")) == (200, "2502", "error")
    assert error_of(counted("recent")) == (200, "2502", "error")


def test_an_empty_page_answers_the_no_contacts_codes(
    http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    http.post("/_sim/seed", json={"lists": [{"listkey": "EMPTY", "name": "Empty", "subscribers": []}]})

    def listed(key: str, **params: object) -> httpx.Response:
        return http.get("/api/v1.1/getlistsubscribers", params={**J, "listkey": key, **params}, headers=auth)

    last = listed(listkey, fromindex=5, range=1)
    past_the_end = listed(listkey, fromindex=6, range=5)
    no_bounces = listed(listkey, status="bounce")
    empty_list = listed("EMPTY")
    unknown_list = listed("NOPE")
    no_clicks = http.post(
        "/api/v1.1/getcampaignrecipientsdata",
        data={**J, "campaignkey": "CK1", "action": "clickedleads"},
        headers=auth,
    )
    lists_past_the_end = http.get("/api/v1.1/getmailinglists", params={**J, "fromindex": 5}, headers=auth)

    assert [r["contact_email"] for r in last.json()["list_of_details"]] == ["s4@example.com"]
    for resp in (past_the_end, no_bounces, empty_list):
        assert error_of(resp) == (200, "2203", "error")
        assert "list_of_details" not in resp.json()
    assert error_of(unknown_list) == (200, "2501", "error")  # the list key is checked first
    assert error_of(no_clicks) == (200, "6302", "error")
    # Methods without a documented empty-page code answer success with no rows.
    assert lists_past_the_end.json()["list_of_details"] == []


def test_the_empty_page_code_can_be_turned_off(
    http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    put = http.put("/_sim/config", json={"campaigns_empty_page_codes": {"getlistsubscribers": ""}})
    assert put.status_code == 200, put.text

    no_bounces = http.get(
        "/api/v1.1/getlistsubscribers", params={**J, "listkey": listkey, "status": "bounce"}, headers=auth
    )
    no_clicks = http.post(
        "/api/v1.1/getcampaignrecipientsdata",
        data={**J, "campaignkey": "CK1", "action": "clickedleads"},
        headers=auth,
    )

    assert no_bounces.json()["code"] == "0" and no_bounces.json()["list_of_details"] == []
    assert no_clicks.json()["code"] == "0" and no_clicks.json()["list_of_details"] == []
