"""The overview, the trends page and the sync health windows in a real headless Chromium, as an officer.

The browser is tests/browser.py's. Screenshots go to $SCREENSHOT_DIR (default /tmp).
"""

from __future__ import annotations

import csv
import io
import os
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from compliance.models import OutboxEntry
from compliance.services import ledger_seal
from compliance.tallies import consent_day_tally
from compliance.verify_runs import ledger_verify_run
from sync.discrepancies import discrepancy_record
from sync.models import Discrepancy, WithdrawalClock, ZohoCall
from sync.optout_clock import withdrawal_clocks_open
from sync.tallies import callhour_tally
from tests.browser import log_in, nav_go

SCREENSHOTS = Path(os.environ.get("SCREENSHOT_DIR", "/tmp"))
PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def a_year(record: Any) -> None:
    """A year of decisions from several sources, a failing phone opt-out, two weeks of calls."""
    rng = random.Random(16)
    now = timezone.now()
    sources = ["mobile_app", "web_portal", "customer_service"]
    for n in range(60):
        at = now - timedelta(days=360 - n * 6, hours=rng.randint(0, 20))
        purpose = rng.choice(["sms_marketing", "profiling", "third_party_sharing"])
        record(f"p{n}@example.com", purpose, "opted_in", source=rng.choice(sources), at=at)
        if n % 3 == 0:
            record(f"p{n}@example.com", purpose, "opted_out", source="email_link", at=at + timedelta(days=2))
    record(
        "rosa@example.com",
        "phone_marketing",
        "opted_in",
        source="customer_service",
        at=now - timedelta(days=30),
    )
    failing = record("rosa@example.com", "phone_marketing", "opted_out", source="customer_service")
    OutboxEntry.objects.update(processed_at=now)  # every change pushed; rosa's failed
    # The opt-out clock: every withdrawal in effect but rosa's.
    withdrawal_clocks_open()
    WithdrawalClock.objects.exclude(contact_id=failing.contact_id).update(effective_at=now)
    discrepancy_record(
        contact_id=failing.contact_id, crm_field=PHONE, kind=Discrepancy.Kind.PERMISSION_DENIED,
        expected=False, actual=True,
    )  # fmt: skip
    calls = []
    for hour in range(14 * 24):
        at = now - timedelta(hours=hour)
        for n in range(rng.randint(2, 8)):
            failed = rng.random() < (0.3 if hour < 30 else 0.05)
            calls.append(
                ZohoCall(
                    service="crm", operation=rng.choice(["crm.update", "crm.get", "crm.coql"]), method="PUT",
                    path="/crm/v8/Contacts", started_at=at - timedelta(minutes=n * 7), duration_ms=120,
                    http_status=500 if failed else 200, credits=1,
                    outcome=ZohoCall.Outcome.ERROR if failed else ZohoCall.Outcome.OK,
                )
            )  # fmt: skip
    ZohoCall.objects.bulk_create(calls)
    ledger_seal()
    ledger_verify_run()
    consent_day_tally()
    callhour_tally()


def test_an_officer_reads_the_overview_then_the_trends_and_exports_a_table(
    page: Any, officer: Any, a_year: None
) -> None:
    log_in(page, officer.username)

    assert page.locator("h1").inner_text() == "Overview"
    assert page.locator(".tile-withdrawals .withdrawals-total").inner_text() == "1"
    assert "Permission denied" in page.locator(".tile-discrepancies").inner_text()
    assert "intact" in page.locator(".tile-integrity").inner_text()
    assert page.locator(".tile-consent svg.chart title").count() == 1
    page.screenshot(path=str(SCREENSHOTS / "workbench_overview.png"), full_page=True)

    page.click(".tile-changes h2 a")
    assert page.locator("h1").inner_text() == "Trends"
    assert page.locator("figure.chart-figure svg.chart").count() == 6
    # The table beside a chart opens without JavaScript (a <details>).
    table = page.locator("#changes table.chart-table")
    assert not table.is_visible()
    page.click("#changes summary")
    assert table.is_visible()
    page.screenshot(path=str(SCREENSHOTS / "workbench_trends.png"), full_page=True)

    page.select_option("select[name=purpose]", "sms_marketing")
    page.click("button:has-text('Show')")
    assert "purpose=sms_marketing" in page.url
    assert "purpose sms_marketing" in page.locator("#changes .chart-desc").inner_text()
    with page.expect_download() as download:
        page.click("#changes-h ~ .exports a:has-text('CSV')")
    exported = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    page.click("#changes summary")
    shown = page.locator("#changes table.chart-table tbody tr")
    assert len(exported) - 1 == shown.count() == 53
    assert exported[-1][0] == shown.nth(shown.count() - 1).locator("th").inner_text()

    page.fill("input[name=since]", "2026-12-01")
    page.fill("input[name=until]", "2026-11-01")
    page.click("button:has-text('Show')")
    assert page.locator("#until-error").inner_text() == "The end of the range is before its start."
    page.screenshot(path=str(SCREENSHOTS / "workbench_trends_error.png"), full_page=True)


def test_an_officer_switches_the_sync_health_window(page: Any, officer: Any, a_year: None) -> None:
    log_in(page, officer.username)
    nav_go(page, "Sync health")

    assert page.locator(".windows a[aria-current=page]").inner_text() == "24 hours"
    page.screenshot(path=str(SCREENSHOTS / "sync_health_24h.png"), full_page=True)
    page.click(".windows >> text=7 days")
    assert page.locator(".windows a[aria-current=page]").inner_text() == "7 days"
    assert "per day" in page.locator("#calls-chart .chart-title").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "sync_health_7d.png"), full_page=True)
    page.click(".windows >> text=30 days")
    page.click("details.periods summary")
    assert page.locator("details.periods tbody tr").count() == 31
    page.screenshot(path=str(SCREENSHOTS / "sync_health_30d.png"), full_page=True)
