"""Sync pages: discrepancies, health, alerts. Each view checks who may act, then calls one selector or service."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST
from django_tables2 import RequestConfig

from sync import interventions, selectors
from sync.models import Alert, Discrepancy
from sync.tables import AlertTable, DiscrepancyTable, EndpointTable, ReconciliationRunTable, crm_value

DASHBOARD_PERMISSION = "compliance.view_dashboards"
FIX_PERMISSION = "compliance.fix_discrepancies"
DISCREPANCIES_PER_PAGE = 25
ALERTS_PER_PAGE = 25
ANY_FIELD = "__any__"

# Evidence keys the verify, push and CRM-change steps write, in the order a person reads them.
EVIDENCE_LABELS = {
    "sent": "What we sent",
    "zoho_answer": "Zoho's answer",
    "readback": "Read-back",
    "Modified_By": "Modified_By",
    "Modified_Time": "Modified_Time",
    "push": "Push",
}


class DiscrepancyFilterForm(forms.Form):
    status = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(required=False)
    field = forms.ChoiceField(required=False, label="CRM field")

    def __init__(self, *args: Any, fields: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = {
            "status": [("", "Any status"), *Discrepancy.Status.choices],
            "kind": [("", "Any kind"), *Discrepancy.Kind.choices],
            "field": [(ANY_FIELD, "Any field")] + [(name, name or "(whole record)") for name in fields],
        }
        for name, options in choices.items():
            cast(forms.ChoiceField, self.fields[name]).choices = options


class ResolveForm(forms.Form):
    note = forms.CharField(
        label="Note",
        max_length=interventions.NOTE_MAX_LENGTH,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Why is this resolved? e.g. fixed in Zoho by …"}
        ),
        error_messages={"required": "Write a note saying why this discrepancy is resolved."},
    )


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def discrepancy_list(request: HttpRequest) -> HttpResponse:
    data = request.GET.copy()
    # Open ones by default (what still needs somebody), on any field.
    data.setdefault("status", Discrepancy.Status.OPEN)
    data.setdefault("field", ANY_FIELD)
    form = DiscrepancyFilterForm(data, fields=selectors.discrepancy_fields())
    chosen = form.cleaned_data if form.is_valid() else {}
    field = chosen.get("field", ANY_FIELD) or ""
    table = DiscrepancyTable(
        selectors.discrepancies_list(
            status=chosen.get("status", ""),
            kind=chosen.get("kind", ""),
            crm_field=None if field == ANY_FIELD else field,
        )
    )
    RequestConfig(request, paginate={"per_page": DISCREPANCIES_PER_PAGE}).configure(table)
    return render(
        request,
        "sync/discrepancy_list.html",
        {"form": form, "table": table, "counts": selectors.discrepancies_open_counts()},
    )


def _evidence_items(evidence: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(label, text, is_structured) for each evidence entry, known keys first."""
    items: list[tuple[str, str, bool]] = []
    keys = [k for k in EVIDENCE_LABELS if k in evidence] + sorted(
        k for k in evidence if k not in EVIDENCE_LABELS
    )
    for key in keys:
        value = evidence[key]
        structured = isinstance(value, dict | list)
        if key == "Modified_By" and isinstance(value, dict):
            text = " ".join(str(value[k]) for k in ("name", "email") if value.get(k))
            text = f"{text} (id {value['id']})" if value.get("id") else text
            structured = False
        elif structured:
            text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
        else:
            text = "—" if value is None else str(value)
        items.append((EVIDENCE_LABELS.get(key, key), text, structured))
    return items


def _discrepancy_page(
    request: HttpRequest,
    discrepancy: Discrepancy,
    *,
    resolve_form: ResolveForm | None = None,
    status: int = 200,
) -> HttpResponse:
    return render(
        request,
        "sync/discrepancy_detail.html",
        {
            "d": discrepancy,
            "expected": crm_value(discrepancy.expected),
            "actual": crm_value(discrepancy.actual),
            "evidence": _evidence_items(discrepancy.evidence or {}),
            "alerts": selectors.alerts_of_discrepancy(discrepancy=discrepancy),
            "max_retries": settings.SYNC_MAX_RETRIES,
            "retryable": discrepancy.kind not in interventions.NOT_RETRYABLE,
            "resolve_form": resolve_form or ResolveForm(),
        },
        status=status,
    )


def _discrepancy_or_404(discrepancy_id: int) -> Discrepancy:
    try:
        return selectors.discrepancy_get(discrepancy_id=discrepancy_id)
    except Discrepancy.DoesNotExist as exc:
        raise Http404("No such discrepancy") from exc


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def discrepancy_detail(request: HttpRequest, discrepancy_id: int) -> HttpResponse:
    return _discrepancy_page(request, _discrepancy_or_404(discrepancy_id))


@login_required
@permission_required(FIX_PERMISSION, raise_exception=True)
@require_POST
def discrepancy_retry(request: HttpRequest, discrepancy_id: int) -> HttpResponse:
    discrepancy = _discrepancy_or_404(discrepancy_id)
    return _operate(
        request,
        discrepancy,
        lambda: interventions.discrepancy_retry_now(discrepancy=discrepancy, by=request.user),
        "Retry scheduled: the next retry sweep re-pushes the ledger's value.",
    )


def _operate(
    request: HttpRequest, discrepancy: Discrepancy, action: Callable[[], object], success: str
) -> HttpResponse:
    """Run an admin's action; its refusal is shown on the discrepancy's page, nothing changed."""
    try:
        action()
    except interventions.OperatorError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return redirect("sync:discrepancy_detail", discrepancy_id=discrepancy.pk)


@login_required
@permission_required(FIX_PERMISSION, raise_exception=True)
@require_POST
def discrepancy_resolve(request: HttpRequest, discrepancy_id: int) -> HttpResponse:
    discrepancy = _discrepancy_or_404(discrepancy_id)
    form = ResolveForm(request.POST)
    if not form.is_valid():
        return _discrepancy_page(request, discrepancy, resolve_form=form, status=400)
    return _operate(
        request,
        discrepancy,
        lambda: interventions.discrepancy_resolve_manually(
            discrepancy=discrepancy, by=request.user, note=form.cleaned_data["note"]
        ),
        "Discrepancy resolved.",
    )


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def sync_health(request: HttpRequest) -> HttpResponse:
    health = selectors.sync_health()
    return render(
        request,
        "sync/sync_health.html",
        {
            "health": health,
            "endpoints": EndpointTable(health.endpoints),
            "runs": ReconciliationRunTable(health.reconciliation_runs),
        },
    )


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def alert_list(request: HttpRequest) -> HttpResponse:
    show_all = request.GET.get("show") == "all"
    table = AlertTable(selectors.alerts_list(include_acknowledged=show_all))
    if show_all:
        table.empty_text = "No alert yet."
    RequestConfig(request, paginate={"per_page": ALERTS_PER_PAGE}).configure(table)
    return render(request, "sync/alert_list.html", {"table": table, "show_all": show_all})


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
@require_POST
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    try:
        interventions.alert_acknowledge_once(alert=alert, by=request.user)
    except interventions.OperatorError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Alert acknowledged.")
    return redirect("sync:alert_list")
