from __future__ import annotations

import httpx

from zohosim import LiveServer, seed


def test_write_log_records_each_accepted_write_in_order(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put(
        "/crm/v8/Contacts",
        json={"data": [{"id": i, "Email_Opt_Out": True} for i in contact_ids]},
        headers=auth,
    )
    http.put(
        "/crm/v8/Contacts",
        json={"data": [{"id": contact_ids[0], "SMS_Opt_In": True}, {"id": "1"}]},
        headers=auth,
    )

    writes = http.get("/_sim/writes").json()
    one = http.get("/_sim/writes", params={"record_id": contact_ids[0]}).json()["writes"]
    later = http.get("/_sim/writes", params={"since": 3}).json()["writes"]

    assert writes["count"] == 4
    assert [w["seq"] for w in writes["writes"]] == [1, 2, 3, 4]
    assert [w["fields"] for w in one] == [{"Email_Opt_Out": True}, {"SMS_Opt_In": True}]
    assert (
        one[0]["user"]["id"] == "5725767000000000001"
        and one[0]["request_id"]
        and one[0]["module"] == "Contacts"
    )
    assert [w["record_id"] for w in later] == [contact_ids[0]]


def test_call_log_and_stats(http: httpx.Client, auth: dict[str, str], contact_ids: list[str]) -> None:
    http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth)
    http.get("/crm/v8/Contacts/search", params={"email": "zz@example.com"}, headers=auth)

    calls = http.get("/_sim/calls").json()["calls"]
    stats = http.get("/_sim/stats").json()

    assert [(c["method"], c["op"], c["status"], c["credits"]) for c in calls[-2:]] == [
        ("GET", "crm.get", 200, 1),
        ("GET", "crm.search", 204, 1),
    ]
    assert calls[0]["op"] == "token"
    assert stats["credits_used"] == 2 and stats["credits_limit"] == 60_000
    assert stats["calls_by_op"] == {"crm.get": 1, "crm.search": 1}


def test_a_crm_user_edit_sets_modified_by(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    edited = http.post(
        f"/_sim/contacts/{contact_ids[0]}",
        json={
            "fields": {"Email_Opt_Out": True},
            "user": {"id": "5725767000000000099", "name": "Phone Agent"},
        },
    ).json()

    assert edited["Email_Opt_Out"] is True
    assert edited["Modified_By"] == {"name": "Phone Agent", "id": "5725767000000000099"}
    assert (
        http.get("/_sim/contacts", params={"email": "p0@example.com"}).json()["data"][0]["id"]
        == contact_ids[0]
    )
    assert http.get("/_sim/writes").json()["count"] == 0
    assert http.get("/_sim/writes", params={"source": "ui"}).json()["count"] == 1


def test_seed_reset_faults_and_token_expiry(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    seeded = http.post(
        "/_sim/seed", json={"contacts": [{"Last_Name": "X", "Email": "x@example.com"}], "edition": "free"}
    ).json()
    http.put("/_sim/faults", json={"silent_noop": {"ratio": 0.5}})
    faults = http.get("/_sim/faults").json()["faults"]
    expired = http.post("/_sim/tokens/expire").json()

    assert len(seeded["contacts"]) == 1
    assert sim.state.config.daily_credits() == 5000
    assert faults == {"silent_noop": {"ratio": 0.5}}
    assert expired["expired"] == 1
    assert http.get("/crm/v8/users", headers=auth).json()["code"] == "INVALID_TOKEN"
    http.post("/_sim/reset")
    assert http.get("/_sim/faults").json()["faults"] == {}
    assert http.get("/_sim/stats").json()["contacts"] == 0
    assert http.put("/_sim/faults", json={"no_such_fault": {}}).status_code == 400


def test_generator_builds_contacts_lists_and_campaigns() -> None:
    state = seed.generate(contacts=500, lists=2, seed=3, duplicates=2)

    assert len(state.modules["Contacts"]) == 502
    assert len(state.lists) == 2 and len(state.campaigns) == 1
    assert len(state.modules["Contacts"].by_email("contact0@example.com")) == 2
    first = state.modules["Contacts"].ids[0]
    assert (
        state.render(state.modules["Contacts"].records[first], ["Email"])["Email"] == "contact0@example.com"
    )
