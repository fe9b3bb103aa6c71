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
