"""An admin fixes Zoho's field permission, retries a whole group of discrepancies from the page, and
watches the group resolve: headless Chromium (Debian's) against the live server, real Celery workers
on Redis, and zohosim (whose fault is cleared through its control API, as an admin fixing Zoho would).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.models import BulkAction, Discrepancy
from tests.browser import log_in

SHOTS = Path("/tmp/helpers/shots/syncui")
SMS = "SMS_Opt_In"
PEOPLE = 6

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_admin_retries_a_whole_group_after_fixing_zoho_and_watches_it_resolve(
    page: Any, admin_user: Any, workers: Any, sim: Any, ledger: Any, crm: Any
) -> None:
    # Given: Zoho's profile may not edit SMS_Opt_In, and six people opted in to SMS.
    sim.fault("field_no_permission", field=SMS, mode="error")
    workers.start(2)
    workers.wait_ready()
    for n in range(PEOPLE):
        email = f"sms{n}@example.com"
        ledger.change(email, "sms_marketing", "opted_in", zoho_id=crm(email))
    workers.wait_until(
        lambda: Discrepancy.objects.filter(status="open", kind="permission_denied").count() == PEOPLE,
        "six permission-denied discrepancies",
    )

    # The admin finds them as one group.
    log_in(page, admin_user.username)
    page.goto("/sync/discrepancies/")
    page.click("a.groups-link")
    assert page.locator("h1").inner_text() == "Discrepancies by likely cause"
    row = page.locator("table.groups tbody tr").filter(has_text="Permission denied")
    assert row.locator("td").first.inner_text() == str(PEOPLE)
    shot(page, "discrepancy_groups")
    row.locator("td").first.locator("a").click()
    assert f"{PEOPLE} open discrepancies in this group" in page.locator(".group-count").inner_text()
    shot(page, "discrepancy_group")

    # Zoho is fixed (the field permission given back), then the whole group is retried.
    sim.clear_faults()
    page.click("button:has-text('Retry all in this group')")
    assert page.locator("h1").inner_text() == "Retry all in this group?"
    assert f"This acts on {PEOPLE} open discrepancies" in page.locator(".confirm-count").inner_text()
    shot(page, "discrepancy_group_confirm")
    page.click("button:has-text('Yes: retry all in this group')")

    # The progress page reloads itself until every discrepancy of the group is resolved.
    page.wait_for_url("**/sync/discrepancies/bulk/*/")
    page.locator(".still-open").filter(has_text="None of them is open any more.").wait_for(timeout=60_000)
    shot(page, "bulk_action_done")
    action = BulkAction.objects.get()
    assert (action.action, action.status, action.matched, action.done) == ("retry", "done", PEOPLE, PEOPLE)
    assert action.requested_by_name == admin_user.username
    assert "Done" in page.locator(".bulk-status").inner_text()
    assert not Discrepancy.objects.filter(status="open").exists()
    assert set(Discrepancy.objects.values_list("resolution", flat=True)) != {""}
    page.click("a:has-text('See the group')")
    assert "Nothing open in this group any more." in page.locator(".group-count").inner_text()


@pytest.fixture
def run_at_once(monkeypatch: Any) -> None:
    """Bulk actions run in the live server's thread as soon as they are recorded (no broker)."""
    from sync import bulk

    monkeypatch.setattr(bulk, "_enqueue", lambda bulk_id: bulk.bulk_action_run(bulk_id=bulk_id))


@pytest.fixture
def denied_three(ledger: Any) -> list[Discrepancy]:
    from sync.discrepancies import HINTS, discrepancy_record

    rows = []
    for n in range(3):
        contact = ledger.change(
            f"deny{n}@example.com", "sms_marketing", "opted_in", zoho_id=f"57257670000{n}"
        )
        rows.append(
            discrepancy_record(
                contact_id=contact.pk,
                crm_field=SMS,
                kind=Discrepancy.Kind.PERMISSION_DENIED,
                expected=True,
                actual=None,
                hint=HINTS[Discrepancy.Kind.PERMISSION_DENIED].format(field=SMS),
            ).discrepancy
        )
    return rows


def test_an_admin_resolves_a_group_with_a_note_after_confirming(
    page: Any, admin_user: Any, denied_three: list[Discrepancy], run_at_once: None
) -> None:
    log_in(page, admin_user.username)
    page.goto("/sync/discrepancies/groups/")
    page.locator("table.groups tbody tr td a").first.click()
    page.click("button:has-text('Resolve all with a note')")

    # A note is required: the confirmation says so next to the field, and nothing is recorded.
    page.click("button:has-text('Yes: resolve all with a note')")
    assert "Write a note saying why" in page.locator("form.confirm .error").inner_text()
    assert not BulkAction.objects.exists()
    shot(page, "discrepancy_group_confirm_error")
    page.fill("textarea[name=note]", "Profile fixed in Zoho; values checked by hand")
    page.click("button:has-text('Yes: resolve all with a note')")

    page.locator(".still-open").filter(has_text="None of them is open any more.").wait_for()
    assert "3 resolved." in page.locator(".outcome").inner_text()
    assert set(Discrepancy.objects.values_list("status", flat=True)) == {"resolved"}
    assert "ada-admin" in Discrepancy.objects.first().resolution


def test_an_officer_reads_groups_and_exports_but_is_offered_no_bulk_action(
    page: Any, officer: Any, denied_three: list[Discrepancy]
) -> None:
    log_in(page, officer.username)
    page.goto("/sync/discrepancies/?kind=permission_denied")
    assert page.locator("table.discrepancies tbody tr").count() == 3
    shot(page, "discrepancy_list")
    with page.expect_download() as download:
        page.click("a.export")
    lines = Path(download.value.path()).read_text(encoding="utf-8-sig").strip().splitlines()
    assert len(lines) == 4 and lines[0].startswith("Discrepancy id,Opened,Contact id")
    page.click("a.groups-link")
    page.locator("table.groups tbody tr td a").first.click()
    assert page.locator("button:has-text('Retry all')").count() == 0
    assert page.locator("button:has-text('Resolve all')").count() == 0
    page.goto("/sync/alerts/?acknowledged=any")
    shot(page, "alert_list")
