"""pytest plugin: a real headless Chromium (Debian's), driven by Playwright, for the page tests.

Chromium missing: the tests that use it fail on CI (CI=true) and are skipped elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from tests.needs import missing

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not shutil.which(CHROMIUM):
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; Django's ORM would refuse to run then.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


def log_in(page: Any, username: str) -> None:
    """Through the login form, and for those who need one, the second factor's (with a device made here)."""
    from django.contrib.auth import get_user_model

    from compliance.logins import second_factor_required
    from tests.conftest import CAST_PASSWORD

    page.goto("/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", CAST_PASSWORD)
    user = get_user_model().objects.get(username=username)
    if not second_factor_required(user):
        page.click("button:has-text('Sign in')")
        return
    device = user.totpdevice_set.get_or_create(name="cast", defaults={"confirmed": True})[0]
    page.click("button:has-text('Sign in')")
    page.wait_for_url("**/login/verify/**")
    page.fill("input[name=otp_token]", totp_now(device))
    page.click("button:has-text('Verify')")


def totp_now(device: Any) -> str:
    """The code an authenticator app shows now for this TOTP device."""
    from django_otp.oath import TOTP

    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"


def nav_go(page: Any, label: str) -> None:
    """Follow the main navigation's link named `label`, opening its group's menu first (the nav
    groups most links in <details> menus, templates/base.html)."""
    import re

    nav = page.locator("nav[aria-label=Main]")
    # (Not get_by_role: a link in a closed menu is hidden, so not in the accessibility tree.)
    name = re.compile(rf"^\s*{re.escape(label)}\s*$")
    link = nav.locator("a").filter(has_text=name)
    # (`has` is matched inside each details: a locator relative to it.)
    group = nav.locator("details", has=page.locator("a").filter(has_text=name))
    if group.count() and not link.first.is_visible():  # its menu is closed
        group.first.locator("summary").click()
    link.first.click()
