"""Record deletes (Zoho's v8 ``deleteRecords``): one entry per id, 200/207/400, the ids' limits."""

from __future__ import annotations

import httpx

from zohosim import LiveServer


def test_it_deletes_by_ids_and_answers_each_id_in_order(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    first, second, third = contact_ids

    answer = http.delete("/crm/v8/Contacts", params={"ids": f"{first},999999,{third}"}, headers=auth)

    assert answer.status_code == 207
    assert answer.json()["data"] == [
        {"code": "SUCCESS", "details": {"id": first}, "message": "record deleted", "status": "success"},
        {
            "code": "INVALID_DATA",
            "details": {"id": "999999"},
            "message": "record not deleted",
            "status": "error",
        },
        {"code": "SUCCESS", "details": {"id": third}, "message": "record deleted", "status": "success"},
    ]
    assert sim.state.find("Contacts", first) is None and sim.state.find("Contacts", third) is None
    assert sim.state.find("Contacts", second) is not None
    gone = http.get(f"/crm/v8/Contacts/{first}", headers=auth)
    assert gone.status_code == 204


def test_all_deleted_is_200_none_is_400_and_one_by_path(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    first, second, _ = contact_ids

    assert http.delete(f"/crm/v8/Contacts/{first}", headers=auth).status_code == 200
    again = http.delete("/crm/v8/Contacts", params={"ids": first}, headers=auth)
    assert again.status_code == 400
    assert again.json()["data"][0]["code"] == "INVALID_DATA"
    lead = sim.state.add_record("Leads", Last_Name="Lead", Email="lead@example.com")
    assert http.delete("/crm/v8/Contacts", params={"ids": lead}, headers=auth).status_code == 400
    assert (
        http.delete(
            "/crm/v8/Leads", params={"ids": f"{lead}", "wf_trigger": "false"}, headers=auth
        ).status_code
        == 200
    )
    assert sim.state.find("Leads", lead) is None
    assert sim.state.find("Contacts", second) is not None


def test_ids_are_required_and_at_most_100(http: httpx.Client, auth: dict[str, str]) -> None:
    missing = http.delete("/crm/v8/Contacts", headers=auth)
    too_many = http.delete(
        "/crm/v8/Contacts", params={"ids": ",".join(str(i) for i in range(1, 102))}, headers=auth
    )
    unknown_module = http.delete("/crm/v8/Nothing", params={"ids": "1"}, headers=auth)
    anonymous = http.delete("/crm/v8/Contacts", params={"ids": "1"})

    assert (missing.status_code, missing.json()) == (
        400,
        {
            "code": "REQUIRED_PARAM_MISSING",
            "details": {"param_name": "ids"},
            "message": "One of the expected parameter is missing",
            "status": "error",
        },
    )
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "LIMIT_EXCEEDED"
    assert too_many.json()["details"] == {"limit": "100", "param_name": "ids"}
    assert (unknown_module.status_code, unknown_module.json()["code"]) == (400, "INVALID_MODULE")
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTHENTICATION_FAILURE")
