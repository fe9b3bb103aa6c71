"""People's logins: the second factor, session timeouts and no-store answers.

Lockout after repeated failures is django-axes' (settings AXES_*), which logs every
lockout and every reset (unlock) on its logger "axes".
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import SESSION_KEY, logout
from django.db import transaction
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from compliance.roles import roles_of

SESSION_LOGIN_AT = "consent_desk_login_at"
SESSION_SEEN_AT = "consent_desk_seen_at"
SESSION_NO_DEVICE = "consent_desk_no_second_factor"
# The last-seen time is written at most this often, so a page view rarely writes the session.
SEEN_AT_RESOLUTION_S = 60
TOTP_DEVICE_NAME = "Authenticator app"


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: what our proxy put last in X-Forwarded-For when we run behind one
    (SECURE_PROXY_SSL_HEADER set), else the connection's. Earlier entries are the client's say."""
    if settings.SECURE_PROXY_SSL_HEADER:
        header: str = request.META.get("HTTP_X_FORWARDED_FOR", "")
        forwarded = [part.strip() for part in header.split(",")]
        if forwarded[-1]:
            return forwarded[-1]
    remote: str | None = request.META.get("REMOTE_ADDR")
    return remote or None


def second_factor_required(user: Any) -> bool:
    """Whether this user must pass a second factor: superusers and REQUIRE_2FA_ROLES members."""
    return bool(user.is_superuser or roles_of(user) & set(settings.REQUIRE_2FA_ROLES))


def totp_secret(device: TOTPDevice) -> str:
    """The base32 secret an authenticator app takes (what the otpauth:// URL carries)."""
    return base64.b32encode(device.bin_key).decode("ascii")


def totp_device_start(*, user: Any) -> TOTPDevice:
    """The user's unconfirmed TOTP device, made on first call, to be confirmed with a token."""
    with transaction.atomic():
        device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def totp_device_confirm(*, device: TOTPDevice, token: str) -> bool:
    """Confirm the device if the token is right (it proves the app holds the secret)."""
    if not device.verify_token(token):
        return False
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    return True


def _exempt(path: str) -> bool:
    exempt = (
        reverse("compliance:login"),
        reverse("compliance:logout"),
        reverse("compliance:login_verify"),
        reverse("compliance:login_setup"),
        "/" + settings.STATIC_URL.lstrip("/"),
        "/healthz",
    )
    return path.startswith(exempt)


def _to(url_name: str, request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(f"{reverse(url_name)}?{urlencode({'next': request.get_full_path()})}")


class SessionTimeoutMiddleware:
    """End a session SESSION_LIFETIME_S after its login or SESSION_IDLE_TIMEOUT_S after its last request."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.user.is_authenticated:
            now = int(time.time())
            session = request.session
            login_at = session.setdefault(SESSION_LOGIN_AT, now)
            seen_at = session.get(SESSION_SEEN_AT, now)
            if (
                now - login_at > settings.SESSION_LIFETIME_S
                or now - seen_at > settings.SESSION_IDLE_TIMEOUT_S
            ):
                logout(request)
                return _to("compliance:login", request)
            if SESSION_SEEN_AT not in session or now - seen_at >= SEEN_AT_RESOLUTION_S:
                session[SESSION_SEEN_AT] = now
        response = self.get_response(request)
        # The login request itself: the lifetime counts from here.
        # Asked of the session, not request.user: DRF puts its API client (or None) there.
        if SESSION_KEY in request.session and SESSION_LOGIN_AT not in request.session:
            now = int(time.time())
            request.session[SESSION_LOGIN_AT] = request.session[SESSION_SEEN_AT] = now
        return response


class SecondFactorMiddleware:
    """Send a signed-in user who owes a second factor to enter it (or to set one up first).

    Owed by those second_factor_required() names, and by anyone who has set up a device.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = request.user
        session = request.session
        if (
            user.is_authenticated
            and not user.is_verified()  # type: ignore[attr-defined]  # django-otp's middleware adds it
            and not session.get(SESSION_NO_DEVICE)
            and not _exempt(request.path)
        ):
            if user_has_device(user):
                return _to("compliance:login_verify", request)
            if second_factor_required(user):
                return _to("compliance:login_setup", request)
            # Asked once a session: a page view of someone with no device makes no query for it.
            session[SESSION_NO_DEVICE] = True
        return self.get_response(request)


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every page and API answer: nearly all show personal data.

    Static files never reach it (WhiteNoise answers them first, with long caching).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if not response.has_header("Cache-Control"):
            response["Cache-Control"] = "no-store"
        return response
