"""The second factor's pages: the code at each login, and setting up an authenticator app
(compliance/logins.py holds the rules)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
)
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import devices_for_user, user_has_device
from django_otp import login as otp_login
from django_otp.forms import OTPTokenForm
from django_otp.plugins.otp_totp.models import TOTPDevice

from compliance import logins


def _after_second_factor(request: HttpRequest, device: TOTPDevice) -> HttpResponse:
    """Mark the session verified and go on to where the user was going."""
    otp_login(request, device)
    target = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse(settings.LOGIN_REDIRECT_URL)
    return HttpResponseRedirect(target)


@login_required
def login_verify(request: HttpRequest) -> HttpResponse:
    """The second step of a login: a code from the user's authenticator app."""
    if not user_has_device(request.user):
        return HttpResponseRedirect(f"{reverse('compliance:login_setup')}?{request.GET.urlencode()}")
    form = OTPTokenForm(request.user, request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        return _after_second_factor(request, request.user.otp_device)  # type: ignore[union-attr]
    devices = [device.persistent_id for device in devices_for_user(request.user)]
    return render(
        request,
        "registration/login_verify.html",
        {
            "form": form,
            # One device (the usual case): no choice to make, so no select box.
            "only_device": devices[0] if len(devices) == 1 else "",
            "second_factor_owed": True,
            "next": request.POST.get("next") or request.GET.get("next", ""),
        },
    )


@login_required
def login_setup(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator app: show its secret, confirm it with a first code."""
    if user_has_device(request.user):
        return HttpResponseRedirect(f"{reverse('compliance:login_verify')}?{request.GET.urlencode()}")
    device = logins.totp_device_start(user=request.user)
    error = ""
    if request.method == "POST":
        if logins.totp_device_confirm(device=device, token=request.POST.get("otp_token", "").strip()):
            return _after_second_factor(request, device)
        error = "That code did not match. Enter the code the app shows now."
    return render(
        request,
        "registration/login_setup.html",
        {
            "secret": logins.totp_secret(device),
            "config_url": device.config_url,
            "error": error,
            "required": logins.second_factor_required(request.user),
            "second_factor_owed": True,
            "next": request.POST.get("next") or request.GET.get("next", ""),
        },
    )
