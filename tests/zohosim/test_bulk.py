from __future__ import annotations

import csv
import io
import zipfile

import httpx

from zohosim import LiveServer


def test_bulk_read_job_runs_to_a_zipped_csv(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.find("Contacts", contact_ids[2]).Email_Opt_Out = True  # type: ignore[union-attr]
    body = {
        "query": {
            "module": {"api_name": "Contacts"},
            "fields": ["Email", "Email_Opt_Out"],
            "criteria": {"field": {"api_name": "Email_Opt_Out"}, "comparator": "equal", "value": False},
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
