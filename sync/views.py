"""Sync pages: discrepancies, health, alerts. Each view checks who may act, then calls one selector or service."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseBase,
    QueryDict,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from django_tables2 import RequestConfig, tables
from django_tables2.export import TableExport

from compliance import charts, services
from compliance.models import AccessLog
from sync import bulk, interventions, selectors
from sync.filters import AlertFilter, DiscrepancyFilter
from sync.models import Alert, BulkAction, Discrepancy
from sync.tables import (
    AlertTable,
    DiscrepancyGroupTable,
    DiscrepancyTable,
    EndpointTable,
    PlainExport,
    ReconciliationRunTable,
    crm_value,
)

DASHBOARD_PERMISSION = "compliance.view_dashboards"
FIX_PERMISSION = "compliance.fix_discrepancies"
DISCREPANCIES_PER_PAGE = 25
ALERTS_PER_PAGE = 25
GROUP_ROWS_SHOWN = 25
EXPORT_PARAMETER = "_export"  # django-tables2's convention
EXPORT_FORMATS = ("csv", "xlsx")
# A retry's page reloads itself this long after the run, while the read-backs resolve its rows.
SETTLING = timedelta(minutes=10)

# Evidence keys the verify, push and CRM-change steps write, in the order a person reads them.
EVIDENCE_LABELS = {
    "sent": "What we sent",
    "zoho_answer": "Zoho's answer",
    "readback": "Read-back",
    "Modified_By": "Modified_By",
    "Modified_Time": "Modified_Time",
    "push": "Push",
}


class ResolveForm(forms.Form):
    note = forms.CharField(
        label="Note",
        max_length=interventions.NOTE_MAX_LENGTH,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Why is this resolved? e.g. fixed in Zoho by …"}
        ),
        error_messages={"required": "Write a note saying why this discrepancy is resolved."},
    )


def _export(
    request: HttpRequest,
    table: tables.Table,
    *,
    name: str,
    contact_ids: Callable[[], list[int]] | None = None,
) -> HttpResponseBase | None:
    """The whole filtered table as a file when ``?_export=csv`` (or xlsx) asks; logged as an export
    naming every contact it holds."""
    fmt = request.GET.get(EXPORT_PARAMETER)
    if not fmt:
        return None
    if not TableExport.is_valid_format(fmt) or fmt not in EXPORT_FORMATS:
        return HttpResponseBadRequest(
            f"Unknown export format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}."
        )
    RequestConfig(request, paginate=False).configure(table)
    export = PlainExport(fmt, table)
    rows = len(export.dataset)
    services.access_log_record(
        request=request,
        kind=AccessLog.Kind.EXPORT,
        contact_ids=contact_ids() if contact_ids is not None else [],
        detail=f"{name} {fmt.upper()} ({rows} row{'s' if rows != 1 else ''})",
    )
    return export.response(f"{name}.{fmt}")


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def discrepancy_list(request: HttpRequest) -> HttpResponseBase:
    filterset = DiscrepancyFilter(
        request.GET, queryset=selectors.discrepancies_list(), fields=selectors.discrepancy_fields()
    )
    rows = filterset.qs if filterset.is_valid() else selectors.discrepancies_list().none()
    table = DiscrepancyTable(rows)
    exported = _export(
        request,
        table,
        name="discrepancies",
        contact_ids=lambda: list(rows.values_list("contact_id", flat=True).distinct()),
    )
    if exported is not None:
        return exported
    RequestConfig(request, paginate={"per_page": DISCREPANCIES_PER_PAGE}).configure(table)
    return render(
        request,
        "sync/discrepancy_list.html",
        {
            "filter": filterset,
            "form": filterset.form,
            "table": table,
            "counts": selectors.discrepancies_open_counts(),
            "export_query": _export_query(request),
        },
    )


def _export_query(request: HttpRequest) -> str:
    query = request.GET.copy()
    for key in ("page", EXPORT_PARAMETER):
        query.pop(key, None)
    query[EXPORT_PARAMETER] = "csv"
    return query.urlencode()


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
    """The calls of the last 24 hours (per hour), 7 or 30 days (per day): ?window=24h, 7d or 30d."""
    health = selectors.sync_health(window=request.GET.get("window", "24h"))
    endpoints = EndpointTable(health.endpoints)
    endpoints.empty_text = f"No call to Zoho in the last {health.window_label}."
    per_day = health.per == "day"
    labels = [f"{p.hour:%m-%d}" if per_day else f"{p.hour:%H:00}" for p in health.hours]
    chart = charts.stacked_column_chart(
        title=f"Calls to Zoho per {health.per}, last {health.window_label}",
        description=(
            f"Calls to Zoho per {health.per} (UTC) from {health.since:%Y-%m-%d %H:%M} to "
            f"{health.until:%Y-%m-%d %H:%M}: {health.totals.calls} calls, {health.totals.errors} errors "
            f"({health.totals.error_rate:.1f} %), {health.totals.throttled} of them 429s. "
            "Each column is split into calls that succeeded and calls that failed."
        ),
        categories=labels,
        series=[
            ("ok", "Succeeded", [p.calls - p.errors for p in health.hours]),
            ("errors", "Failed", [p.errors for p in health.hours]),
        ],
    )
    return render(
        request,
        "sync/sync_health.html",
        {
            "health": health,
            "chart": chart,
            "windows": [(key, label) for key, (label, _length) in selectors.HEALTH_WINDOWS.items()],
            "endpoints": endpoints,
            "runs": ReconciliationRunTable(health.reconciliation_runs),
        },
    )


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def alert_list(request: HttpRequest) -> HttpResponseBase:
    filterset = AlertFilter(request.GET, queryset=selectors.alerts_list(include_acknowledged=True))
    rows = filterset.qs if filterset.is_valid() else Alert.objects.none()
    table = AlertTable(rows)
    if filterset.show_all:
        table.empty_text = "No alert matches."
    exported = _export(request, table, name="alerts")
    if exported is not None:
        return exported
    RequestConfig(request, paginate={"per_page": ALERTS_PER_PAGE}).configure(table)
    return render(
        request,
        "sync/alert_list.html",
        {
            "table": table,
            "filter": filterset,
            "form": filterset.form,
            "show_all": filterset.show_all,
            "export_query": _export_query(request),
        },
    )


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


# -- discrepancies in bulk (sync.bulk) ---------------------------------------------------------


def _group_of(request: HttpRequest, data: Any) -> bulk.Group:
    kind = data.get("kind", "")
    if kind not in Discrepancy.Kind.values:
        raise Http404("No such group of discrepancies")
    return bulk.discrepancy_group_get(kind=kind, crm_field=data.get("field", ""), cause=data.get("cause", ""))


def _group_query(group: bulk.Group) -> str:
    query = QueryDict(mutable=True)
    query.update({"kind": group.kind, "field": group.crm_field, "cause": group.cause})
    return query.urlencode()


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def discrepancy_groups(request: HttpRequest) -> HttpResponse:
    """Open discrepancies grouped by likely cause and CRM field, the largest group first."""
    groups = bulk.discrepancy_groups()
    table = DiscrepancyGroupTable(groups)
    return render(
        request,
        "sync/discrepancy_groups.html",
        {"table": table, "total": sum(g.count for g in groups), "groups": len(groups)},
    )


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def discrepancy_group(request: HttpRequest) -> HttpResponse:
    """One group: its open rows, its recent bulk actions, and (for admins) what can be done to all."""
    group = _group_of(request, request.GET)
    table = DiscrepancyTable(group.rows().select_related("contact").order_by("-opened_at", "-id"))
    RequestConfig(request, paginate={"per_page": GROUP_ROWS_SHOWN}).configure(table)
    return render(
        request,
        "sync/discrepancy_group.html",
        {
            "group": group,
            "group_query": _group_query(group),
            "table": table,
            "actions": [(a, BulkAction.Action(a).label) for a in group.actions()],
            "recent": bulk.bulk_actions_of_group(group=group),
        },
    )


class BulkConfirmForm(forms.Form):
    action = forms.ChoiceField(choices=BulkAction.Action.choices, widget=forms.HiddenInput)
    seen_count = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    seen_max_id = forms.IntegerField(min_value=0, widget=forms.HiddenInput)
    note = forms.CharField(
        required=False,
        max_length=interventions.NOTE_MAX_LENGTH,
        widget=forms.Textarea(
            attrs={"rows": 3, "placeholder": "Why? e.g. field permission fixed in Zoho by …"}
        ),
    )

    def __init__(self, *args: Any, confirming: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.confirming = confirming  # the POST of the confirmation (a GET shows the step)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        resolving = data.get("action") == BulkAction.Action.RESOLVE
        if self.confirming and resolving and not (data.get("note") or "").strip():
            self.add_error("note", "Write a note saying why these discrepancies are resolved.")
        return data


@login_required
@permission_required(FIX_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def discrepancy_group_confirm(request: HttpRequest) -> HttpResponse:
    """The confirmation step of a bulk action: what it does, to how many; POST records and queues it."""
    group = _group_of(request, request.GET)
    posted = request.method == "POST"
    form = BulkConfirmForm(request.POST if posted else request.GET, confirming=posted)
    status = 200
    if form.is_valid() and request.method == "POST":
        data = form.cleaned_data
        try:
            action = bulk.bulk_action_request(
                action=data["action"],
                group=group,
                seen_count=data["seen_count"],
                seen_max_id=data["seen_max_id"],
                by=request.user,
                note=data["note"],
            )
        except interventions.OperatorError as exc:
            messages.error(request, str(exc))
            status = 400
        else:
            return redirect(action)
    elif request.method == "POST":
        status = 400
    seen = form.cleaned_data if form.is_valid() else {}
    still = (
        group.rows().filter(pk__lte=seen["seen_max_id"]).count() if seen.get("seen_max_id") else group.count
    )
    action_value = request.POST.get("action") or request.GET.get("action", "")
    if action_value not in BulkAction.Action.values:
        raise Http404("No such bulk action")
    return render(
        request,
        "sync/discrepancy_group_confirm.html",
        {
            "group": group,
            "group_query": _group_query(group),
            "form": form,
            "action": action_value,
            "action_label": BulkAction.Action(action_value).label,
            "seen_count": seen.get("seen_count", group.count),
            "still": still,
            "allowed": action_value in group.actions(),
        },
        status=status,
    )


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def bulk_action_detail(request: HttpRequest, bulk_id: int) -> HttpResponse:
    """A bulk action's progress (the page reloads itself while it runs), then its outcome."""
    action = get_object_or_404(BulkAction, pk=bulk_id)
    group = bulk.discrepancy_group_get(kind=action.kind, crm_field=action.crm_field, cause=action.hint)
    still_open = group.rows().filter(pk__lte=action.seen_max_id).count()
    response = render(
        request,
        "sync/bulk_action_detail.html",
        {
            "bulk": action,
            "group": group,
            "group_query": _group_query(group),
            "still_open": still_open,
            "changed": action.seen_count - action.matched if action.finished_at else 0,
        },
    )
    running = action.status in (BulkAction.Status.QUEUED, BulkAction.Status.RUNNING)
    # A retry resolves its rows when their pushes are read back, shortly after it is done.
    settling = (
        action.action == BulkAction.Action.RETRY
        and still_open
        and action.finished_at is not None
        and timezone.now() - action.finished_at < SETTLING
    )
    if running or settling:
        response["Refresh"] = "2"
    return response
