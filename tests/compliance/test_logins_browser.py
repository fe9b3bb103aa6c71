"""The admin's second factor in a real headless Chromium, as a person meets it after `make demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.browser import totp_now

SCREENSHOTS = Path("/tmp")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_demo_admin_needs_the_code_from_its_authenticator_app(page: Any) -> None:
    call_command("create_demo_users", stdout=open("/dev/null", "w"))  # noqa: SIM115 - discarded
    device = TOTPDevice.objects.get(user__username="admin", confirmed=True)

    page.goto("/login/?next=/admin/")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "admin-demo-pass")
    page.click("button:has-text('Sign in')")

    page.wait_for_url("**/login/verify/**")
    assert page.locator("h1").inner_text() == "Enter your code"
    page.screenshot(path=str(SCREENSHOTS / "login_verify.png"), full_page=True)
    page.fill("input[name=otp_token]", "000000" if totp_now(device) != "000000" else "111111")
    page.click("button:has-text('Verify')")
    assert "Invalid token" in page.locator("[role=alert]").inner_text()
    page.goto("/")
    assert "/login/verify/" in page.url

    # django-otp makes a device wait a moment after a wrong code.
    device.refresh_from_db()
    device.throttle_reset()
    page.fill("input[name=otp_token]", totp_now(device))
    page.click("button:has-text('Verify')")

    assert page.locator("h1").inner_text().startswith("Overview")
    page.goto("/admin/")
    assert "Ledger and configuration" in page.title()


def test_an_admin_without_a_device_sets_one_up_at_the_first_login(page: Any, admin_user: Any) -> None:
    from tests.conftest import CAST_PASSWORD

    page.goto("/login/")
    page.fill("input[name=username]", admin_user.username)
    page.fill("input[name=password]", CAST_PASSWORD)
    page.click("button:has-text('Sign in')")

    page.wait_for_url("**/login/setup/**")
    secret = page.locator("code.secret").first.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "login_setup.png"), full_page=True)
    device = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    assert secret.replace(" ", "") in device.config_url
    page.fill("input[name=otp_token]", totp_now(device))
    page.click("button:has-text('Confirm')")

    assert page.locator("h1").inner_text().startswith("Overview")
    device.refresh_from_db()
    assert device.confirmed
