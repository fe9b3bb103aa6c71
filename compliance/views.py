"""History pages. Each view checks who may see it, then reads through one selector."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import devices_for_user, user_has_device
from django_otp import login as otp_login
from django_otp.forms import OTPTokenForm
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_tables2 import RequestConfig

from compliance import logins, selectors, services
from compliance.models import AccessLog, Contact
from compliance.roles import ROLE_LABELS, roles_of
from compliance.tables import ConsentEventTable, ConsentStateTable, ContactTable, SuppressionTable

HISTORY_PERMISSION = "compliance.view_history"
CONTACTS_PER_PAGE = 25
EVENTS_PER_PAGE = 25
IDENTITY_EVENTS_SHOWN = 100


@login_required
def home(request: HttpRequest) -> HttpResponse:
    roles = roles_of(request.user)
    links = []
    if request.user.has_perm(HISTORY_PERMISSION):
        links.append(
            (
                reverse("compliance:contact_search"),
                "Contact search and history",
                "Find a contact by email, "
                "phone, app user id or name and read every consent decision they made.",
            )
        )
    if admin.site.has_permission(request):
        links.append(
            (reverse("admin:index"), "Django admin", "Read the ledger tables, publish policy versions.")
        )
    links.append((reverse("api-docs"), "API docs", "The ingest API for the mobile app and web portal."))
    return render(
        request,
        "compliance/user_home.html",
        {"role_names": [label for role, label in ROLE_LABELS.items() if role in roles], "links": links},
    )


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def contact_search(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    table = None
    if query:
        table = ContactTable(selectors.contact_search(query=query))
        RequestConfig(request, paginate={"per_page": CONTACTS_PER_PAGE}).configure(table)
        # The terms only as their hash; the contacts this page of results shows.
        services.access_log_record(
            request=request,
            kind=AccessLog.Kind.SEARCH,
            query=query,
            contact_ids=[row.record.pk for row in table.page.object_list],
        )
    return render(request, "compliance/contact_search.html", {"query": query, "table": table})


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    services.access_log_record(request=request, kind=AccessLog.Kind.HISTORY_VIEW, contact_ids=[contact.pk])
    events = ConsentEventTable(selectors.event_history(contact=contact), prefix="events-")
    RequestConfig(request, paginate={"per_page": EVENTS_PER_PAGE}).configure(events)
    return render(
        request,
        "compliance/contact_detail.html",
        {
            "contact": contact,
            "states": ConsentStateTable(selectors.contact_states(contact=contact)),
            "suppressions": SuppressionTable(selectors.contact_suppressions(contact=contact)),
            "events": events,
            "identity_history": selectors.identity_history(contact=contact)[:IDENTITY_EVENTS_SHOWN],
        },
    )


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


ACCESS_LOG_PERMISSION = "compliance.view_access_log"
ACCESS_LOG_PER_PAGE = 50
ACCESS_LOG_CSV_HEADER = ["when (UTC)", "user", "ip", "kind", "path", "contact ids", "query hash", "detail"]


class AccessLogFilter(forms.Form):
    kind = forms.ChoiceField(choices=[("", "Any"), *AccessLog.Kind.choices], required=False)
    user = forms.CharField(required=False, max_length=150, label="User")
    contact = forms.IntegerField(required=False, min_value=1, label="Contact id")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )
    # Matched through its hash: the log holds no search terms to compare with.
    terms = forms.CharField(required=False, max_length=200, label="Searched for")


@login_required
@permission_required(ACCESS_LOG_PERMISSION, raise_exception=True)
def access_log(request: HttpRequest) -> HttpResponseBase:
    """Who read whose data: filters, a page of entries, and the same as CSV (itself logged)."""
    form = AccessLogFilter(request.GET or None)
    filters: dict[str, Any] = {}
    if form.is_valid():
        data = form.cleaned_data
        day = timedelta(days=1)
        filters = {
            "kind": data["kind"],
            "username": data["user"].strip(),
            "contact_id": data["contact"],
            "since": _day_start(data["since"]) if data["since"] else None,
            "until": _day_start(data["until"]) + day if data["until"] else None,
            "query_hash": services.access_log_query_hash(data["terms"]) if data["terms"].strip() else "",
        }
    entries = selectors.access_log_entries(**filters)
    if request.GET.get("format") == "csv":
        services.access_log_record(request=request, kind=AccessLog.Kind.EXPORT, detail="access log CSV")
        return _access_log_csv(entries)
    page = Paginator(entries, ACCESS_LOG_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "compliance/access_log.html",
        {"form": form, "page": page, "query": query.urlencode(), "filtered": any(filters.values())},
    )


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class _Echo:
    def write(self, value: str) -> str:
        return value


def _access_log_csv(entries: QuerySet[AccessLog]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(ACCESS_LOG_CSV_HEADER)
        for entry in entries.iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    entry.created_at.astimezone(UTC).isoformat(),
                    entry.username,
                    entry.ip or "",
                    entry.kind,
                    entry.path,
                    " ".join(str(c.contact_id) for c in entry.contacts.all()),
                    entry.query_hash,
                    entry.detail,
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="access-log.csv"'
    return response
