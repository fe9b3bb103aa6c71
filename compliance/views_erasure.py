"""Erasure at the desk (admins): "Erase this person" from the contact page, a confirmation that
says what goes and what is kept, and the legal holds that stop it (docs/erasure.md).

Every view here needs `compliance.erase_contacts` (the admin role): officers and auditors get 403.
The writes are the erasure service's (`erasure_request`, `legal_hold_set`, `legal_hold_lift`).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from compliance import services
from compliance.forms import ErasureForm, LegalHoldForm
from compliance.models import (
    AccessLog,
    ConsentState,
    ConsentStatus,
    Contact,
    ErasureRequest,
    EventPersonalData,
    IdentityPersonalData,
    LegalHold,
    LifecycleMessage,
)
from compliance.services.erasure import legal_hold_open

ERASE_PERMISSION = "compliance.erase_contacts"


def erasure_context(*, request: HttpRequest, contact: Contact) -> dict[str, Any]:
    """What the contact page shows of erasure: the erasure once done (for everyone who may read
    the history), and for admins the open legal holds and the form to set one."""
    context: dict[str, Any] = {"erasure": ErasureRequest.objects.filter(contact=contact).first()}
    if request.user.has_perm(ERASE_PERMISSION) and contact.erased_at is None:
        context["legal_holds"] = list(_open_holds(contact))
        context["hold_form"] = LegalHoldForm()
    return context


def _open_holds(contact: Contact) -> Any:
    return LegalHold.objects.filter(contact=contact, lifted_at__isnull=True).order_by("id")


@login_required
@permission_required(ERASE_PERMISSION, raise_exception=True)
def contact_erase(request: HttpRequest, contact_id: int) -> HttpResponse:
    """The confirmation (what goes, what is kept, a legal hold that stops it), then the erasure."""
    contact = get_object_or_404(Contact, pk=contact_id)
    if contact.erased_at is not None:
        messages.info(request, f"Contact {contact.pk} was erased before: this page shows what was kept.")
        return HttpResponseRedirect(contact.get_absolute_url())
    form = ErasureForm(request.POST if request.method == "POST" else None)
    problem = ""
    if request.method == "POST" and form.is_valid():
        try:
            result = services.erasure_request(
                contact=contact,
                channel=ErasureRequest.Channel.ADMIN,
                reason=form.cleaned_data["reason"],
                actor_user=request.user,  # type: ignore[arg-type]
            )
        except services.LegalHoldActive:
            problem = "Not erased: a legal hold stands (below). Lift it first if it no longer applies."
        except services.ConsentRejected as refused:
            problem = f"Not erased: {refused.message}"
        else:
            erasure = result.erasure
            messages.success(
                request,
                f"Contact {contact.pk} erased (request {erasure.pk}): {erasure.values_deleted} personal "
                f"values deleted, {erasure.events_kept} events kept, and they still verify.",
            )
            return HttpResponseRedirect(contact.get_absolute_url())
    services.access_log_record(request=request, kind=AccessLog.Kind.HISTORY_VIEW, contact_ids=[contact.pk])
    holds = list(_open_holds(contact))
    status = 200
    if request.method == "POST":
        status = 409 if problem and holds else 400
    return render(
        request,
        "compliance/contact_erase.html",
        {
            "contact": contact,
            "form": form,
            "problem": problem,
            "holds": holds,
            "preview": _erasure_preview(contact),
        },
        status=status,
    )


def _erasure_preview(contact: Contact) -> dict[str, Any]:
    """What an erasure of this contact would delete and keep, in numbers and labels (no values
    beyond the identifiers the admin reads on the contact page anyway)."""
    identifiers = [
        (label, value)
        for label, value in (
            ("Email", contact.email),
            ("Phone", contact.phone),
            ("App user id", contact.app_user_id),
            ("Name", contact.display_name if contact.first_name or contact.last_name else ""),
        )
        if value
    ]
    events = contact.events.all()
    return {
        "identifiers": identifiers,
        "event_values": EventPersonalData.objects.filter(event__contact=contact).count(),
        "identity_values": IdentityPersonalData.objects.filter(identity_event__contact=contact).count(),
        "mails": LifecycleMessage.objects.filter(contact=contact).exclude(to_email="").count(),
        "suppressions": contact.suppressions.count(),
        "events": events.count(),
        "legacy_events": events.filter(hash_version=1).count(),
        "withdrawn": list(
            ConsentState.objects.filter(
                contact=contact, status__in=[ConsentStatus.OPTED_IN, ConsentStatus.PENDING]
            )
            .select_related("purpose")
            .order_by("purpose__code")
        ),
    }


@login_required
@permission_required(ERASE_PERMISSION, raise_exception=True)
@require_POST
def contact_legal_hold_set(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    if contact.erased_at is not None:
        return erased_refusal(request, contact, "A legal hold keeps a person's data; this one's is erased.")
    form = LegalHoldForm(request.POST)
    if not form.is_valid():
        messages.error(request, "No legal hold set: " + " ".join(str(e) for e in form.errors["reason"]))
        return HttpResponseRedirect(f"{contact.get_absolute_url()}#erasure")
    hold = services.legal_hold_set(
        contact=contact,
        reason=form.cleaned_data["reason"],
        actor_user=request.user,  # type: ignore[arg-type]
    )
    messages.success(
        request, f"Legal hold {hold.pk} set: nobody erases contact {contact.pk} while it stands."
    )
    return HttpResponseRedirect(f"{contact.get_absolute_url()}#erasure")


@login_required
@permission_required(ERASE_PERMISSION, raise_exception=True)
@require_POST
def contact_legal_hold_lift(request: HttpRequest, contact_id: int, hold_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    hold = get_object_or_404(LegalHold, pk=hold_id, contact=contact)
    if hold.lifted_at is not None:
        messages.info(request, f"Legal hold {hold.pk} was lifted before, by {hold.lifted_by}.")
    else:
        services.legal_hold_lift(hold=hold, actor_user=request.user)  # type: ignore[arg-type]
        still = legal_hold_open(contact)
        messages.success(
            request,
            f"Legal hold {hold.pk} lifted."
            + (f" Legal hold {still.pk} still stands." if still else " The contact may be erased now."),
        )
    return HttpResponseRedirect(f"{contact.get_absolute_url()}#erasure")


def erased_refusal(request: HttpRequest, contact: Contact, why: str) -> HttpResponse:
    """409 for anything that would record about (or keep data of) an erased contact: nothing is
    recorded, and the page says why."""
    return render(
        request,
        "compliance/contact_erased_refusal.html",
        {"contact": contact, "why": why, "erasure": ErasureRequest.objects.filter(contact=contact).first()},
        status=409,
    )
