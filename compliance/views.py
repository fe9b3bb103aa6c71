"""History pages. Each view checks who may see it, then reads through one selector."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django_tables2 import RequestConfig

from compliance import page_selectors, selectors
from compliance.models import Contact
from compliance.roles import ROLE_LABELS, roles_of
from compliance.tables import ConsentEventTable, ConsentStateTable, ContactTable, SuppressionTable

HISTORY_PERMISSION = "compliance.view_history"
CONTACTS_PER_PAGE = 25
EVENTS_PER_PAGE = 25


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
        table = ContactTable(page_selectors.contact_search(query=query))
        RequestConfig(request, paginate={"per_page": CONTACTS_PER_PAGE}).configure(table)
    return render(request, "compliance/contact_search.html", {"query": query, "table": table})


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    events = ConsentEventTable(selectors.event_history(contact=contact), prefix="events-")
    RequestConfig(request, paginate={"per_page": EVENTS_PER_PAGE}).configure(events)
    return render(
        request,
        "compliance/contact_detail.html",
        {
            "contact": contact,
            "states": ConsentStateTable(selectors.contact_states(contact=contact)),
            "suppressions": SuppressionTable(page_selectors.contact_suppressions(contact=contact)),
            "events": events,
        },
    )
