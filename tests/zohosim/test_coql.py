from __future__ import annotations

import httpx

from zohosim import LiveServer, seed


def coql(http: httpx.Client, auth: dict[str, str], query: str) -> httpx.Response:
    return http.post("/crm/v8/coql", json={"select_query": query}, headers=auth)


def test_keyset_paging_reads_every_contact_once(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    seed.generate(contacts=4500, lists=0, state=sim.state)
    seen: list[str] = []
    last = "0"
    while True:
        resp = coql(
            http,
            auth,
            f"select Email, Email_Opt_Out from Contacts where id > '{last}' order by id asc limit 2000",
        )
        if resp.status_code == 204:
            break
        body = resp.json()
        seen.extend(r["id"] for r in body["data"])
        assert set(body["data"][0]) == {"id", "Email", "Email_Opt_Out"}
        assert body["info"]["count"] == len(body["data"])
        last = body["data"][-1]["id"]
        if not body["info"]["more_records"]:
            break

    assert len(seen) == 4500 == len(set(seen))
    assert seen == sorted(seen, key=int)


def test_where_filters_and_offset(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    sim.state.find("Contacts", contact_ids[1]).Email_Opt_Out = True  # type: ignore[union-attr]
    opted = coql(http, auth, "select Email from Contacts where Email_Opt_Out = true and Last_Name = 'Person'")
    by_email = coql(http, auth, "select Last_Name from Contacts where Email = 'P2@example.com'")
    since = coql(
        http,
        auth,
        "select Email from Contacts where Modified_Time > '2000-01-01T00:00:00+00:00' limit 1 offset 2",
    )
    none = coql(http, auth, "select Email from Contacts where Modified_Time > '2999-01-01T00:00:00+00:00'")

    assert [r["id"] for r in opted.json()["data"]] == [contact_ids[1]]
    assert [r["id"] for r in by_email.json()["data"]] == [contact_ids[2]]
    assert [r["id"] for r in since.json()["data"]] == [contact_ids[2]]
    assert since.json()["info"]["more_records"] is False
    assert (none.status_code, none.content) == (204, b"")


def test_syntax_errors_point_at_the_token(http: httpx.Client, auth: dict[str, str]) -> None:
    resp = coql(http, auth, "select Email form Contacts")

    assert resp.status_code == 400
    assert resp.json() == {
        "code": "SYNTAX_ERROR",
        "details": {"line": 1, "column": 14, "near": "form"},
        "message": "error occurred while parsing the query",
        "status": "error",
    }


def test_limits(http: httpx.Client, auth: dict[str, str]) -> None:
    too_big = coql(http, auth, "select Email from Contacts limit 2001")
    too_far = coql(http, auth, "select Email from Contacts limit 2000 offset 98001")
    bad_field = coql(http, auth, "select Nope from Contacts")

    assert (too_big.status_code, too_big.json()["code"]) == (400, "LIMIT_EXCEEDED")
    assert (too_far.status_code, too_far.json()["code"]) == (400, "LIMIT_EXCEEDED")
    assert (bad_field.status_code, bad_field.json()["code"]) == (400, "INVALID_QUERY")


def test_coql_credits_follow_the_limit(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], contact_ids: list[str]
) -> None:
    for limit in (200, 1000, 2000):
        coql(http, auth, f"select Email from Contacts limit {limit}")

    assert [c["credits"] for c in sim.state.calls if c["op"] == "crm.coql"] == [1, 2, 3]


def test_keyset_pages_render_every_kind_of_field_and_miss_deleted_records(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    state = sim.state
    first = state.add_contact(
        Email="a@example.com",
        Last_Name="A",
        SMS_Opt_In=True,
        Data_Processing_Basis_Details={"Contact_Through_Email": True},
    )
    deleted = state.add_contact(Email="b@example.com", Last_Name="B")
    last = state.add_contact(Email="c@example.com", Last_Name="C")
    state.delete_record("Contacts", deleted)

    resp = coql(
        http,
        auth,
        "select Email, SMS_Opt_In, Data_Processing_Basis_Details.Contact_Through_Email, Modified_By, "
        "Modified_Time from Contacts where id > '0' order by id asc limit 2000",
    )

    rows = resp.json()["data"]
    assert [r["id"] for r in rows] == [first, last]
    assert rows[0]["SMS_Opt_In"] is True and rows[1]["SMS_Opt_In"] is None
    assert rows[0]["Data_Processing_Basis_Details.Contact_Through_Email"] is True
    assert rows[1]["Data_Processing_Basis_Details.Contact_Through_Email"] is None
    # COQL shows a user lookup by its last name only (v7+): identify users by id.
    assert rows[0]["Modified_By"] == {"name": "Agent", "id": "5725767000000000003"}
    assert rows[0]["Modified_Time"] == state.fmt(state.find("Contacts", first).modified)  # type: ignore[union-attr]
    assert resp.json()["info"] == {"count": 2, "more_records": False}
