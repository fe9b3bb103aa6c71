"""People's logins: lockout (django-axes), the second factor (django-otp), session timeouts, password rules."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.browser import totp_now
from tests.conftest import CAST_PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/login/"


def attempt(client: Client, username: str, password: str, ip: str = "198.51.100.7"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=ip)


def later() -> time_machine.travel:
    """A minute on: django-otp makes a device wait a moment after a wrong code."""
    return time_machine.travel(timezone.now() + timedelta(minutes=1), tick=False)


def test_it_locks_a_user_out_after_five_failures_even_with_the_right_password(
    client, officer, settings, caplog
):
    with caplog.at_level(logging.INFO):
        for _ in range(settings.AXES_FAILURE_LIMIT - 1):
            assert attempt(client, officer.username, "wrong-password").status_code == 200
        assert attempt(client, officer.username, "wrong-password").status_code == 429
        response = attempt(client, officer.username, CAST_PASSWORD, ip="198.51.100.8")

    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in client.session
    assert any("Locking out" in r.getMessage() and officer.username in r.getMessage() for r in caplog.records)


def test_it_locks_an_address_out_after_five_failures_across_usernames(client, officer, settings):
    for number in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, f"guess-{number}", "wrong-password", ip="203.0.113.9")

    assert attempt(client, officer.username, CAST_PASSWORD, ip="203.0.113.9").status_code == 429
    # The same person from elsewhere still gets in: the lock was the address's.
    assert attempt(Client(), officer.username, CAST_PASSWORD, ip="203.0.113.10").status_code == 302


def test_an_unlock_is_logged_and_lets_the_user_in_again(client, officer, settings, caplog):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        attempt(client, officer.username, "wrong-password")

    with caplog.at_level(logging.INFO):
        call_command("axes_reset_username", officer.username)

    assert any("Reset" in r.getMessage() for r in caplog.records if r.name.startswith("axes"))
    assert attempt(Client(), officer.username, CAST_PASSWORD, ip="198.51.100.20").status_code == 302


def test_an_admin_without_a_device_must_set_one_up_before_any_page(client, admin_user):
    response = attempt(client, admin_user.username, CAST_PASSWORD)
    assert response.status_code == 302

    home = client.get(reverse("workbench:overview"))
    assert home.status_code == 302
    assert home["Location"].startswith(reverse("compliance:login_setup"))
    assert client.get(reverse("admin:index")).status_code == 302

    setup = client.get(home["Location"])
    device = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    assert setup.status_code == 200
    assert device.config_url.encode() in setup.content.replace(b"&amp;", b"&")

    assert client.post(reverse("compliance:login_setup"), {"otp_token": "000000"}).status_code == 200
    with later():
        confirmed = client.post(
            reverse("compliance:login_setup"), {"otp_token": totp_now(device), "next": "/"}
        )
    assert confirmed["Location"] == "/"
    assert client.get(reverse("workbench:overview")).status_code == 200
    device.refresh_from_db()
    assert device.confirmed


def test_an_admin_with_a_device_passes_only_with_a_right_code(client, admin_user):
    device = TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)
    attempt(client, admin_user.username, CAST_PASSWORD)

    assert client.get(reverse("workbench:overview"))["Location"].startswith(
        reverse("compliance:login_verify")
    )
    wrong = client.post(
        reverse("compliance:login_verify"), {"otp_device": device.persistent_id, "otp_token": "1"}
    )
    assert wrong.status_code == 200
    assert client.get(reverse("workbench:overview")).status_code == 302

    with later():
        right = client.post(
            reverse("compliance:login_verify"),
            {"otp_device": device.persistent_id, "otp_token": totp_now(device)},
        )
    assert right.status_code == 302
    assert client.get(reverse("workbench:overview")).status_code == 200


def test_the_second_factor_is_optional_for_an_officer_but_asked_once_set_up(client, officer):
    attempt(client, officer.username, CAST_PASSWORD)
    assert client.get(reverse("workbench:overview")).status_code == 200

    TOTPDevice.objects.create(user=officer, name="phone", confirmed=True)
    second = Client()
    attempt(second, officer.username, CAST_PASSWORD)
    assert second.get(reverse("workbench:overview"))["Location"].startswith(
        reverse("compliance:login_verify")
    )


def test_the_roles_that_need_a_second_factor_are_a_setting(client, officer, settings):
    settings.REQUIRE_2FA_ROLES = ["compliance_officer"]
    attempt(client, officer.username, CAST_PASSWORD)

    assert client.get(reverse("workbench:overview"))["Location"].startswith(reverse("compliance:login_setup"))


def test_a_session_ends_after_its_idle_timeout(client, officer, settings):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        attempt(client, officer.username, CAST_PASSWORD)
        assert client.get(reverse("workbench:overview")).status_code == 200
    with time_machine.travel(start + timedelta(seconds=settings.SESSION_IDLE_TIMEOUT_S - 60), tick=False):
        assert client.get(reverse("workbench:overview")).status_code == 200
    with time_machine.travel(start + timedelta(seconds=2 * settings.SESSION_IDLE_TIMEOUT_S), tick=False):
        response = client.get(reverse("workbench:overview"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("compliance:login"))
    assert "_auth_user_id" not in client.session


def test_a_busy_session_still_ends_after_its_lifetime(client, officer, settings):
    start = timezone.now()
    step = timedelta(seconds=settings.SESSION_IDLE_TIMEOUT_S // 2)
    with time_machine.travel(start, tick=False):
        attempt(client, officer.username, CAST_PASSWORD)
    moment = start
    while moment < start + timedelta(seconds=settings.SESSION_LIFETIME_S - step.total_seconds()):
        moment += step
        with time_machine.travel(moment, tick=False):
            assert client.get(reverse("workbench:overview")).status_code == 200
    with time_machine.travel(start + timedelta(seconds=settings.SESSION_LIFETIME_S + 1), tick=False):
        assert client.get(reverse("workbench:overview")).status_code == 302


def test_the_session_timeouts_default_to_eight_hours_and_thirty_minutes(settings):
    assert settings.SESSION_LIFETIME_S == 8 * 3600
    assert settings.SESSION_IDLE_TIMEOUT_S == 30 * 60
    assert settings.SESSION_COOKIE_AGE == settings.SESSION_LIFETIME_S


@pytest.mark.parametrize("password", ["short-1", "password1234", "123456789012345", "olivia-officer-1"])
def test_weak_passwords_are_refused(officer, password):
    with pytest.raises(ValidationError):
        validate_password(password, user=officer)


def test_a_long_uncommon_password_is_accepted(officer):
    validate_password("copper-lantern-meadow-42", user=officer)
