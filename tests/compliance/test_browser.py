"""The pages in a real headless Chromium (Debian's), driven by Playwright against the live server.

The browser is tests/browser.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compliance import services
from tests.browser import log_in, nav_go

SCREENSHOT = Path("/tmp/contact_detail.png")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def rosa(decide: Any, officer: Any) -> Any:
    identity = services.ContactIdentity(email="rosa@example.com", first_name="Rosa", last_name="Lindqvist")
    services.consent_ingest(identity=identity, decision=decide(purpose="sms_marketing", frequency="weekly"))
    services.consent_ingest(identity=identity, decision=decide(purpose="profiling", ip_address="2001:db8::7"))
    services.consent_ingest(
        identity=identity,
        decision=decide(
            purpose="sms_marketing", status="opted_out", source="email_link", policy_version=None
        ),
    )
    services.suppression_add(
        contact=services.contact_resolve(identity=identity),
        kind="hard_bounce",
        source="campaigns",
        detail="550 5.1.1",
    )
    return services.contact_resolve(identity=identity)


def test_an_officer_logs_in_finds_a_contact_reads_the_history_and_logs_out(
    page: Any, officer: Any, rosa: Any
):
    log_in(page, officer.username)
    assert page.locator("h1").inner_text().startswith("Overview")
    assert "Compliance officer" in page.locator(".roles").inner_text()
    assert page.locator("nav >> text=Django admin").count() == 0

    nav_go(page, "Contacts")
    page.fill("input[name=q]", "Lindqvist")
    page.click("button:has-text('Search')")
    page.click("text=Rosa Lindqvist")

    assert page.locator("h1").inner_text() == "Rosa Lindqvist"
    rows = page.locator("table.events tbody tr")
    assert rows.count() == 3
    assert "Opted out" in rows.nth(0).inner_text()
    assert "Email unsubscribe link" in rows.nth(0).inner_text()
    assert "2001:db8::7" in rows.nth(1).inner_text()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    # The stylesheet reached the browser: the top bar is dark, not the default white.
    assert page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"

    page.click("button:has-text('Log out')")
    assert page.url.endswith("/login/")
    page.goto(rosa.get_absolute_url())
    assert "/login/" in page.url


def test_an_auditor_is_refused_the_django_admin(page: Any, auditor: Any) -> None:
    log_in(page, auditor.username)
    assert "Auditor" in page.locator(".roles").inner_text()

    page.goto("/admin/")

    assert "/admin/login/" in page.url
    assert "not authorized" in page.content()
