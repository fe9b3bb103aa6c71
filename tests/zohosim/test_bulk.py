from __future__ import annotations

import csv
import io
import zipfile

import httpx
import pytest

from zohosim import LiveServer


def test_bulk_read_job_runs_to_a_zipped_csv(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.find("Contacts", contact_ids[2]).Email_Opt_Out = True  # type: ignore[union-attr]
    body = {
        "query": {
            "module": {"api_name": "Contacts"},
            "fields": ["Email", "Email_Opt_Out"],
            "criteria": {
                "group_operator": "and",
                "group": [{"field": {"api_name": "Email_Opt_Out"}, "comparator": "equal", "value": False}],
            },
        },
        "file_type": "csv",
    }

    created = http.post("/crm/bulk/v8/read", json=body, headers=auth)
    job_id = created.json()["data"][0]["details"]["id"]
    states = [http.get(f"/crm/bulk/v8/read/{job_id}", headers=auth).json()["data"][0] for _ in range(2)]
    download = http.get(f"/crm/bulk/v8/read/{job_id}/result", headers=auth)

    assert created.status_code == 201
    assert created.json()["data"][0]["code"] == "ADDED_SUCCESSFULLY"
    assert created.json()["data"][0]["details"]["state"] == "ADDED"
    assert [s["state"] for s in states] == ["IN PROGRESS", "COMPLETED"]
    result = states[1]["result"]
    assert result["count"] == 2 and result["per_page"] == 200_000 and result["more_records"] is False
    assert result["download_url"] == f"/crm/bulk/v8/read/{job_id}/result"
    assert download.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
        assert zf.namelist() == [f"{job_id}.csv"]
        rows = list(csv.reader(io.StringIO(zf.read(f"{job_id}.csv").decode())))
    assert rows[0] == ["id", "Email", "Email_Opt_Out"]
    assert rows[1:] == [
        [contact_ids[0], "p0@example.com", "false"],
        [contact_ids[1], "p1@example.com", "false"],
    ]


@pytest.mark.parametrize(
    "criteria",
    [
        # One condition alone, not in a group (v8 requires group_operator and group)
        {"field": {"api_name": "Email_Opt_Out"}, "comparator": "equal", "value": False},
        # The field named bare, as v2 did
        {
            "group_operator": "and",
            "group": [{"api_name": "Email_Opt_Out", "comparator": "equal", "value": False}],
        },
        {
            "group_operator": "xor",
            "group": [{"field": {"api_name": "Email"}, "comparator": "equal", "value": "a"}],
        },
        {"group_operator": "and", "group": []},
        {
            "group_operator": "and",
            "group": [{"field": {"api_name": "Nope"}, "comparator": "equal", "value": "a"}],
        },
        {
            "group_operator": "and",
            "group": [{"field": {"api_name": "Email"}, "comparator": "like", "value": "a"}],
        },
    ],
)
def test_bulk_read_criteria_not_in_v8_shape_are_refused(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], criteria: dict[str, object]
) -> None:
    body = {"query": {"module": {"api_name": "Contacts"}, "criteria": criteria}}

    refused = http.post("/crm/bulk/v8/read", json=body, headers=auth)

    assert refused.status_code == 400
    assert refused.json()["code"] == "INVALID_DATA"
    assert refused.json()["details"]["json_path"] == "$.query.criteria"


def test_more_than_ten_downloads_a_minute_get_429(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.config.bulk_read_polls_to_complete = 0
    job_id = http.post(
        "/crm/bulk/v8/read", json={"query": {"module": {"api_name": "Contacts"}}}, headers=auth
    ).json()["data"][0]["details"]["id"]
    http.get(f"/crm/bulk/v8/read/{job_id}", headers=auth)

    statuses = [http.get(f"/crm/bulk/v8/read/{job_id}/result", headers=auth).status_code for _ in range(11)]

    assert statuses == [200] * 10 + [429]


def test_bulk_read_pages_hold_every_record_once_with_zohos_cells(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    state = sim.state
    state.config.bulk_read_polls_to_complete = 0
    state.config.bulk_read_per_page = 2
    ids = [
        state.add_contact(
            Email="a@example.com",
            Last_Name="A",
            SMS_Opt_In=True,
            Data_Processing_Basis_Details={"Consent_Date": "2026-01-02"},
        ),
        state.add_contact(Email="b@example.com", Last_Name="B"),
        state.add_contact(Email="c@example.com", Last_Name="C", Email_Opt_Out=True),
        state.add_contact(Email="d@example.com", Last_Name="D"),
    ]
    state.delete_record("Contacts", ids[1])
    fields = [
        "Email",
        "Email_Opt_Out",
        "SMS_Opt_In",
        "Data_Processing_Basis_Details.Consent_Date",
        "Modified_By",
    ]

    pages = []
    for page in (1, 2):
        job_id = http.post(
            "/crm/bulk/v8/read",
            json={"query": {"module": {"api_name": "Contacts"}, "fields": fields, "page": page}},
            headers=auth,
        ).json()["data"][0]["details"]["id"]
        result = http.get(f"/crm/bulk/v8/read/{job_id}", headers=auth).json()["data"][0]["result"]
        download = http.get(f"/crm/bulk/v8/read/{job_id}/result", headers=auth)
        with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
            pages.append((result, list(csv.reader(io.StringIO(zf.read(f"{job_id}.csv").decode())))))

    (first, rows1), (second, rows2) = pages
    assert (first["count"], first["more_records"], second["count"], second["more_records"]) == (
        2,
        True,
        1,
        False,
    )
    assert rows1[0] == rows2[0] == ["id", *fields]
    agent = "5725767000000000003"
    assert rows1[1:] == [
        [ids[0], "a@example.com", "false", "true", "2026-01-02", agent],
        [ids[2], "c@example.com", "true", "", "", agent],
    ]
    assert rows2[1:] == [[ids[3], "d@example.com", "false", "", "", agent]]
