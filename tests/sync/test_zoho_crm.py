"""CrmClient against zohosim over real HTTP: every operation, its results and its errors."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache.backends.locmem import LocMemCache
from pytest_django.fixtures import Settings

from sync.models import ZohoCall
from sync.zoho import ZohoClient, ZohoConfig, ZohoPermanentError, ZohoRateLimited
from sync.zoho.errors import ZohoTransientError
from tests.sync.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_REFRESH_TOKEN, Sim, make_client


def seed_contacts(sim: Sim, *rows: dict[str, object]) -> list[str]:
    return [str(i) for i in sim.seed(contacts=list(rows))["contacts"]]


# --- update ------------------------------------------------------------------


def test_update_returns_one_result_per_record_in_input_order_and_its_call(zoho: ZohoClient, sim: Sim) -> None:
    a, b = seed_contacts(sim, {"Last_Name": "A", "Email": "a@example.com"}, {"Last_Name": "B"})

    update = zoho.crm.update(
        [
            {"id": a, "Email_Opt_Out": True},
            {"id": "5725767999999999000", "Email_Opt_Out": True},  # unknown id
            {"Email_Opt_Out": True},  # no id
            {"id": b, "Email_Opt_Out": "yes"},  # not a boolean
        ]
    )

    assert [r.code for r in update.results] == [
        "SUCCESS",
        "INVALID_DATA",
        "MANDATORY_NOT_FOUND",
        "INVALID_DATA",
    ]
    ok, unknown, no_id, bad_type = update.results
    assert ok.ok and ok.permanent is None and ok.record_id == a
    assert ok.modified_time and ok.modified_by and ok.modified_by["id"]
    assert unknown.permanent is True and unknown.record_id == "5725767999999999000"
    assert no_id.permanent is True and no_id.details["api_name"] == "id"
    assert bad_type.permanent is True and bad_type.details["expected_data_type"] == "boolean"
    assert sim.contact(a)["Email_Opt_Out"] is True
    assert sim.contact(b)["Email_Opt_Out"] is False
    row = ZohoCall.objects.get(operation="crm.update")
    assert update.call_id == row.pk
    assert (row.method, row.records, row.credits, row.outcome) == ("PUT", 4, 1, "ok")
    assert row.zoho_code == "INVALID_DATA"
    assert "3 of 4 records failed" in row.error


def test_update_sends_trigger_only_when_asked(sim: Sim, db: None) -> None:
    import json

    import httpx

    bodies: list[dict[str, object]] = []

    def hook(request: httpx.Request) -> None:
        if request.method == "PUT":
            bodies.append(json.loads(request.content))

    http = httpx.Client(event_hooks={"request": [hook]})
    client = make_client(sim, http=http)
    (rid,) = seed_contacts(sim, {"Last_Name": "A"})

    client.crm.update([{"id": rid, "Email_Opt_Out": True}])
    client.crm.update([{"id": rid, "Email_Opt_Out": False}], trigger=[])

    assert "trigger" not in bodies[0]  # Zoho's default: workflow, approval, blueprint run
    assert bodies[1]["trigger"] == []
    http.close()


def test_update_of_one_failing_record_is_a_result_not_an_exception(zoho: ZohoClient, sim: Sim) -> None:
    results = zoho.crm.update([{"id": "5725767999999999000", "Email_Opt_Out": True}]).results

    assert results[0].code == "INVALID_DATA"
    assert results[0].permanent is True


def test_update_refuses_more_than_100_records_before_sending(zoho: ZohoClient, sim: Sim) -> None:
    with pytest.raises(ZohoPermanentError) as caught:
        zoho.crm.update([{"id": str(5725767000000000000 + i)} for i in range(101)])

    assert caught.value.code == "LIMIT_EXCEEDED"
    assert sim.calls("crm.update") == []
    assert not ZohoCall.objects.filter(operation="crm.update").exists()


def test_update_of_an_unknown_module_is_permanent(zoho: ZohoClient, sim: Sim) -> None:
    with pytest.raises(ZohoPermanentError) as caught:
        zoho.crm.update([{"id": "5725767000000000001"}], module="Unicorns")

    assert caught.value.code == "INVALID_MODULE"
    assert caught.value.http_status == 400


def test_a_field_without_permission_is_a_permanent_record_error(zoho: ZohoClient, sim: Sim) -> None:
    (rid,) = seed_contacts(sim, {"Last_Name": "A"})
    sim.fault("field_no_permission", field="Email_Opt_Out", mode="error")

    (result,) = zoho.crm.update([{"id": rid, "Email_Opt_Out": True}]).results

    assert result.code == "NO_PERMISSION"
    assert result.permanent is True
    assert result.details["api_name"] == "Email_Opt_Out"


def test_a_silently_ignored_field_reports_success_but_changes_nothing(zoho: ZohoClient, sim: Sim) -> None:
    (rid,) = seed_contacts(sim, {"Last_Name": "A"})
    sim.fault("field_no_permission", field="Email_Opt_Out", mode="silent")

    (result,) = zoho.crm.update([{"id": rid, "Email_Opt_Out": True}]).results

    assert result.ok  # what Zoho says...
    assert zoho.crm.get(rid)["Email_Opt_Out"] is False  # ...and what the read-back shows
    fields = zoho.crm.fields("Contacts", profile_id=zoho.crm.current_user().profile_id)
    assert fields["Email_Opt_Out"].api_editable is False


def test_a_silent_noop_reports_success_but_changes_nothing(zoho: ZohoClient, sim: Sim) -> None:
    (rid,) = seed_contacts(sim, {"Last_Name": "A"})
    sim.fault("silent_noop", ratio=1.0)

    (result,) = zoho.crm.update([{"id": rid, "Email_Opt_Out": True}]).results

    assert result.ok
    assert zoho.crm.get(rid)["Email_Opt_Out"] is False


def test_a_workflow_reset_shows_in_the_read_back(zoho: ZohoClient, sim: Sim) -> None:
    (rid,) = seed_contacts(sim, {"Last_Name": "A"})
    sim.fault("workflow_reset", field="Email_Opt_Out", value=False)

    (result,) = zoho.crm.update([{"id": rid, "Email_Opt_Out": True}]).results
    record = zoho.crm.get(rid)

    assert result.ok
    assert record is not None
    assert record["Email_Opt_Out"] is False
    assert record["Modified_By"]["id"] != zoho.crm.current_user().id


# --- reads -------------------------------------------------------------------


def test_get_returns_the_record_or_none(zoho: ZohoClient, sim: Sim) -> None:
    (rid,) = seed_contacts(sim, {"Last_Name": "A", "Email": "a@example.com"})

    record = zoho.crm.get(rid)

    assert record is not None and record["id"] == rid and record["Email"] == "a@example.com"
    assert zoho.crm.get("5725767999999999000") is None
    assert ZohoCall.objects.filter(operation="crm.get", http_status=204, outcome="ok").count() == 1


def test_get_many_reads_chosen_fields_of_up_to_100_ids(zoho: ZohoClient, sim: Sim) -> None:
    ids = seed_contacts(sim, {"Last_Name": "A", "Email": "a@example.com"}, {"Last_Name": "B"})

    rows = zoho.crm.get_many([*ids, "5725767999999999000"], ["Email", "Email_Opt_Out"])

    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert set(rows[0]) == {"id", "Email", "Email_Opt_Out"}
    assert zoho.crm.get_many(["5725767999999999000"], ["Email"]) == []
    with pytest.raises(ZohoPermanentError):
        zoho.crm.get_many([str(5725767000000000000 + i) for i in range(101)], ["Email"])


def test_search_by_email_finds_duplicates_and_handles_204(zoho: ZohoClient, sim: Sim) -> None:
    seed_contacts(
        sim,
        {"Last_Name": "A", "Email": "dup@example.com"},
        {"Last_Name": "B", "Email": "dup@example.com"},
        {"Last_Name": "C", "Email": "other@example.com"},
    )

    found = zoho.crm.search_by_email("dup@example.com")

    assert len(found) == 2
    assert zoho.crm.search_by_email("nobody@example.com") == []
    row = ZohoCall.objects.filter(operation="crm.search").order_by("-id")[0]
    assert (row.http_status, row.outcome) == (204, "ok")


def test_the_duplicate_email_fault_shows_in_the_search(zoho: ZohoClient, sim: Sim) -> None:
    (rid,) = seed_contacts(sim, {"Last_Name": "A", "Email": "one@example.com"})
    sim.fault("duplicate_email", email="one@example.com")

    found = zoho.crm.search_by_email("one@example.com")

    assert len(found) == 2
    assert rid in {r["id"] for r in found}


def test_coql_returns_rows_and_more_records(zoho: ZohoClient, sim: Sim) -> None:
    sim.seed(contacts=5)

    rows, more = zoho.crm.coql("select Email from Contacts where Email is not null limit 3")

    assert len(rows) == 3
    assert more is True
    assert ZohoCall.objects.get(operation="crm.coql").credits == 1


def test_coql_syntax_errors_are_permanent(zoho: ZohoClient, sim: Sim) -> None:
    with pytest.raises(ZohoPermanentError) as caught:
        zoho.crm.coql("selec Email frm Contacts")

    assert caught.value.code == "SYNTAX_ERROR"


@pytest.mark.parametrize(("contacts", "queries"), [(250, 3), (200, 2), (0, 1)])
def test_coql_iter_pages_by_keyset_through_every_row(
    zoho: ZohoClient, sim: Sim, contacts: int, queries: int
) -> None:
    if contacts:
        sim.seed(contacts=contacts)

    rows = list(zoho.crm.coql_iter(["Email", "Email_Opt_Out"], page_size=100))

    assert len(rows) == contacts
    assert len({r["id"] for r in rows}) == contacts
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert ZohoCall.objects.filter(operation="crm.coql").count() == queries


def test_coql_iter_with_criteria(zoho: ZohoClient, sim: Sim) -> None:
    seed_contacts(
        sim,
        {"Last_Name": "A", "Email_Opt_Out": True},
        {"Last_Name": "B", "Email_Opt_Out": False},
        {"Last_Name": "C", "Email_Opt_Out": True},
    )

    rows = list(zoho.crm.coql_iter(["Last_Name"], where="Email_Opt_Out = true"))

    assert sorted(r["Last_Name"] for r in rows) == ["A", "C"]


def test_fields_say_whether_a_field_exists_and_is_api_editable(zoho: ZohoClient, sim: Sim) -> None:
    sim.fault("field_no_permission", field="SMS_Opt_In", mode="error")
    user = zoho.crm.current_user()

    fields = zoho.crm.fields("Contacts", profile_id=user.profile_id)

    assert "Does_Not_Exist" not in fields
    assert fields["Email_Opt_Out"].api_editable is True
    assert fields["Email_Opt_Out"].read_only is False
    assert fields["Modified_Time"].read_only is True
    assert fields["Modified_Time"].api_editable is False
    assert fields["SMS_Opt_In"].api_editable is False
    assert fields["SMS_Opt_In"].custom is True


def test_fields_of_an_unknown_module_are_a_permanent_error(zoho: ZohoClient, sim: Sim) -> None:
    with pytest.raises(ZohoPermanentError):
        zoho.crm.fields("Unicorns")


def test_current_user_has_a_profile(zoho: ZohoClient, sim: Sim) -> None:
    user = zoho.crm.current_user()

    assert user.id and user.email
    assert user.profile_name == "Administrator"
    assert user.profile_id
    assert ZohoCall.objects.get(operation="crm.current_user").path == "/crm/v8/users"


def test_every_user_of_a_large_org_is_read_page_by_page(zoho: ZohoClient, sim: Sim) -> None:
    # Zoho lists 200 users a page: a workflow user on the second page is still known by name.
    already = len(sim.state.users)
    for n in range(250):
        sim.state.add_user(f"57257670001{n:05}", f"Workflow Robot {n}", f"robot{n}@example.com")

    users = zoho.crm.users()

    assert len(users) == already + 250
    assert {u.full_name for u in users} >= {"Workflow Robot 0", "Workflow Robot 249"}
    pages = [c["query"] for c in sim.calls("crm.users")]
    assert len(pages) == 2 and "page=2" in pages[1]


def test_the_api_user_id_is_asked_once_for_every_client_sharing_the_cache(sim: Sim, db: None) -> None:
    cache = LocMemCache(f"api-user-{uuid.uuid4().hex}", {})
    prefix = f"api-user-{uuid.uuid4().hex[:8]}"
    first = make_client(sim, cache=cache, cache_prefix=prefix)
    second = make_client(sim, cache=cache, cache_prefix=prefix)

    assert first.crm.api_user_id() == sim.state.api_user_id
    assert second.crm.api_user_id() == sim.state.api_user_id
    assert len(sim.calls("crm.users")) == 1
    assert make_client(sim).crm.api_user_id() == sim.state.api_user_id  # another cache asks again
    assert len(sim.calls("crm.users")) == 2


def test_the_api_user_id_setting_wins_and_spares_the_call(sim: Sim, db: None, settings: Settings) -> None:
    settings.ZOHO_API_USER_ID = "5725767000000999999"
    config = ZohoConfig.from_settings(
        client_id=SIM_CLIENT_ID,
        client_secret=SIM_CLIENT_SECRET,
        refresh_token=SIM_REFRESH_TOKEN,
        accounts_url=sim.url,
        campaigns_url=sim.url,
        cache_prefix=f"api-user-{uuid.uuid4().hex[:8]}",
    )
    client = ZohoClient(config, cache=LocMemCache(f"api-user-{uuid.uuid4().hex}", {}))

    assert client.crm.api_user_id() == "5725767000000999999"
    assert sim.calls("crm.users") == []


# --- bulk read ---------------------------------------------------------------


def test_bulk_read_creates_polls_and_streams_the_csv(zoho: ZohoClient, sim: Sim) -> None:
    sim.seed(contacts=30)

    job = zoho.crm.bulk.create(["Email", "Email_Opt_Out"])
    assert job.id and job.state == "ADDED"
    done = zoho.crm.bulk.wait(job.id, poll_s=0)
    rows = list(zoho.crm.bulk.rows(job.id))

    assert done.state == "COMPLETED"
    assert len(rows) == 30
    assert set(rows[0]) == {"id", "Email", "Email_Opt_Out"}
    assert rows[0]["Email_Opt_Out"] in ("true", "false")
    ops = list(ZohoCall.objects.order_by("id").values_list("operation", flat=True))
    assert "crm.bulk_read_create" in ops and "crm.bulk_read_poll" in ops and "crm.bulk_read_download" in ops


def test_bulk_read_polls_again_through_zoho_failures_then_gives_up_after_five_in_a_row(
    zoho: ZohoClient, sim: Sim
) -> None:
    # Zoho answers 500 to the job's status for 2.5 s of its clock; each poll waits 1 s of it
    sim.seed(contacts=5)
    job = zoho.crm.bulk.create(["Email"])
    sim.fault("server_error", ops=["bulk.read.status"], for_s=2.5)

    def tick(_seconds: float) -> None:
        sim.http.post("/_sim/clock", json={"advance_s": 1}).raise_for_status()

    done = zoho.crm.bulk.wait(job.id, poll_s=0, sleep=tick)

    # The job was not given up: polled again after each failure, then read whole
    polls = [call["status"] for call in sim.calls("bulk.read.status")]
    assert polls[:3] == [500, 500, 500] and polls[-1] == 200
    assert done.state == "COMPLETED" and len(list(zoho.crm.bulk.rows(job.id))) == 5

    # Zoho failing five polls in a row is an outage: the last failure is raised
    job = zoho.crm.bulk.create(["Email"])
    sim.fault("server_error", ops=["bulk.read.status"])
    with pytest.raises(ZohoTransientError) as raised:
        zoho.crm.bulk.wait(job.id, poll_s=0, sleep=tick)
    assert raised.value.http_status == 500
    assert [call["status"] for call in sim.calls("bulk.read.status")][len(polls) :] == [500] * 5


def test_bulk_read_with_criteria(zoho: ZohoClient, sim: Sim) -> None:
    seed_contacts(sim, {"Last_Name": "A", "Email_Opt_Out": True}, {"Last_Name": "B"})
    condition = {"field": {"api_name": "Email_Opt_Out"}, "comparator": "equal", "value": True}
    criteria = {"group_operator": "and", "group": [condition]}

    job = zoho.crm.bulk.create(["Last_Name"], criteria=criteria)
    zoho.crm.bulk.wait(job.id, poll_s=0)

    assert [r["Last_Name"] for r in zoho.crm.bulk.rows(job.id)] == ["A"]


def test_too_many_bulk_downloads_are_a_rate_limit(zoho: ZohoClient, sim: Sim) -> None:
    sim.seed(contacts=3)
    sim.config(bulk_download_limit=1)
    job = zoho.crm.bulk.create(["Email"])
    zoho.crm.bulk.wait(job.id, poll_s=0)
    assert len(list(zoho.crm.bulk.rows(job.id))) == 3

    waits: list[float] = []
    with pytest.raises(ZohoRateLimited):
        list(zoho.crm.bulk.rows(job.id, sleep=waits.append))
    # (each refused download waited out Zoho's minute before the next, three in all)
    assert waits == [60.0, 60.0]
    assert [call["status"] for call in sim.calls("bulk.read.download")] == [200, 429, 429, 429]


def test_a_bulk_read_download_zoho_fails_is_made_again_not_the_whole_read(zoho: ZohoClient, sim: Sim) -> None:
    sim.seed(contacts=4)
    job = zoho.crm.bulk.create(["Email"])
    zoho.crm.bulk.wait(job.id, poll_s=0)
    sim.fault("server_error", ops=["bulk.read.download"], nth=[1, 2])
    waits: list[float] = []

    rows = list(zoho.crm.bulk.rows(job.id, retry_s=0.5, sleep=waits.append))

    assert len(rows) == 4 and waits == [0.5, 0.5]
    assert [call["status"] for call in sim.calls("bulk.read.download")] == [500, 500, 200]
    assert [call["status"] for call in sim.calls("bulk.read.create")] == [201]


def test_bulk_read_of_an_unknown_job_is_a_permanent_error(zoho: ZohoClient, sim: Sim) -> None:
    with pytest.raises(ZohoPermanentError):
        zoho.crm.bulk.status("5725767000999999999")
