"""The main navigation (templates/base.html): grouped in <details> menus that need no JavaScript,
work with a keyboard, keep every page reachable per role, and fit one line at 1400 px.

Screenshots of each role at 1400 px and 390 px go to NAV_SCREENSHOTS (a directory) when set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from tests.browser import log_in, nav_go

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# What each role finds in the nav (URL names), and what it must not.
OFFICER_PAGES = [
    "workbench:overview",
    "compliance:contact_search",
    "compliance:policy_list",
    "compliance:policy_diff",
    "sync:discrepancy_list",
    "sync:discrepancy_groups",
    "sync:health",
    "sync:optout_clock",
    "sync:alert_list",
    "workbench:trends",
    "reports:report_list",
    "compliance:access_log",
    "api-docs",
]
ADMIN_ONLY = [
    "compliance:policy_publish",
    "sync:doctor",
    "sync:duplicate_list",
    "sync:import_list",
    "admin:index",
]
AUDITOR_PAGES = [
    "workbench:overview",
    "compliance:contact_search",
    "compliance:policy_list",
    "compliance:policy_diff",
    "reports:report_list",
    "api-docs",
]


def nav_links(page: Any) -> set[str]:
    return set(page.locator("nav[aria-label=Main] a").evaluate_all("links => links.map(a => a.pathname)"))


def shoot(page: Any, name: str) -> None:
    folder = os.environ.get("NAV_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


@pytest.mark.parametrize(
    ("who", "expected", "absent"),
    [
        ("officer", OFFICER_PAGES, ADMIN_ONLY),
        ("admin_user", OFFICER_PAGES + ADMIN_ONLY, []),
        ("auditor", AUDITOR_PAGES, ["sync:discrepancy_list", "compliance:access_log", "sync:doctor"]),
    ],
)
def test_every_page_of_the_role_is_in_the_nav_on_one_line_at_1400_px(
    page: Any, request: pytest.FixtureRequest, who: str, expected: list[str], absent: list[str]
) -> None:
    user = request.getfixturevalue(who)
    log_in(page, user.username)
    page.wait_for_url("**/")

    links = nav_links(page)
    assert {reverse(name) for name in expected} <= links
    assert not {reverse(name) for name in absent} & links
    # One line: every top entry on the same row as the first, none wrapped under it.
    tops = page.locator(".nav-top > li").evaluate_all(
        "items => items.map(li => li.getBoundingClientRect().top)"
    )
    assert max(tops) - min(tops) < 4, tops
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] < 60, header
    # The menus are closed until asked for; one opened shows its links over the page.
    assert not page.locator("nav[aria-label=Main] details[open]").count()
    groups = page.locator("nav[aria-label=Main] details")
    groups.first.locator("summary").click()
    assert groups.first.locator("a").first.is_visible()
    shoot(page, f"nav-{who}-1400")


def test_the_menus_work_with_the_keyboard(page: Any, officer: Any) -> None:
    log_in(page, officer.username)
    page.wait_for_url("**/")
    summary = page.locator("nav[aria-label=Main] summary", has_text="Zoho sync")
    link = page.locator("nav[aria-label=Main] a", has_text="Sync health")
    assert not link.is_visible()

    summary.focus()
    page.keyboard.press("Enter")
    assert link.is_visible()
    # Tab moves into the open menu, in its order; Enter follows the link.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent").strip() == "Discrepancies"
    while page.evaluate("document.activeElement.textContent").strip() != "Sync health":
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/sync/health/")
    # The page's own entry is marked, and its group too.
    current = page.locator("nav[aria-label=Main] [aria-current=page]")
    assert current.text_content().strip() == "Sync health"  # (its menu is closed again)
    assert "current" in (summary.get_attribute("class") or "")

    # Space toggles a menu too.
    summary.focus()
    page.keyboard.press(" ")
    assert link.is_visible()
    page.keyboard.press(" ")
    assert not link.is_visible()


def test_the_menus_work_without_javascript(browser: Any, live_server: Any, officer: Any) -> None:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1400, "height": 900}, java_script_enabled=False
    )
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        log_in(tab, officer.username)
        tab.wait_for_url("**/")
        nav_go(tab, "Opt-out clock")
        tab.wait_for_url("**/sync/opt-out-clock/")
        nav_go(tab, "Versions")
        tab.wait_for_url("**/policies/")
    finally:
        context.close()


@pytest.mark.parametrize("who", ["officer", "auditor", "admin_user"])
def test_on_a_phone_the_nav_fits_the_screen_and_an_open_menu_stays_on_it(
    browser: Any, live_server: Any, request: pytest.FixtureRequest, who: str
) -> None:
    user = request.getfixturevalue(who)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 390, "height": 844})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    try:
        log_in(tab, user.username)
        tab.wait_for_url("**/")
        shoot(tab, f"nav-{who}-390")
        # (The header's own width: the page's content below it is each page's business.)
        assert tab.locator("header.topbar").evaluate("header => header.scrollWidth") <= 390
        groups = tab.locator("nav[aria-label=Main] details")
        last = groups.nth(groups.count() - 1)
        last.locator("summary").click()
        for box in last.locator("a").evaluate_all(
            "links => links.map(a => { const r = a.getBoundingClientRect(); return [r.left, r.right]; })"
        ):
            assert box[0] >= 0 and box[1] <= 390, box
        assert tab.locator("header.topbar").evaluate("header => header.scrollWidth") <= 390
        shoot(tab, f"nav-{who}-390-open")
    finally:
        context.close()
