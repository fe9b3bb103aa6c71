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
        "/api/v1.1/getlistsubscribers", params={"listkey": listkey, "fromindex": 1, "range": 2}, headers=auth
    )
    third = http.get(
        "/api/v1.1/getlistsubscribers", params={"listkey": listkey, "fromindex": 5, "range": 2}, headers=auth
    )

    assert [r["contact_email"] for r in first.json()["list_of_details"]] == [
        "s0@example.com",
        "s1@example.com",
    ]
    assert [r["contact_email"] for r in third.json()["list_of_details"]] == ["s4@example.com"]


def test_errors_are_http_200_envelopes(http: httpx.Client, auth: dict[str, str], listkey: str) -> None:
    bad_list = http.get("/api/v1.1/getlistsubscribers", params={"listkey": "nope"}, headers=auth)
    not_member = http.post(
        "/api/v1.1/json/listunsubscribe",
        data={"listkey": listkey, "contactinfo": info("x@example.com")},
        headers=auth,
    )
    no_auth = http.get("/api/v1.1/listsubscriberscount", params={"listkey": listkey})

    assert bad_list.status_code == not_member.status_code == no_auth.status_code == 200
    assert (bad_list.json()["code"], bad_list.json()["status"]) == ("2501", "error")
    assert not_member.json()["code"] == 2103
    assert no_auth.json()["Code"] == "1007"


def test_subscribe_and_do_not_mail(http: httpx.Client, auth: dict[str, str], listkey: str) -> None:
    sub = http.post(
        "/api/v1.1/json/listsubscribe",
        data={"listkey": listkey, "contactinfo": info("new@example.com")},
        headers=auth,
    )
    dnm = http.post(
        "/api/v1.1/json/contactdonotmail", data={"contactinfo": info("s0@example.com")}, headers=auth
    )
    unsub = http.get(
        "/api/v1.1/getlistsubscribers", params={"listkey": listkey, "status": "unsub"}, headers=auth
    )
    lists = http.get("/api/v1.1/getmailinglists", params={"resfmt": "JSON"}, headers=auth)

    assert sub.json()["status"] == "success"
    assert dnm.json()["code"] == 0
    assert [r["contact_email"] for r in unsub.json()["list_of_details"]] == ["s0@example.com"]
    assert lists.json()["list_of_details"][0]["listkey"] == listkey


def test_per_method_lock_after_the_call_limit(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], listkey: str
) -> None:
    params = {"listkey": listkey}
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
        data={"listkey": listkey, "contactinfo": info("s1@example.com")},
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
            "/api/v1.1/getcampaignrecipientsdata", data={"campaignkey": "CK1", "action": action}, headers=auth
        )
        return [r["contactemailaddress"] for r in resp.json()["list_of_details"]]

    bounced = http.get(
        "/api/v1.1/getlistsubscribers", params={"listkey": listkey, "status": "bounce"}, headers=auth
    )
    campaigns = http.get("/api/v1.1/recentsentcampaigns", headers=auth).json()

    assert recipients("optoutleads") == ["s1@example.com"]
    assert recipients("senthardbounce") == ["s2@example.com"]
    assert recipients("sentsoftbounce") == ["s3@example.com"]
    assert len(recipients("sentcontacts")) == 5
    assert [r["contact_email"] for r in bounced.json()["list_of_details"]] == ["s2@example.com"]
    assert campaigns["recent_campaigns"][0]["campaign_key"] == "CK1"
    bad = http.post(
        "/api/v1.1/getcampaignrecipientsdata",
        data={"campaignkey": "nope", "action": "sentcontacts"},
        headers=auth,
    )
    assert bad.json()["code"] == "6002"
