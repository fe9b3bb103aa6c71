from __future__ import annotations

import httpx

from tests.zohosim.conftest import TOKEN_FORM
from zohosim import LiveServer, SimState
from zohosim.config import SimConfig


def put(http: httpx.Client, auth: dict[str, str], rid: str, **fields: object) -> httpx.Response:
    return http.put("/crm/v8/Contacts", json={"data": [{"id": rid, **fields}]}, headers=auth)


def read(http: httpx.Client, auth: dict[str, str], rid: str) -> dict:
    fields = "Email_Opt_Out,Data_Processing_Basis_Details,Modified_By,SMS_Opt_In"
    return http.get(f"/crm/v8/Contacts/{rid}", params={"fields": fields}, headers=auth).json()["data"][0]


def test_workflow_reset_after_a_delay_on_the_sim_clock(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put(
        "/_sim/faults",
        json={
            "workflow_reset": {
                "field": "Data_Processing_Basis_Details.Contact_Through_Phone",
                "value": True,
                "delay_s": 30,
            }
        },
    )
    rid = contact_ids[0]

    assert (
        put(http, auth, rid, Data_Processing_Basis_Details={"Contact_Through_Phone": False}).json()["data"][
            0
        ]["code"]
        == "SUCCESS"
    )
    assert read(http, auth, rid)["Data_Processing_Basis_Details"]["Contact_Through_Phone"] is False
    http.post("/_sim/clock", json={"advance_s": 31})
    after = read(http, auth, rid)

    assert after["Data_Processing_Basis_Details"]["Contact_Through_Phone"] is True
    assert after["Modified_By"] == {"name": "Workflow: Reset phone consent", "id": "5725767000000000002"}
    writes = http.get("/_sim/writes", params={"record_id": rid, "source": "all"}).json()["writes"]
    assert [w["source"] for w in writes] == ["api", "workflow"]


def test_workflow_reset_with_zero_delay_is_immediate(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put(
        "/_sim/faults", json={"workflow_reset": {"field": "Email_Opt_Out", "value": False, "delay_s": 0}}
    )

    put(http, auth, contact_ids[0], Email_Opt_Out=True)

    assert read(http, auth, contact_ids[0])["Email_Opt_Out"] is False


def test_field_no_permission_error_and_silent(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put(
        "/_sim/faults",
        json={
            "field_no_permission": [
                {"field": "SMS_Opt_In", "mode": "error"},
                {"field": "Email_Opt_Out", "mode": "silent"},
            ]
        },
    )

    denied = put(http, auth, contact_ids[0], SMS_Opt_In=True)
    silent = put(http, auth, contact_ids[1], Email_Opt_Out=True)
    meta = {
        f["api_name"]: f
        for f in http.get("/crm/v8/settings/fields", params={"module": "Contacts"}, headers=auth).json()[
            "fields"
        ]
    }

    assert denied.status_code == 403
    assert denied.json()["data"][0]["code"] == "NO_PERMISSION"
    assert denied.json()["data"][0]["details"]["permissions"]
    assert read(http, auth, contact_ids[0])["SMS_Opt_In"] is None
    assert silent.json()["data"][0]["code"] == "SUCCESS"
    assert read(http, auth, contact_ids[1])["Email_Opt_Out"] is False
    assert meta["SMS_Opt_In"]["profiles"][0]["permission_type"] == "read_only"
    assert meta["Email_Opt_Out"]["read_only"] is True  # for the API user
    assert meta["Email_Opt_Out"]["field_read_only"] is False  # not for everyone


def test_silent_noop_answers_success_and_changes_nothing(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put("/_sim/faults", json={"silent_noop": {"ratio": 1.0}})

    resp = put(http, auth, contact_ids[0], Email_Opt_Out=True)

    assert resp.json()["data"][0]["code"] == "SUCCESS"
    assert read(http, auth, contact_ids[0])["Email_Opt_Out"] is False
    assert http.get("/_sim/writes").json()["writes"][0]["applied"] is False


def test_rate_limit_server_error_and_targeting(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put("/_sim/faults", json={"rate_limit": {"for_s": 60, "ops": ["crm.update"]}})
    limited = put(http, auth, contact_ids[0], Email_Opt_Out=True)
    other_op = http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth)
    sim.state.clock.advance(61)
    after = put(http, auth, contact_ids[0], Email_Opt_Out=True)
    http.delete("/_sim/faults")
    http.put("/_sim/faults", json={"server_error": {"ratio": 1.0}})
    broken = http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth)

    assert limited.status_code == 429 and "Retry-After" not in limited.headers
    assert other_op.status_code == 200
    assert after.status_code == 200
    assert (broken.status_code, broken.json()["code"]) == (500, "INTERNAL_ERROR")


def test_ratio_faults_are_reproducible_with_a_seed() -> None:
    def pattern() -> list[bool]:
        state = SimState(SimConfig(fault_seed=42))
        state.set_fault("rate_limit", ratio=0.5)
        return [state.faults.pick("rate_limit", "crm.get") is not None for _ in range(20)]

    assert pattern() == pattern()
    assert 0 < sum(pattern()) < 20


def test_an_nth_rule_fails_exactly_the_calls_it_names_of_those_it_matches(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put("/_sim/faults", json={"server_error": {"ops": ["crm.get"], "nth": [2, 4]}}).raise_for_status()

    statuses = []
    for _ in range(3):
        statuses.append(http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth).status_code)
        # (a call the rule does not match is not counted)
        coql = {"select_query": "select id from Contacts where id > 0"}
        assert http.post("/crm/v8/coql", json=coql, headers=auth).status_code in (200, 204)
    statuses.append(http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth).status_code)
    refused = http.put("/_sim/faults", json={"server_error": {"nth": [0]}})

    assert statuses == [200, 500, 200, 500]
    assert refused.status_code == 400


def test_expire_tokens_and_wrong_dc(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put("/_sim/faults", json={"expire_tokens": {}})
    expired = http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth)
    http.put("/_sim/faults", json={"wrong_dc": {}})
    token = http.post("/oauth/v2/token", data=TOKEN_FORM)

    assert expired.json()["code"] == "INVALID_TOKEN"
    assert (token.status_code, token.json()) == (200, {"error": "invalid_client"})
    http.delete("/_sim/faults/wrong_dc")
    fresh = http.post("/oauth/v2/token", data=TOKEN_FORM).json()["access_token"]
    headers = {"Authorization": f"Zoho-oauthtoken {fresh}"}
    http.put("/_sim/faults", json={"wrong_dc": {}})
    assert http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=headers).status_code == 401


def test_duplicate_email_seeds_a_second_record(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    applied = http.put("/_sim/faults", json={"duplicate_email": {"record_id": contact_ids[0]}}).json()[
        "applied"
    ]

    found = http.get("/crm/v8/Contacts/search", params={"email": "p0@example.com"}, headers=auth).json()[
        "data"
    ]

    assert applied["duplicate_email"][0]["original_id"] == contact_ids[0]
    assert len(found) == 2


def test_slow_fault_delays_the_answer(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.set_fault("slow", ratio=1.0, delay_s=0.2, ops=["crm.get"])

    http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth)

    assert sim.state.calls[-1]["duration_ms"] >= 200
