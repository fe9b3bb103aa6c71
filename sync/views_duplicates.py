"""The duplicates page: admins see each contact whose address several CRM records share, with the
records' key fields, and choose "write to all" or a primary (`sync.duplicates`)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from sync.duplicates import DecisionRefused, decisions_recent, duplicate_decide, duplicate_groups
from sync.models import DuplicateDecision
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoError

# Choosing which CRM record carries a person's consent is fixing the sync: admins only.
DUPLICATES_PERMISSION = "compliance.fix_discrepancies"


@login_required
@permission_required(DUPLICATES_PERMISSION, raise_exception=True)
@require_GET
def duplicate_list(request: HttpRequest) -> HttpResponse:
    try:
        zoho: ZohoClient | None = ZohoClient.from_settings()
    except (ZohoError, ValueError):
        zoho = None
    try:
        groups = duplicate_groups(zoho=zoho)
    finally:
        if zoho is not None:
            zoho.close()
    return render(
        request,
        "sync/duplicate_list.html",
        {
            "groups": groups,
            "decisions": decisions_recent(),
            "choices": DuplicateDecision.Choice,
        },
    )


@login_required
@permission_required(DUPLICATES_PERMISSION, raise_exception=True)
@require_POST
def duplicate_decide_view(request: HttpRequest, contact_id: int) -> HttpResponse:
    try:
        decision = duplicate_decide(
            contact_id=contact_id,
            choice=request.POST.get("choice", ""),
            primary=request.POST.get("primary", ""),
            reason=request.POST.get("reason", ""),
            user=request.user,
        )
    except DecisionRefused as exc:
        messages.error(request, f"Contact {contact_id}: {exc}")
    else:
        target = (
            f"{decision.primary_module} record {decision.primary_record_id} as the primary"
            if decision.primary_record_id
            else f"write to all {len(decision.candidates)} records"
        )
        messages.success(request, f"Contact {contact_id}: recorded {target}; its held push is queued.")
    return redirect("sync:duplicate_list")
