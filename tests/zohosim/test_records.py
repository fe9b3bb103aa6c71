from __future__ import annotations

import httpx

from zohosim import LiveServer


def test_update_answers_one_entry_per_input_in_input_order(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    a, b, _ = contact_ids
    body = {
        "data": [
            {"id": a, "Email_Opt_Out": True},
            {"id": "5725767000999999999", "Email_Opt_Out": True},
            {"Email_Opt_Out": True},
            {"id": b, "Email_Opt_Out": "yes"},
            {"id": b, "No_Such_Field": 1},
            {"id": b, "Data_Processing_Basis_Details": {"Contact_Through_Phone": "no"}},
        ]
    }

    resp = http.put("/crm/v8/Contacts", json=body, headers=auth)

    entries = resp.json()["data"]
    assert resp.status_code == 207
    assert [e["code"] for e in entries] == [
        "SUCCESS", "INVALID_DATA", "MANDATORY_NOT_FOUND", "INVALID_DATA", "INVALID_DATA", "INVALID_DATA",
    ]  # fmt: skip
    ok = entries[0]
    assert ok["status"] == "success" and ok["message"] == "record updated"
    assert ok["details"]["id"] == a
    assert ok["details"]["Modified_By"] == {"name": "Consent Desk API", "id": "5725767000000000001"}
    assert ok["details"]["Modified_Time"].endswith("+00:00")
    assert set(ok["details"]) == {"id", "Modified_Time", "Modified_By", "Created_Time", "Created_By"}
    assert entries[1]["details"] == {"id": "5725767000999999999"}
    assert entries[1]["message"] == "the id given seems to be invalid"
    assert entries[3]["details"] == {
        "expected_data_type": "boolean",
        "api_name": "Email_Opt_Out",
        "json_path": "$.data[3].Email_Opt_Out",
    }
    assert entries[4]["details"]["api_name"] == "No_Such_Field"
    assert entries[5]["details"]["api_name"] == "Contact_Through_Phone"
    assert entries[5]["details"]["expected_data_type"] == "boolean"
    assert sim.state.find("Contacts", b).Email_Opt_Out is False  # type: ignore[union-attr]


def test_all_success_is_200_and_all_failures_take_their_code_status(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    ok = http.put(
        "/crm/v8/Contacts",
        json={"data": [{"id": i, "Email_Opt_Out": True} for i in contact_ids]},
        headers=auth,
    )
    bad = http.put("/crm/v8/Contacts", json={"data": [{"id": "1"}, {"id": "2"}]}, headers=auth)

    assert ok.status_code == 200
    assert bad.status_code == 400


def test_it_rejects_more_than_100_records(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    resp = http.put("/crm/v8/Contacts", json={"data": [{"id": contact_ids[0]}] * 101}, headers=auth)

    assert resp.status_code == 400
    assert resp.json()["code"] == "LIMIT_EXCEEDED"


def test_consent_details_with_their_id_merge_into_the_stored_consent_record(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    rid = contact_ids[0]
    http.put(
        f"/crm/v8/Contacts/{rid}",
        json={"data": [{"Data_Processing_Basis_Details": {"Contact_Through_Email": True}}]},
        headers=auth,
    )
    (consent_id,) = sim.state.consent_records_of(rid)
    for _ in range(3):
        http.put(
            "/crm/v8/Contacts",
            json={
                "data": [
                    {
                        "id": rid,
                        "Data_Processing_Basis": "Obtained",
                        "Data_Processing_Basis_Details": {"id": consent_id, "Contact_Through_Phone": False},
                    }
                ]
            },
            headers=auth,
        )

    got = http.get(
        f"/crm/v8/Contacts/{rid}",
        params={"fields": "Data_Processing_Basis,Data_Processing_Basis_Details"},
        headers=auth,
    )

    details = got.json()["data"][0]["Data_Processing_Basis_Details"]
    assert details["Contact_Through_Email"] is True
    assert details["Contact_Through_Phone"] is False
    assert details["id"] == consent_id
    assert sim.state.consent_records_of(rid) == [consent_id]  # repeated pushes leave one
    assert got.json()["data"][0]["Data_Processing_Basis"] == "Obtained"


def test_consent_details_without_their_id_make_a_new_consent_record_each_time(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    rid = contact_ids[0]
    for _ in range(2):
        http.put(
            f"/crm/v8/Contacts/{rid}",
            json={"data": [{"Data_Processing_Basis_Details": {"Contact_Through_Email": True}}]},
            headers=auth,
        )

    assert len(sim.state.consent_records_of(rid)) == 2


def test_consent_details_with_another_records_id_are_refused(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    resp = http.put(
        f"/crm/v8/Contacts/{contact_ids[0]}",
        json={"data": [{"Data_Processing_Basis_Details": {"id": "123", "Contact_Through_Email": True}}]},
        headers=auth,
    )

    entry = resp.json()["data"][0]
    assert entry["code"] == "INVALID_DATA"
    assert entry["details"]["json_path"] == "$.data[0].Data_Processing_Basis_Details.id"


def test_if_unmodified_since_gives_412_when_the_record_changed(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    rid = contact_ids[0]
    before = sim.state.fmt(sim.state.now())
    sim.state.clock.advance(5)
    http.post(f"/_sim/contacts/{rid}", json={"fields": {"Phone": "+49301"}})

    stale = http.put(
        "/crm/v8/Contacts",
        json={"data": [{"id": rid, "Email_Opt_Out": True}]},
        headers={**auth, "If-Unmodified-Since": before},
    )
    fresh = http.put(
        "/crm/v8/Contacts",
        json={"data": [{"id": rid, "Email_Opt_Out": True}]},
        headers={**auth, "If-Unmodified-Since": sim.state.fmt(sim.state.now())},
    )

    assert stale.status_code == 412
    assert stale.json()["data"][0]["code"] == "ALREADY_MODIFIED"
    assert fresh.status_code == 200


def test_get_by_id_list_and_paging(
    http: httpx.Client, sim: LiveServer, auth: dict[str, str], contact_ids: list[str]
) -> None:
    one = http.get(f"/crm/v8/Contacts/{contact_ids[1]}", params={"fields": "Email"}, headers=auth)
    by_ids = http.get(
        "/crm/v8/Contacts",
        params={"ids": ",".join(contact_ids[:2]), "fields": "Email,Email_Opt_Out"},
        headers=auth,
    )
    page = http.get("/crm/v8/Contacts", params={"fields": "Email", "per_page": 2}, headers=auth)
    token = page.json()["info"]["next_page_token"]
    page2 = http.get(
        "/crm/v8/Contacts", params={"fields": "Email", "per_page": 2, "page_token": token}, headers=auth
    )

    assert one.json()["data"] == [{"id": contact_ids[1], "Email": "p1@example.com"}]
    assert [r["id"] for r in by_ids.json()["data"]] == contact_ids[:2]
    assert page.json()["info"]["more_records"] is True
    assert [r["id"] for r in page2.json()["data"]] == contact_ids[2:]
    assert page2.json()["info"]["more_records"] is False


def test_list_errors_have_the_documented_shapes(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    no_fields = http.get("/crm/v8/Contacts", headers=auth)
    too_many_ids = http.get(
        "/crm/v8/Contacts",
        params={"ids": ",".join(str(i) for i in range(101)), "fields": "Email"},
        headers=auth,
    )
    too_deep = http.get(
        "/crm/v8/Contacts", params={"fields": "Email", "page": 11, "per_page": 200}, headers=auth
    )
    bad_module = http.get("/crm/v8/Deals", params={"fields": "Email"}, headers=auth)

    assert (no_fields.status_code, no_fields.json()["code"]) == (400, "REQUIRED_PARAM_MISSING")
    assert too_many_ids.json() == {
        "code": "LIMIT_EXCEEDED", "details": {"limit": "100", "param_name": "ids"}, "message": "limit exceeded", "status": "error",
    }  # fmt: skip
    assert too_deep.status_code == 400
    assert too_deep.json() == {
        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
        "details": {"limit": 2000},
        "message": "You can only get the first 2000 records without using page_token param",
        "status": "error",
    }
    assert bad_module.json()["code"] == "INVALID_MODULE"


def test_missing_record_and_empty_search_are_204_with_empty_body(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    missing = http.get("/crm/v8/Contacts/5725767000999999999", headers=auth)
    search = http.get("/crm/v8/Contacts/search", params={"email": "nobody@example.com"}, headers=auth)

    assert (missing.status_code, missing.content) == (204, b"")
    assert (search.status_code, search.content) == (204, b"")


def test_search_by_email_and_criteria(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    by_email = http.get("/crm/v8/Contacts/search", params={"email": "P1@example.com"}, headers=auth)
    by_criteria = http.get(
        "/crm/v8/Contacts/search",
        params={"criteria": "(Email:equals:p2@example.com)and(Last_Name:equals:Person)"},
        headers=auth,
    )
    bad = http.get("/crm/v8/Contacts/search", params={"criteria": "Email=x"}, headers=auth)

    assert [r["id"] for r in by_email.json()["data"]] == [contact_ids[1]]
    assert [r["id"] for r in by_criteria.json()["data"]] == [contact_ids[2]]
    assert by_criteria.json()["info"]["more_records"] is False
    assert bad.status_code == 400


def test_create_and_upsert(
    http: httpx.Client, sim: LiveServer, auth: dict[str, str], contact_ids: list[str]
) -> None:
    created = http.post(
        "/crm/v8/Contacts", json={"data": [{"Last_Name": "New", "Email": "new@example.com"}]}, headers=auth
    )
    no_name = http.post("/crm/v8/Contacts", json={"data": [{"Email": "x@example.com"}]}, headers=auth)
    upsert = http.post(
        "/crm/v8/Contacts/upsert",
        json={
            "data": [
                {"Last_Name": "P", "Email": "p0@example.com", "Email_Opt_Out": True},
                {"Last_Name": "Q", "Email": "q@example.com"},
            ],
            "duplicate_check_fields": ["Email"],
        },
        headers=auth,
    )

    assert created.status_code == 201
    assert created.json()["data"][0]["message"] == "record added"
    assert no_name.json()["data"][0]["code"] == "MANDATORY_NOT_FOUND"
    entries = upsert.json()["data"]
    assert [e["action"] for e in entries] == ["update", "insert"]
    assert entries[0]["details"]["id"] == contact_ids[0]
    assert entries[0]["duplicate_field"] == "Email"
    assert len(sim.state.modules["Contacts"]) == 5


def test_metadata_user_and_org(http: httpx.Client, auth: dict[str, str]) -> None:
    fields = http.get("/crm/v8/settings/fields", params={"module": "Contacts"}, headers=auth).json()["fields"]
    by_name = {f["api_name"]: f for f in fields}
    me = http.get("/crm/v8/users", params={"type": "CurrentUser"}, headers=auth).json()["users"]
    org = http.get("/crm/v8/org", headers=auth).json()["org"][0]

    assert by_name["Email_Opt_Out"]["data_type"] == "boolean"
    assert by_name["Data_Processing_Basis_Details"]["data_type"] == "consent_lookup"
    assert {"SMS_Opt_In", "Profiling_Consent", "Third_Party_Sharing_Consent", "Email_Bounce_Reason"} <= set(
        by_name
    )
    assert by_name["Modified_Time"]["read_only"] is True
    assert by_name["Email_Opt_Out"]["profiles"][0] == {
        "permission_type": "read_write",
        "name": "Administrator",
        "id": me[0]["profile"]["id"],
    }
    assert me[0]["email"] == "api@consentdesk.example" and me[0]["status"] == "active"
    assert org["privacy_settings"] is True


def test_any_api_version_from_v2_to_v8_is_accepted(
    http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    for version in ("v2", "v2.1", "v3", "v6", "v8"):
        assert http.get(f"/crm/{version}/Contacts/{contact_ids[0]}", headers=auth).status_code == 200
    assert (
        http.get(f"/crm/v9/Contacts/{contact_ids[0]}", headers=auth).json()["code"] == "INVALID_URL_PATTERN"
    )


def test_leads_module_is_served_too(sim: LiveServer, http: httpx.Client, auth: dict[str, str]) -> None:
    lead = sim.state.add_record("Leads", Last_Name="Lead", Email="lead@example.com")

    resp = http.put("/crm/v8/Leads", json={"data": [{"id": lead, "Email_Opt_Out": True}]}, headers=auth)

    assert resp.json()["data"][0]["code"] == "SUCCESS"
    assert sim.state.find("Leads", lead).Email_Opt_Out is True  # type: ignore[union-attr]
