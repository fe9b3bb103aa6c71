"""zohosim is at least as strict as Zoho on each point of issue #12 item 7 (zoho-api.md section 11)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.zohosim.conftest import mint
from zohosim import LiveServer


def _put(http: httpx.Client, auth: dict[str, str], *records: dict[str, Any]) -> httpx.Response:
    return http.put("/crm/v8/Contacts", json={"data": list(records)}, headers=auth)


def test_a_json_body_without_content_type_is_read_as_json(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    # Zoho's official SDK sends record updates and COQL queries with no Content-Type at all.
    update = http.put(
        "/crm/v8/Contacts",
        content=json.dumps({"data": [{"id": contact_ids[0], "Email_Opt_Out": True}]}).encode(),
        headers={**auth, "Content-Type": ""},
    )
    query = http.post(
        "/crm/v8/coql",
        content=json.dumps(
            {"select_query": "select Email from Contacts where Email_Opt_Out = true"}
        ).encode(),
        headers={**auth, "Content-Type": ""},
    )

    assert update.json()["data"][0]["code"] == "SUCCESS"
    assert [r["id"] for r in query.json()["data"]] == [contact_ids[0]]


def test_an_unknown_field_answers_invalid_data_for_that_record_with_its_api_name(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    resp = _put(
        http, auth, {"id": contact_ids[0], "Email_Opt_Out": True}, {"id": contact_ids[1], "No_Such_Field": 1}
    )

    ok, bad = resp.json()["data"]
    assert ok["code"] == "SUCCESS"
    assert bad["code"] == "INVALID_DATA"
    assert bad["message"] == "the field api name given seems to be invalid"
    assert bad["details"] == {"api_name": "No_Such_Field", "json_path": "$.data[1].No_Such_Field"}


def test_a_record_in_stop_processing_answers_cannot_process(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put("/_sim/faults", json={"stop_processing": {"record_ids": [contact_ids[0]]}})

    resp = _put(http, auth, {"id": contact_ids[0], "Email_Opt_Out": True})

    assert resp.json()["data"][0]["code"] == "CANNOT_PROCESS"


def test_a_bad_token_can_answer_authentication_failure(sim: LiveServer, http: httpx.Client) -> None:
    sim.state.config.invalid_token_code = "AUTHENTICATION_FAILURE"

    resp = http.get("/crm/v8/Contacts/1", headers={"Authorization": "Zoho-oauthtoken nope"})

    assert resp.status_code == 401
    assert resp.json()["code"] == "AUTHENTICATION_FAILURE"


def test_a_missing_scope_answers_oauth_scope_mismatch_for_the_calls_that_need_it(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    http.put("/_sim/faults", json={"missing_scope": {"scope": "ZohoCRM.coql.READ"}})

    coql = http.post(
        "/crm/v8/coql", json={"select_query": "select Email from Contacts limit 1"}, headers=auth
    )
    record = http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth)

    assert coql.status_code == 401 and coql.json()["code"] == "OAUTH_SCOPE_MISMATCH"
    assert record.status_code == 200


def test_field_metadata_tells_the_users_read_only_from_everyones(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    http.put("/_sim/faults", json={"field_no_permission": {"field": "SMS_Opt_In"}})

    fields = {
        f["api_name"]: f
        for f in http.get("/crm/v8/settings/fields", params={"module": "Contacts"}, headers=auth).json()[
            "fields"
        ]
    }

    assert fields["SMS_Opt_In"]["read_only"] is True and fields["SMS_Opt_In"]["field_read_only"] is False
    assert fields["SMS_Opt_In"]["operation_type"]["api_update"] is True
    assert fields["Modified_Time"]["field_read_only"] is True
    assert "api_editable" not in fields["Email_Opt_Out"]  # Zoho has no such key


def test_consent_sub_fields_have_their_own_metadata_with_the_orgs_picklists(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.config.consent_basis_values = ["Consent - Pending", "Consent - Obtained"]
    sim.state.config.consent_through_values = ["Email", "Call"]
    http.put(
        "/_sim/faults", json={"field_no_permission": {"field": "Data_Processing_Basis_Details.Consent_Date"}}
    )

    meta = {
        f["api_name"]: f
        for f in http.get("/crm/v8/settings/fields", params={"module": "Consents"}, headers=auth).json()[
            "fields"
        ]
    }
    refused = _put(
        http, auth, {"id": contact_ids[0], "Data_Processing_Basis_Details": {"Consent_Through": "Mobile app"}}
    )
    accepted = _put(
        http,
        auth,
        {
            "id": contact_ids[0],
            "Data_Processing_Basis_Details": {
                "Consent_Through": "Call",
                "Data_Processing_Basis": "Consent - Obtained",
            },
        },
    )

    assert [v["actual_value"] for v in meta["Data_Processing_Basis"]["pick_list_values"]] == [
        "Consent - Pending",
        "Consent - Obtained",
    ]
    assert [v["actual_value"] for v in meta["Consent_Through"]["pick_list_values"]] == ["Email", "Call"]
    assert meta["Consent_Date"]["read_only"] is True and meta["Consent_Date"]["field_read_only"] is False
    assert meta["id"]["field_read_only"] is True
    assert refused.json()["data"][0]["code"] == "INVALID_DATA"
    assert refused.json()["data"][0]["details"]["api_name"] == "Consent_Through"
    assert accepted.json()["data"][0]["code"] == "SUCCESS"


def test_an_update_of_more_than_ten_records_is_a_complex_call(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.config.sub_concurrency_limit = 0  # no room for any complex call

    ten = _put(http, auth, *[{"id": contact_ids[0], "Email_Opt_Out": True}] * 10)
    eleven = _put(http, auth, *[{"id": contact_ids[0], "Email_Opt_Out": True}] * 11)
    sorted_read = http.get(
        "/crm/v8/Contacts", params={"fields": "Email", "sort_by": "Modified_Time"}, headers=auth
    )
    plain_read = http.get("/crm/v8/Contacts", params={"fields": "Email"}, headers=auth)

    assert ten.status_code == 200
    assert eleven.status_code == 429
    assert sorted_read.status_code == 429
    assert plain_read.status_code == 200


def test_bulk_read_download_names_its_file_in_a_quoted_filename(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.config.bulk_read_polls_to_complete = 0
    job_id = http.post(
        "/crm/bulk/v8/read", json={"query": {"module": {"api_name": "Contacts"}}}, headers=auth
    ).json()["data"][0]["details"]["id"]
    http.get(f"/crm/bulk/v8/read/{job_id}", headers=auth)

    download = http.get(f"/crm/bulk/v8/read/{job_id}/result", headers=auth)

    assert download.headers["Content-Disposition"] == f'attachment; filename="{job_id}.zip"'


def test_bulk_read_past_the_first_page_wants_page_token_not_page(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.config.bulk_read_polls_to_complete = 0
    sim.state.config.bulk_read_per_page = 2
    sim.state.config.bulk_read_page_limit_rows = 2
    query: dict[str, Any] = {"module": {"api_name": "Contacts"}, "fields": ["Email"]}

    by_page = http.post("/crm/bulk/v8/read", json={"query": {**query, "page": 2}}, headers=auth)
    first = http.post("/crm/bulk/v8/read", json={"query": query}, headers=auth).json()["data"][0]["details"][
        "id"
    ]
    result = http.get(f"/crm/bulk/v8/read/{first}", headers=auth).json()["data"][0]["result"]
    second = http.post(
        "/crm/bulk/v8/read", json={"query": {**query, "page_token": result["next_page_token"]}}, headers=auth
    ).json()["data"][0]["details"]["id"]
    last = http.get(f"/crm/bulk/v8/read/{second}", headers=auth).json()["data"][0]["result"]

    assert by_page.status_code == 400 and by_page.json()["code"] == "PAGE_RANGE_EXCEEDED"
    assert result["count"] == 2 and result["more_records"] is True and result["next_page_token"]
    assert last["count"] == 1 and last["more_records"] is False and last["next_page_token"] is None


def test_coql_user_lookups_show_the_last_name_only(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    rows = http.post(
        "/crm/v8/coql", json={"select_query": "select Modified_By from Contacts limit 1"}, headers=auth
    ).json()["data"]
    record = http.get(f"/crm/v8/Contacts/{contact_ids[0]}", headers=auth).json()["data"][0]

    assert rows[0]["Modified_By"]["name"] == "Agent"
    assert record["Modified_By"]["name"] == "Maria Agent"


def test_a_token_minted_again_still_works_after_the_fault_is_cleared(http: httpx.Client) -> None:
    # (the scope fault is per org, not per token)
    http.put("/_sim/faults", json={"missing_scope": {"scope": "ZohoCRM.modules.ALL"}})
    http.delete("/_sim/faults")
    token = mint(http)

    assert http.get("/crm/v8/org", headers={"Authorization": f"Zoho-oauthtoken {token}"}).status_code == 200
