"""The re-permission pages (staff, behind login): after a policy version is published, who still
cites an older one, their CSV export (logged), an admin's action on them, and each run's progress
and response rate. The work is in `compliance.lifecycle.repermission`."""

from __future__ import annotations

from typing import Any

import django_tables2 as tables
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_tables2 import RequestConfig
from django_tables2.paginators import LazyPaginator

from compliance import charts, selectors
from compliance.lifecycle import repermission
from compliance.models import RepermissionRun
from compliance.tables import DateTimeColumn
from compliance.views import HISTORY_PERMISSION, POLICY_PUBLISH_PERMISSION, _export, _export_format

PER_PAGE = 50


class RepermissionTable(tables.Table):  # type: ignore[misc]
    """The current opt-ins a re-permission asks about (rows are ConsentState)."""

    contact = tables.Column(
        accessor="contact_id",
        verbose_name="Contact",
        linkify=lambda record: reverse("compliance:contact_detail", args=[record.contact_id]),
    )
    email = tables.Column(accessor="contact__email", verbose_name="Email", default="")
    purpose = tables.Column(accessor="purpose__code", verbose_name="Purpose")
    policy_version = tables.Column(
        accessor="policy_version__label", verbose_name="Policy version cited", empty_values=()
    )
    occurred_at = DateTimeColumn(verbose_name="Opted in at")
    source = tables.Column(accessor="event__source", verbose_name="Source", default="")
    legacy = tables.Column(verbose_name="Imported without own evidence", orderable=False, empty_values=())

    class Meta:
        attrs = {"class": "data repermission"}
        empty_text = "No current opt-in needs re-permission."
        order_by = ()

    def render_legacy(self, value: bool | None) -> str:
        return "yes" if value else "no"

    def value_legacy(self, value: bool | None) -> str:
        return "yes" if value else "no"

    def render_policy_version(self, value: str | None) -> str:
        return value or "none"

    def value_policy_version(self, value: str | None) -> str:
        return value or "none"


class RepermissionForm(forms.Form):
    action = forms.ChoiceField(label="Action", widget=forms.RadioSelect)
    purposes = forms.MultipleChoiceField(label="Purposes", widget=forms.CheckboxSelectMultiple)
    include_legacy = forms.BooleanField(
        label="Also ask the opt-ins imported without the person's own evidence", required=False, initial=True
    )

    def __init__(self, *args: Any, counts: list[repermission.PurposeCount], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        action: Any = self.fields["action"]
        action.choices = repermission.repermission_actions()
        self.fields["action"].initial = "mail"
        offered = [c for c in counts if c.superseded or c.legacy]
        purposes: Any = self.fields["purposes"]
        purposes.choices = [
            (c.purpose.code, f"{c.purpose.name} ({c.superseded + c.legacy:,} at most)") for c in offered
        ]
        self.fields["purposes"].initial = [c.purpose.code for c in offered]


def _filters(request: HttpRequest) -> tuple[list[str], bool]:
    purposes = [p for p in request.GET.getlist("purpose") if p]
    include_legacy = request.GET.get("legacy", "1") != "0"
    return purposes, include_legacy


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def repermission_page(request: HttpRequest, policy_id: int) -> HttpResponseBase:
    """Per purpose, the current opt-ins citing an older version (or none) and those imported without
    the person's own evidence; who they are (paged, CSV/XLSX export, logged); the action (admins)."""
    policy = get_object_or_404(selectors.policy_versions(), pk=policy_id)
    counts = repermission.repermission_counts(policy=policy)
    purposes, include_legacy = _filters(request)
    listed = repermission.repermission_list(policy=policy, purposes=purposes, include_legacy=include_legacy)
    table = RepermissionTable(listed)
    if request.method == "GET" and _export_format(request):
        return _export(
            request,
            table,
            name=f"repermission-{policy.label}",
            contact_ids_of=lambda rows: [row.contact_id for row in rows],
        )
    may_act = request.user.has_perm(POLICY_PUBLISH_PERMISSION)
    form = RepermissionForm(counts=counts)
    confirm: dict[str, Any] | None = None
    status = 200
    if request.method == "POST":
        if not may_act:
            raise PermissionDenied("Only admins start a re-permission.")
        form = RepermissionForm(request.POST, counts=counts)
        if form.is_valid():
            data = form.cleaned_data
            asked = repermission.repermission_asked(
                counts, purposes=data["purposes"], include_legacy=data["include_legacy"]
            )
            if request.POST.get("confirmed") == "yes":
                try:
                    run = repermission.repermission_start(
                        policy=policy,
                        action=data["action"],
                        purposes=data["purposes"],
                        include_legacy=data["include_legacy"],
                        user=request.user,
                    )
                except repermission.RepermissionRefused as refused:
                    form.add_error(None, str(refused))
                    status = 400
                else:
                    messages.success(request, f"Re-permission started: {run.total:,} opt-ins to ask.")
                    return HttpResponseRedirect(reverse("lifecycle:repermission_run", args=[run.pk]))
            else:
                confirm = {
                    "asked": asked,
                    "action_label": dict(repermission.repermission_actions())[data["action"]],
                    "purposes": data["purposes"],
                }
        else:
            status = 400
    # Millions of opt-ins may be listed: no count of them (the figures above say how many).
    RequestConfig(request, paginate={"per_page": PER_PAGE, "paginator_class": LazyPaginator}).configure(table)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("_export", None)
    return render(
        request,
        "lifecycle/repermission.html",
        {
            "policy": policy,
            "counts": counts,
            "totals": {
                "older": sum(c.older for c in counts),
                "none": sum(c.none for c in counts),
                "legacy": sum(c.legacy for c in counts),
                "current": sum(c.current for c in counts),
            },
            "table": table,
            "purposes_shown": purposes,
            "include_legacy": include_legacy,
            "export_query": query.urlencode(),
            "may_act": may_act,
            "form": form,
            "confirm": confirm,
            "runs": list(repermission.repermission_runs(policy=policy)[:20]),
        },
        status=status,
    )


def response_chart(responses: repermission.Responses) -> charts.Chart:
    return charts.line_chart(
        title="Response rate over time",
        description=(
            f"Of the {responses.asked:,} people asked, the share who opted in again under policy "
            f"{responses.run.policy.label}, day by day since the run started."
        ),
        categories=[f"{day:%Y-%m-%d}" for day in responses.days],
        series=[("rate", "Answered, cumulative (%)", responses.rate)],
        maximum=100,
    )


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def repermission_run(request: HttpRequest, run_id: int) -> HttpResponse:
    """A run: who started it, when, how many; its progress (the page reloads itself while it runs,
    no JavaScript); the response rate over time (SVG chart and its table)."""
    run = get_object_or_404(repermission.repermission_runs(), pk=run_id)
    responses = repermission.repermission_responses(run=run)
    chart = response_chart(responses)
    return render(
        request,
        "lifecycle/repermission_run.html",
        {
            "run": run,
            "responses": responses,
            "chart": chart,
            "running": run.status in (RepermissionRun.Status.QUEUED, RepermissionRun.Status.RUNNING),
        },
    )
