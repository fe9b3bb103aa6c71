"""The import page (/sync/import/): an admin follows the import's runs, their progress, counts and
problems, from the doctor page (headless Chromium, Debian's); nobody else sees it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance import services
from sync.import_models import ImportRun

SHOTS = Path("/tmp/helpers/shots/import")


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["officer", "auditor", "outsider"])
def test_only_admins_see_the_import_page(role: str, request: Any, client_for: Any) -> None:
    client = client_for(request.getfixturevalue(role))

    assert client.get("/sync/import/").status_code == 403
    assert client.post("/sync/import/").status_code == 403


@pytest.mark.django_db
def test_a_visitor_who_is_not_signed_in_is_sent_to_the_login(client: Any) -> None:
    response = client.get("/sync/import/")

    assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.django_db
def test_a_running_import_reloads_the_page_and_a_stopped_one_says_how_to_resume(
    admin_user: Any, client_for: Any
) -> None:
    ImportRun.objects.create(
        method="coql", owner="nowhere.invalid:1", records_read=10, heartbeat_at=timezone.now()
    )
    page = client_for(admin_user).get("/sync/import/")
    assert "Refresh" in page  # another host's run with a fresh heartbeat is taken for running

    ImportRun.objects.update(owner="")  # stopped on an error
    page = client_for(admin_user).get("/sync/import/")
    assert "Refresh" not in page
    assert "run the command again to resume" in page.content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_admin_follows_the_import_from_the_doctor_page(
    page: Any, admin_user: Any, sim_settings: Any, sim: Any
) -> None:
    # Given an import that ran over a CRM with a bad record, and a second one whose process died
    from tests.browser import log_in

    sim_settings.RECONCILE_BULK_POLL_S = 0
    services.policy_version_publish(label="2023-06", effective_at="2023-06-01", text="Offers you chose.")
    sim.seed(
        generate={"contacts": 40, "lists": 0, "campaigns": 0, "opt_out_ratio": 0.5, "details_ratio": 0.3}
    )
    bad = sim.add_contact(Last_Name="Perhaps", Email="perhaps@example.com", SMS_Opt_In="perhaps")
    call_command("import_zoho_consent", "--by", "ada-admin", stdout=io.StringIO(), stderr=io.StringIO())
    done = ImportRun.objects.get()
    stopped = ImportRun.objects.create(
        method="bulk", owner="import-host:999999999", records_read=1200, records_total=5000
    )
    SHOTS.mkdir(parents=True, exist_ok=True)

    # When the admin opens the import from the doctor page
    log_in(page, admin_user.username)
    page.goto("/sync/doctor/")
    page.click("text=Import it into the ledger")
    page.wait_for_url("**/sync/import/")

    # Then each run shows its state, progress and counts, and the bad record with its reason
    finished = page.locator(f"#run-{done.pk}")
    assert finished.locator(".run-state").inner_text() == "Done"
    assert finished.locator(".progress-text").inner_text() == "41 CRM records and 0 Campaigns rows read"
    assert finished.locator(".events-recorded").inner_text() == str(done.events_recorded)
    assert done.events_recorded > 0
    assert finished.locator(".records-bad").inner_text() == "1"
    finished.locator("details.problems summary").click()
    assert f"crm {bad}" in finished.locator("table.import-problems").inner_text()
    assert "SMS_Opt_In holds 'perhaps'" in finished.locator("table.import-problems").inner_text()
    halted = page.locator(f"#run-{stopped.pk}")
    assert "Stopped" in halted.locator(".run-state").inner_text()
    assert "Reading CRM records: 1200 of 5000 read (24 %)" in halted.locator(".progress-text").inner_text()
    page.screenshot(path=str(SHOTS / "import_list.png"), full_page=True)
