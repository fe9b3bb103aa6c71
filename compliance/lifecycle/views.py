"""The public lifecycle pages (no login, no staff navigation) and the demo's sent-mail page.

Every public page is rate-limited per client IP and speaks English or German, chosen from the
browser's Accept-Language. A GET never records anything (mail scanners follow links); only a POST
does. The one POST without a CSRF token is RFC 8058's one-click unsubscribe, whose body is exactly
`List-Unsubscribe=One-Click` and whose answer sets no cookie.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages as django_messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from compliance import services as ledger
from compliance.lifecycle import links, services, tokens
from compliance.lifecycle.forms import PreferencesForm
from compliance.lifecycle.policies import policy_in_force, policy_url
from compliance.lifecycle.ratelimit import link_rate_exceeded
from compliance.lifecycle.tokens import TokenInvalid
from compliance.logins import client_ip
from compliance.models import ConsentState, Contact, LifecycleMessage, PolicyVersion, Purpose
from compliance.roles import Role, roles_of

ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"

# The standard purposes' names in the page's language (others show their name as stored).
PURPOSE_TEXT = {
    "email_marketing": (gettext_lazy("Email marketing"), gettext_lazy("Newsletters and offers by email.")),
    "sms_marketing": (gettext_lazy("SMS marketing"), gettext_lazy("Offers by text message.")),
    "phone_marketing": (gettext_lazy("Phone marketing"), gettext_lazy("Offers by telephone call.")),
    "profiling": (gettext_lazy("Profiling"), gettext_lazy("Personalisation from purchase and app usage.")),
    "third_party_sharing": (
        gettext_lazy("Third-party sharing"),
        gettext_lazy("Sharing contact data with partners."),
    ),
}
STATUS_TEXT = {
    "opted_in": gettext_lazy("Yes"),
    "opted_out": gettext_lazy("No"),
    "pending": gettext_lazy("Waiting for your confirmation"),
    "expired": gettext_lazy("Lapsed"),
    "": gettext_lazy("Not chosen yet"),
}
INVALID_STATUS = {"tampered": 404, "unknown": 404, "expired": 410, "revoked": 410, "used": 409}


def purpose_name(purpose: Purpose) -> str:
    return str(PURPOSE_TEXT[purpose.code][0]) if purpose.code in PURPOSE_TEXT else purpose.name


def purpose_description(purpose: Purpose) -> str:
    return str(PURPOSE_TEXT[purpose.code][1]) if purpose.code in PURPOSE_TEXT else purpose.description


def public_page(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Rate limit per IP, then answer in the browser's language (English or German)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        language = translation.get_language_from_request(request)
        with translation.override(language):
            if link_rate_exceeded(client_ip(request)):
                response: HttpResponseBase = _page(
                    request,
                    "lifecycle/message.html",
                    {"heading": _("Too many requests"), "text": _("Please wait a minute and try again.")},
                    status=429,
                )
                response["Retry-After"] = "60"
            else:
                response = view(request, *args, **kwargs)
            response["Content-Language"] = translation.get_language()
        response.setdefault("Vary", "Accept-Language")
        # The token is in the URL: it may not leave in a Referer to another site (ours needs it for CSRF).
        response["Referrer-Policy"] = "same-origin"
        return response

    return wrapped


def _page(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    context = {"company": settings.LIFECYCLE_COMPANY_NAME, **context}
    return render(request, template, context, status=status)


def _invalid(request: HttpRequest, exc: TokenInvalid) -> HttpResponse:
    texts = {
        "expired": _("This link has expired. Links in our mails work for a limited time only."),
        "revoked": _("This link is no longer valid. Please use the link in our most recent mail."),
        "used": _("This link has been used already. Nothing was changed."),
    }
    text = texts.get(exc.reason, _("This link is not valid. Please check that you copied all of it."))
    return _page(
        request,
        "lifecycle/message.html",
        {"heading": _("This link cannot be used"), "text": text, "invalid": True},
        status=INVALID_STATUS.get(exc.reason, 404),
    )


def _click(request: HttpRequest) -> services.Click:
    return services.Click(
        ip_address=client_ip(request), user_agent=request.headers.get("User-Agent", "")[:500]
    )


def _policy_context(policy: PolicyVersion | None) -> dict[str, Any]:
    return {"policy": policy, "policy_url": policy_url(policy)}


@public_page
@require_http_methods(["GET", "POST"])
def confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The double opt-in link: a GET shows one button, its POST records opted_in."""
    try:
        message = services.doi_confirm_check(token=token)
        if request.method == "POST":
            services.doi_confirm(token=token, click=_click(request))
            refresh = services.renews_opt_in(message)
            return _page(
                request,
                "lifecycle/message.html",
                {
                    "heading": _("Thank you, your consent is renewed")
                    if refresh
                    else _("Thank you, you are subscribed"),
                    "text": _("You confirmed: %(purpose)s.") % {"purpose": purpose_name(message.purpose)},
                    "preferences_url": links.preferences_path(contact=message.contact, message_id=message.pk),
                },
            )
    except TokenInvalid as exc:
        return _invalid(request, exc)
    except ledger.ConsentRejected:
        return _page(
            request,
            "lifecycle/message.html",
            {"heading": _("This could not be saved"), "text": _("Please contact us."), "invalid": True},
            status=409,
        )
    # A re-permission reads as a refresh to the person: keep the consent, under the policy shown.
    refresh = services.renews_opt_in(message)
    policy = services.asked_policy(message)
    return _page(
        request,
        "lifecycle/confirm.html",
        {
            "refresh": refresh,
            "repermission": message.kind == LifecycleMessage.Kind.REPERMISSION,
            "purpose_name": purpose_name(message.purpose),
            "purpose_description": purpose_description(message.purpose),
            **_policy_context(policy),
        },
    )


def _form_post(request: HttpRequest) -> HttpResponse:
    """Stands for the unsubscribe page's form in its CSRF check (a view without csrf_exempt)."""
    return HttpResponse()


@csrf_exempt  # only for RFC 8058's one-click body; every other POST is checked below
@public_page
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponseBase:
    """RFC 8058: a POST whose body is exactly `List-Unsubscribe=One-Click` unsubscribes with no
    cookie, CSRF token or login, and answers plain text; any other POST is the page's own form
    and needs its CSRF token. A GET shows the page with its confirm button."""
    if request.method == "POST" and request.body.strip() == ONE_CLICK_BODY:
        try:
            outcome = services.unsubscribe(token=token, click=_click(request), one_click=True)
        except TokenInvalid as exc:
            status = 400 if exc.reason == "tampered" else 404
            return HttpResponse(
                f"Not unsubscribed: the link is {exc.reason}.\n", status=status, content_type="text/plain"
            )
        text = "Unsubscribed.\n" if outcome.recorded else "Already unsubscribed.\n"
        return HttpResponse(text, content_type="text/plain; charset=utf-8")
    if request.method == "POST":
        # The CSRF check this view's exemption skipped, as the middleware would have made it.
        refused = CsrfViewMiddleware(lambda r: HttpResponse()).process_view(request, _form_post, (), {})
        if refused is not None:
            return refused
    try:
        link = tokens.token_read(token, kind=tokens.Kind.UNSUBSCRIBE)
        purposes = services.unsubscribe_purposes(link)
        if request.method == "POST":
            services.unsubscribe(token=token, click=_click(request), one_click=False)
    except TokenInvalid as exc:
        return _invalid(request, exc)
    contact = get_object_or_404(Contact, pk=link.contact_id)
    return _page(
        request,
        "lifecycle/unsubscribe.html",
        {
            "done": request.method == "POST",
            "purpose_names": [purpose_name(p) for p in purposes],
            "all_purposes": link.all_purposes,
            "preferences_url": links.preferences_path(contact=contact),
        },
    )


@public_page
@require_http_methods(["GET", "POST"])
def preferences(request: HttpRequest, token: str) -> HttpResponse:
    """Every purpose with its status, frequency and the policy in force; each change a ledger
    event from source preference_centre."""
    try:
        link = tokens.token_read(token, kind=tokens.Kind.PREFERENCES)
    except TokenInvalid as exc:
        return _invalid(request, exc)
    purposes = list(Purpose.objects.order_by("pk"))
    policy = policy_in_force()
    outcome = None
    status = 200
    if request.method == "POST":
        form = PreferencesForm(request.POST, purposes=purposes)
        if form.is_valid():
            try:
                outcome = services.preferences_save(
                    token=token,
                    choices=form.choices(),
                    policy=form.cleaned_data["policy"],
                    click=_click(request),
                )
            except TokenInvalid as exc:
                return _invalid(request, exc)
            except ledger.ConsentRejected as exc:
                form.add_error(None, exc.message)
                status = 400
        else:
            status = 400
    states = {s.purpose_id: s for s in ConsentState.objects.filter(contact_id=link.contact_id)}
    if outcome is not None or request.method == "GET":
        form = PreferencesForm(
            purposes=purposes,
            initial={
                "policy_version": policy.label if policy else "",
                **{
                    f"status_{p.code}": states[p.pk].status
                    for p in purposes
                    if p.pk in states and states[p.pk].status in ("opted_in", "opted_out")
                },
                **{f"frequency_{p.code}": states[p.pk].frequency for p in purposes if p.pk in states},
            },
        )
    rows = [
        {
            "purpose": purpose,
            "name": purpose_name(purpose),
            "description": purpose_description(purpose),
            "current": STATUS_TEXT.get(states[purpose.pk].status if purpose.pk in states else "", ""),
            "status_field": status_field,
            "frequency_field": frequency_field,
        }
        for purpose, status_field, frequency_field in form.rows()
    ]
    return _page(
        request,
        "lifecycle/preferences.html",
        {
            "form": form,
            "rows": rows,
            "outcome": outcome,
            "confirmation_names": [purpose_name(p) for p in outcome.confirmation_sent] if outcome else [],
            **_policy_context(policy),
        },
        status=status,
    )


@public_page
@require_http_methods(["GET"])
def policy(request: HttpRequest, label: str) -> HttpResponse:
    """A published privacy notice's text, for the mails and pages that cite it."""
    version = get_object_or_404(PolicyVersion, label=label, published_at__isnull=False)
    return _page(request, "lifecycle/policy.html", {"policy": version})


class DemoSignupForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254)


@login_required
@require_http_methods(["GET", "POST"])
def sent_mail(request: HttpRequest) -> HttpResponse:
    """The demo's outbox: the lifecycle mails sent, with their links to click, and a sign-up form
    standing in for a web portal's. Admins, demo mode only."""
    if not settings.DEMO_MODE:
        raise Http404("The sent-mail page exists in demo mode only.")
    user = request.user
    if not (user.is_superuser or Role.ADMIN in roles_of(user)):
        return render(request, "lifecycle/sent_mail.html", {"forbidden": True}, status=403)
    form = DemoSignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.demo_signup(email=form.cleaned_data["email"], click=_click(request))
        except ledger.ConsentRejected as exc:
            form.add_error("email", exc.message)
        else:
            django_messages.success(
                request, f"Signed up {form.cleaned_data['email']}: the confirmation mail is below."
            )
            return redirect("lifecycle:sent_mail")
    sent = list(
        LifecycleMessage.objects.select_related("purpose", "contact").order_by("-created_at", "-id")[:50]
    )
    unsubscribe_paths = {
        contact.pk: urlsplit(links.unsubscribe_url(contact=contact)).path
        for contact in {message.contact for message in sent}
    }
    return render(
        request,
        "lifecycle/sent_mail.html",
        {
            "form": form,
            "rows": [(message, unsubscribe_paths[message.contact_id]) for message in sent],
            "email_backend": settings.EMAIL_BACKEND,
        },
        status=400 if form.errors else 200,
    )
