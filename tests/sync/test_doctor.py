"""`manage.py zoho_doctor` and the doctor page: each kind of setup fault is named with its fix, and
the command exits 1 on a failure, 0 when all is well. Only admins see and run the page."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command

from sync.diagnostics import zoho_diagnose
from sync.discrepancies import HINTS, discrepancy_record
from sync.models import Discrepancy
from sync.views_doctor import LAST_RUN_KEY
from sync.zoho import ZohoClient
from tests.browser import log_in

SCREENSHOTS = Path("/tmp/helpers/shots/zoho")
PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"
WORKFLOW = {"id": "5725767000000000002", "name": "Workflow: Reset phone consent"}


def doctor(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("zoho_doctor", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def failed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("[FAIL]")]


@pytest.mark.django_db
def test_a_sound_setup_passes_with_exit_code_0(sim_settings: Any) -> None:
    code, output = doctor()

    assert code == 0, output
    assert failed_lines(output) == []
    assert "[ok  ] Scope ZohoCRM.coql.READ" in output
    assert "[ok  ] Field Data_Processing_Basis_Details.Contact_Through_Email" in output
    assert "[ok  ] Consent picklists" in output


@pytest.mark.django_db
def test_a_field_the_api_user_may_not_edit_fails_with_where_to_give_permission(
    sim_settings: Any, sim: Any
) -> None:
    sim.fault("field_no_permission", fields=["SMS_Opt_In", PHONE], mode="silent")

    code, output = doctor()

    assert code == 1
    fails = failed_lines(output)
    assert [line.split(":")[0] for line in fails] == [f"[FAIL] Field {PHONE}", "[FAIL] Field SMS_Opt_In"]
    assert "read-only for this user" in fails[0]
    assert "Set Permission" in output and "Administrator" in output


@pytest.mark.django_db
def test_without_the_consent_objects_metadata_the_doctor_warns_and_checks_the_rest(
    sim_settings: Any, sim: Any
) -> None:
    sim.config(consent_metadata=False)
    sim.fault("field_no_permission", fields=["SMS_Opt_In"], mode="silent")

    code, output = doctor()

    # The Contacts fields are still checked; the consent object's keys cannot be, and say so.
    assert [line.split(":")[0] for line in failed_lines(output)] == ["[FAIL] Field SMS_Opt_In"]
    assert "[warn] The consent object's field metadata: Zoho did not give it" in output
    assert "INVALID_MODULE" in output and "pushes write no Data_Processing_Basis" in output
    assert f"Field {PHONE}" not in output and "Consent picklists" not in output
    assert code == 1


@pytest.mark.django_db
def test_the_doctor_page_counts_the_warnings(
    admin_user: Any, client_for: Any, sim_settings: Any, sim: Any
) -> None:
    cache.delete(LAST_RUN_KEY)
    sim.config(consent_metadata=False)
    client = client_for(admin_user)

    client.post("/sync/doctor/")
    page = client.get("/sync/doctor/").content.decode()

    assert "<strong>all passed</strong>, 1 with a warning," in page


@pytest.mark.django_db
def test_a_missing_scope_is_named(sim_settings: Any, sim: Any) -> None:
    sim.fault("missing_scope", scope="ZohoCRM.coql.READ")

    code, output = doctor()

    assert code == 1
    assert failed_lines(output) == [
        "[FAIL] Scope ZohoCRM.coql.READ: Missing: Zoho answered OAUTH_SCOPE_MISMATCH."
    ]
    assert "lacks the scope ZohoCRM.coql.READ" in output


@pytest.mark.django_db
def test_a_wrong_campaigns_list_key_is_named(sim_settings: Any, sim: Any) -> None:
    sim.seed(lists=[{"listkey": "good-list", "name": "Newsletter"}])
    sim_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["good-list", "no-such-list"]

    code, output = doctor()

    assert code == 1
    assert [line.split(":")[0] for line in failed_lines(output)] == ["[FAIL] Campaigns list no-such-list"]
    assert "[ok  ] Campaigns list good-list" in output
    assert "ZOHO_CAMPAIGNS_LIST_KEYS" in output


@pytest.mark.django_db
def test_a_workflow_reset_is_caught_by_the_live_probe(sim_settings: Any, sim: Any, crm: Any) -> None:
    record = crm("probe@example.com")
    sim.fault("workflow_reset", field=PHONE, value=False, delay_s=0)

    code, output = doctor("--probe-record", record, "--wait", "0")

    assert code == 1
    (line,) = failed_lines(output)
    assert line.startswith(
        f"[FAIL] Live probe on record {record}: Workflow: Reset phone consent reset {PHONE}"
    )
    assert "Workflow Rules" in output
    assert sim.contact(record)["SMS_Opt_In"] is False, "the probe put the record back"


@pytest.mark.django_db
def test_a_silent_drop_is_caught_by_the_live_probe(sim_settings: Any, sim: Any, crm: Any) -> None:
    record = crm("drop@example.com")
    sim.fault("silent_noop", record_ids=[record])

    code, output = doctor("--probe-record", record, "--wait", "0")

    assert code == 1
    assert any("silent drop" in line for line in failed_lines(output))


@pytest.mark.django_db
def test_workflow_resets_seen_by_verify_are_named_without_a_call(sim_settings: Any, ledger: Any) -> None:
    contact = ledger.change("rosa@example.com", "phone_marketing", "opted_in", zoho_id="5725767000000412001")
    discrepancy_record(
        contact_id=contact.pk,
        crm_field=PHONE,
        kind=Discrepancy.Kind.OVERWRITTEN,
        zoho_id="5725767000000412001",
        expected=True,
        actual=False,
        evidence={"Modified_By": WORKFLOW},
        hint=HINTS[Discrepancy.Kind.OVERWRITTEN].format(field=PHONE),
    )

    code, output = doctor()

    assert code == 1
    (line,) = failed_lines(output)
    assert "Workflow: Reset phone consent reset " + PHONE in line


@pytest.mark.django_db
def test_a_revoked_refresh_token_stops_at_the_token_check(sim_settings: Any) -> None:
    sim_settings.ZOHO_REFRESH_TOKEN = "revoked-or-never-issued"

    code, output = doctor()

    assert code == 1
    assert failed_lines(output)[0].startswith("[FAIL] Token and data centre")
    assert "ZOHO_REFRESH_TOKEN" in output


@pytest.mark.django_db
def test_a_custom_picklist_without_a_fitting_value_fails(sim_settings: Any, sim: Any) -> None:
    sim.config(consent_through_values=["Email"])

    with ZohoClient.from_settings() as zoho:
        diagnosis = zoho_diagnose(zoho=zoho, probe_record_id="")

    (picklists,) = [c for c in diagnosis.checks if c.key == "picklists"]
    assert picklists.failed and "Consent_Through has no value for Mobile app" in picklists.detail


# -- the page -----------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["officer", "auditor", "outsider"])
def test_only_admins_see_or_run_the_doctor(role: str, request: Any, client_for: Any) -> None:
    client = client_for(request.getfixturevalue(role))

    assert client.get("/sync/doctor/").status_code == 403
    assert client.post("/sync/doctor/").status_code == 403


@pytest.mark.django_db
def test_an_admin_runs_the_checks_and_reads_each_failure_with_its_fix(
    admin_user: Any, client_for: Any, sim_settings: Any, sim: Any
) -> None:
    cache.delete(LAST_RUN_KEY)
    sim.fault("field_no_permission", fields=["Email_Opt_Out"], mode="silent")
    client = client_for(admin_user)

    before = client.get("/sync/doctor/")
    ran = client.post("/sync/doctor/")
    after = client.get("/sync/doctor/")

    assert "have not run yet" in before.content.decode()
    assert ran.status_code == 302 and ran["Location"] == "/sync/doctor/"
    page = after.content.decode()
    assert "1 failed" in page
    assert "Field Email_Opt_Out" in page and "Set Permission" in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_doctor_page_names_the_seeds_two_root_causes(
    page: Any, admin_user: Any, sim_settings: Any, sim: Any, ledger: Any
) -> None:
    """The seeds' org: two fields the API user may not edit (silently dropped) and a workflow that
    resets phone consent, seen by verify. Screenshot: /tmp/helpers/shots/zoho/doctor.png."""
    cache.delete(LAST_RUN_KEY)
    sim.fault(
        "field_no_permission",
        fields=["Email_Opt_Out", "Data_Processing_Basis_Details.Contact_Through_Email"],
        mode="silent",
    )
    contact = ledger.change("rosa@example.com", "phone_marketing", "opted_in", zoho_id="5725767000000412001")
    discrepancy_record(
        contact_id=contact.pk,
        crm_field=PHONE,
        kind=Discrepancy.Kind.OVERWRITTEN,
        zoho_id="5725767000000412001",
        expected=True,
        actual=False,
        evidence={"Modified_By": WORKFLOW},
        hint=HINTS[Discrepancy.Kind.OVERWRITTEN].format(field=PHONE),
    )
    log_in(page, admin_user.username)

    page.goto("/sync/doctor/")
    page.click("button:has-text('Run the checks')")
    page.wait_for_selector("table.doctor")

    failed = page.locator("tr.doctor-fail td:first-child").all_inner_texts()
    assert failed == [
        "Field Data_Processing_Basis_Details.Contact_Through_Email",
        "Field Email_Opt_Out",
        "Workflows resetting mapped fields",
    ]
    assert "Workflow Rules" in page.locator("tr.doctor-fail").last.inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "doctor.png"), full_page=True)
