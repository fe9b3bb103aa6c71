"""The sync pages in a real headless Chromium (Debian's), driven by Playwright against the live server.

The browser is tests/browser.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.alerts import alert_retries_exhausted
from sync.discrepancies import HINTS, discrepancy_record
from sync.models import Alert, Discrepancy
from tests.browser import log_in, nav_go

SCREENSHOTS = Path("/tmp")
PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def overwritten(ledger: Any) -> Discrepancy:
    """A workflow reset Rosa's phone consent after our write, and every retry failed."""
    contact = ledger.change("rosa@example.com", "phone_marketing", "opted_in", zoho_id="5725767000000412001")
    discrepancy = discrepancy_record(
        contact_id=contact.pk,
        crm_field=PHONE,
        kind=Discrepancy.Kind.OVERWRITTEN,
        zoho_id="5725767000000412001",
        expected=True,
        actual=False,
        evidence={
            "sent": {PHONE: True},
            "zoho_answer": {"code": "SUCCESS", "message": "record updated"},
            "readback": {PHONE: False},
            "Modified_By": {"id": "5725767000000000002", "name": "Workflow Rules"},
            "Modified_Time": "2026-06-01T12:29:41+00:00",
        },
        hint=HINTS[Discrepancy.Kind.OVERWRITTEN].format(field=PHONE),
    ).discrepancy
    Discrepancy.objects.filter(pk=discrepancy.pk).update(retries=3, next_retry_at=None)
    discrepancy.refresh_from_db()
    assert alert_retries_exhausted(discrepancy=discrepancy) is not None
    return discrepancy


def test_an_officer_sees_the_banner_acknowledges_the_alert_and_the_banner_goes(
    page: Any, officer: Any, overwritten: Discrepancy
) -> None:
    log_in(page, officer.username)

    banner = page.locator(".alert-banner")
    assert "1 unacknowledged alert" in banner.inner_text()
    assert "did not reach Zoho CRM on " + PHONE in banner.inner_text()
    banner.locator("a").click()

    assert page.locator("h1").inner_text() == "Alerts"
    rows = page.locator("table.alerts tbody tr")
    assert rows.count() == 1
    assert "A change failed after every retry" in rows.nth(0).inner_text()
    page.screenshot(path=str(SCREENSHOTS / "sync_alerts.png"), full_page=True)
    rows.nth(0).locator("button:has-text('Acknowledge')").click()

    assert "Alert acknowledged." in page.locator(".messages").inner_text()
    assert page.locator(".alert-banner").count() == 0
    page.goto("/")
    assert page.locator(".alert-banner").count() == 0
    alert = Alert.objects.get()
    assert alert.acknowledged_by == officer.username
    # An officer reads the discrepancy but is not offered the fixes.
    page.goto(f"/sync/discrepancies/{overwritten.pk}/")
    assert "Workflow Rules" in page.locator(".evidence").inner_text()
    assert page.locator("button:has-text('Resolve')").count() == 0


def test_an_admin_resolves_a_discrepancy_with_a_note(
    page: Any, admin_user: Any, overwritten: Discrepancy
) -> None:
    log_in(page, admin_user.username)
    nav_go(page, "Discrepancies")
    assert "1 open" in page.locator(".open-total").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "sync_discrepancies.png"), full_page=True)
    page.locator("table.discrepancies tbody tr").nth(0).locator("td a").first.click()

    assert "Overwritten after our write" in page.locator("h1").inner_text()
    assert "check workflow rules on " + PHONE in page.locator(".hint").inner_text()
    assert "3 of 3 (exhausted)" in page.locator(".retries").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "sync_discrepancy_detail.png"), full_page=True)

    page.click("button:has-text('Resolve')")  # without a note
    assert "Write a note saying why" in page.locator("form.resolve .error").inner_text()
    overwritten.refresh_from_db()
    assert overwritten.status == Discrepancy.Status.OPEN

    page.fill("textarea[name=note]", "Workflow 'Reset phone consent' disabled; value set in Zoho by hand.")
    page.click("button:has-text('Resolve')")

    assert "Discrepancy resolved." in page.locator(".messages").inner_text()
    assert "Resolved" in page.locator("h1 .badge").inner_text()
    assert (
        "Resolved manually by ada-admin: Workflow 'Reset phone consent'"
        in page.locator(".resolution").inner_text()
    )
    assert page.locator("button:has-text('Resolve')").count() == 0
    overwritten.refresh_from_db()
    assert overwritten.status == Discrepancy.Status.RESOLVED

    nav_go(page, "Sync health")
    assert page.locator("h1").inner_text() == "Sync health"
    page.screenshot(path=str(SCREENSHOTS / "sync_health.png"), full_page=True)
