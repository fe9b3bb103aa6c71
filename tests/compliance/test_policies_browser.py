"""Policy versions in a real headless Chromium: an admin publishes one and compares it."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from compliance import services
from compliance.models import PolicyVersion
from tests.browser import log_in, nav_go

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/consent-desk-shots"))
OLD = "We send the offers you chose.\nYou may withdraw at any time.\nWe keep your data for two years."
NEW = "We send the offers you chose.\nYou may withdraw at any time, in the app or by phone.\nWe keep your data for two years.\nWe share nothing with partners."


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_admin_publishes_a_policy_and_compares_it_with_the_last(page, admin_user, decide):
    services.policy_version_publish(label="2026-01", effective_at="2026-01-01", text=OLD)
    services.consent_ingest(
        identity=services.ContactIdentity(email="ana@example.com"), decision=decide(policy_version="2026-01")
    )
    log_in(page, admin_user.username)
    nav_go(page, "Versions")
    page.wait_for_url("**/policies/")
    shot(page, "policy_list_before")
    page.click("text=Publish a new version")
    page.wait_for_url("**/policies/new/")

    page.fill("input[name=label]", "2026-01")
    page.fill("input[name=effective_at]", "2027-01-01")
    page.fill("textarea[name=text]", NEW)
    page.click("button:has-text('Publish')")
    assert "already exists" in page.locator(".field-errors").inner_text()  # a label in use
    shot(page, "policy_publish_error")

    page.fill("input[name=label]", "2027-01")
    page.click("button:has-text('Publish')")

    page.wait_for_url(re.compile(r".*/policies/\d+/repermission/$"))  # publishing opens re-permission
    assert page.locator("h1").inner_text() == "Re-permission for policy 2027-01"
    assert "is published" in page.locator(".messages").inner_text()
    page.click(".crumbs >> text=2027-01")
    page.wait_for_url(re.compile(r".*/policies/\d+/$"))
    assert page.locator("h1").inner_text() == "Policy version 2027-01"
    assert PolicyVersion.objects.get(label="2027-01").published_at is not None
    shot(page, "policy_detail")

    page.click("text=Policy versions")
    page.wait_for_url("**/policies/")
    rows = page.locator("table.policies tbody tr")
    assert rows.count() == 3 and rows.first.inner_text().startswith("2027-01")
    assert rows.nth(1).locator("td").last.inner_text() == "0"  # 2026-03: the decide fixture's
    assert rows.nth(2).locator("td").last.inner_text() == "1"
    shot(page, "policy_list")
    page.select_option("select[name=old]", "2026-01")
    page.select_option("select[name=new]", "2027-01")
    page.click("button:has-text('Show the difference')")

    assert (
        "You may withdraw at any time, in the app or by phone." in page.locator("tr.added").first.inner_text()
    )
    assert "You may withdraw at any time." in page.locator("tr.removed").inner_text()
    shot(page, "policy_diff")


def test_an_officer_reads_the_access_log_and_exports_it(page, officer):
    log_in(page, officer.username)
    nav_go(page, "Contacts")
    page.fill("input[name=q]", "Nobody")
    page.click("button:has-text('Search')")
    page.wait_for_url("**/contacts/?q=Nobody")
    assert "0 contacts match" in page.locator("main").inner_text()
    nav_go(page, "Access log")
    page.wait_for_url("**/access-log/")
    page.select_option("select[name=kind]", "search")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**kind=search**")
    assert page.locator("table.access-log tbody tr").count() == 1
    with page.expect_download() as download:
        page.click(".filters .export >> text=XLSX")
    assert download.value.suggested_filename == "access-log.xlsx"
    shot(page, "access_log")
