"""The overview (the home page) and the trends page. Each view checks who may see it, then reads.

The overview is per role: officers and admins (who watch the sync) see every tile; auditors see
the ledger's integrity and their way to the reports; somebody without a role, that they have none.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import tablib
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from compliance import charts, services
from compliance.models import AccessLog, ConsentStatus, Purpose, Source
from compliance.roles import ROLE_LABELS, roles_of
from sync.selectors import discrepancies_open_counts
from workbench import selectors

DASHBOARD_PERMISSION = "compliance.view_dashboards"
HISTORY_PERMISSION = "compliance.view_history"
REPORTS_PERMISSION = "compliance.download_reports"
# The trends page's range: 12 months by default, at most about three years.
DEFAULT_DAYS = 364
MAX_DAYS = 3 * 366
EXPORT_FORMATS = ("csv", "xlsx")  # ?_export=, django-tables2's convention


@login_required
def overview(request: HttpRequest) -> HttpResponse:
    user = request.user
    now = timezone.now()
    context: dict[str, Any] = {
        "role_names": [label for role, label in ROLE_LABELS.items() if role in roles_of(user)],
        "watches_sync": user.has_perm(DASHBOARD_PERMISSION),
        "reads_ledger": user.has_perm(HISTORY_PERMISSION),
        "reads_reports": user.has_perm(REPORTS_PERMISSION),
    }
    if context["reads_ledger"] or context["reads_reports"]:
        context["integrity"] = selectors.integrity(now=now)
    if context["watches_sync"]:
        live = selectors.consent_live()
        purposes = selectors.consent_now(live=live)
        context.update(
            purposes=purposes,
            consent_chart=_consent_now_chart(purposes),
            changes=selectors.changes_this_week(today=now.date(), live=live),
            withdrawals=selectors.withdrawals_waiting(now=now),
            deadline_days=settings.OPT_OUT_DEADLINE_BUSINESS_DAYS,
            discrepancies=discrepancies_open_counts(),
            error_rates=selectors.error_rates(now=now),
        )
    return render(request, "workbench/overview.html", context)


def _consent_now_chart(purposes: list[selectors.PurposeNow]) -> charts.Chart:
    labels = dict(ConsentStatus.choices)
    return charts.stacked_bar_chart(
        title="Consent now, per purpose",
        description="Contacts per purpose by their current decision: "
        + "; ".join(
            f"{p.code}: {p.opted_in} of {p.total} opted in"
            + (f" ({p.opt_in_rate:.1f} %)" if p.opt_in_rate is not None else "")
            for p in purposes
        )
        + ".",
        categories=[p.code for p in purposes],
        series=[(s, labels[s], [p.counts.get(s, 0) for p in purposes]) for s in selectors.STATUSES],
        width=420,
    )


class TrendsForm(forms.Form):
    since = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}))
    purpose = forms.ChoiceField(required=False)
    source = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        purposes = Purpose.objects.order_by("code").values_list("code", "name")
        self.fields["purpose"].choices = [("", "Every purpose"), *purposes]  # type: ignore[attr-defined]
        self.fields["source"].choices = [("", "Every source"), *Source.choices]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until:
            if since > until:
                self.add_error("until", "The end of the range is before its start.")
            elif (until - since).days > MAX_DAYS:
                self.add_error("since", "Choose at most three years.")
        return data


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def trends(request: HttpRequest) -> HttpResponse:
    """Weekly consent changes and opt-in rates, Zoho error rates and credits, over a date range;
    ?_export=csv (or xlsx)&chart=<key> gives one chart's table as a file."""
    today = timezone.now().date()
    data = request.GET.copy()
    data.setdefault("until", today.isoformat())
    data.setdefault("since", (today - timedelta(days=DEFAULT_DAYS)).isoformat())
    form = TrendsForm(data)
    if not form.is_valid():
        return render(request, "workbench/trends.html", {"form": form, "charts": []}, status=400)
    chosen = form.cleaned_data
    drawn = _trend_charts(chosen["since"], chosen["until"], chosen["purpose"], chosen["source"])
    fmt = request.GET.get("_export", "")
    if fmt in EXPORT_FORMATS:
        key = request.GET.get("chart", "")
        chart = dict(drawn).get(key)
        if chart is None:
            return HttpResponse(f"No chart {key!r} on this page.", status=404, content_type="text/plain")
        services.access_log_record(
            request=request,
            kind=AccessLog.Kind.EXPORT,
            detail=f"trends {key} {chosen['since']}..{chosen['until']} "
            f"purpose={chosen['purpose'] or 'any'} source={chosen['source'] or 'any'}",
        )
        return _export(chart, fmt=fmt, filename=f"trends-{key}-{chosen['since']}-{chosen['until']}.{fmt}")
    query = request.GET.copy()
    query.pop("_export", None)
    query.pop("chart", None)
    for name in ("since", "until"):
        query[name] = chosen[name].isoformat()
    return render(
        request,
        "workbench/trends.html",
        {"form": form, "charts": drawn, "query": query.urlencode()},
    )


def _trend_charts(since: date, until: date, purpose: str, source: str) -> list[tuple[str, charts.Chart]]:
    consent = selectors.consent_trends(since=since, until=until, purpose=purpose, source=source)
    calls = selectors.call_trends(since=since, until=until)
    weeks = [f"{w:%Y-%m-%d}" for w in consent.weeks]
    scope = (
        f"from {since:%Y-%m-%d} to {until:%Y-%m-%d}"
        + (f", purpose {purpose}" if purpose else "")
        + (f", source {dict(Source.choices).get(source, source)}" if source else "")
    )
    source_labels = dict(Source.choices)
    by_source = sorted(consent.changes_by_source.items(), key=lambda kv: (-sum(kv[1]), kv[0]))
    # Every purpose the rates show, in one order, so that a purpose has the same colour in both charts.
    codes = sorted(consent.opt_in_rate)
    by_purpose = [(code, consent.changes_by_purpose.get(code, [0] * len(weeks))) for code in codes]
    days = [f"{d:%Y-%m-%d}" for d in calls.days]
    months = [f"{m:%Y-%m}" for m in calls.months]
    return [
        (
            "changes",
            charts.stacked_column_chart(
                title="Consent changes per week, by source",
                description=f"Consent decisions recorded per week (weeks start on Monday, by when the "
                f"person acted) {scope}, each column split by the source that recorded them: "
                f"{sum(sum(v) for _k, v in by_source)} in all.",
                categories=weeks,
                series=[(key, source_labels.get(key, key), values) for key, values in by_source],
            ),
        ),
        (
            "purposes",
            charts.stacked_column_chart(
                title="Consent changes per week, by purpose",
                description=f"The same decisions {scope}, each column split by purpose.",
                categories=weeks,
                series=[(code, code, values) for code, values in by_purpose],
            ),
        ),
        (
            "optin",
            charts.line_chart(
                title="Opt-in rate per purpose",
                description="The share of contacts with a decision on the purpose who are opted in, at "
                f"the end of each week, {scope.split(', source')[0]} (of every source).",
                categories=weeks,
                series=[(code, code, consent.opt_in_rate[code]) for code in codes],
                maximum=100,
            ),
        ),
        (
            "errors-daily",
            charts.line_chart(
                title="Zoho API error rate per day, by endpoint",
                description=f"Failed calls as a percentage of each endpoint's calls per day (UTC), "
                f"from {since:%Y-%m-%d} to {until:%Y-%m-%d}; a gap is a day without calls.",
                categories=days,
                series=[(e.endpoint, e.endpoint, e.rates()) for e in calls.daily],
            ),
        ),
        (
            "errors-monthly",
            charts.line_chart(
                title="Zoho API error rate per month, by endpoint",
                description=f"Failed calls as a percentage of each endpoint's calls per month, from "
                f"{since:%Y-%m-%d} to {until:%Y-%m-%d} (the first and last months may be partial).",
                categories=months,
                series=[(e.endpoint, e.endpoint, e.rates()) for e in calls.monthly],
            ),
        ),
        (
            "credits",
            charts.column_chart(
                title="CRM credits per day",
                description=f"API credits Zoho CRM charged per day (UTC) from {since:%Y-%m-%d} to "
                f"{until:%Y-%m-%d}: {sum(calls.credits_per_day)} in all.",
                points=list(zip(days, calls.credits_per_day, strict=True)),
                value_label="Credits",
                width=720,
            ),
        ),
    ]


def _export(chart: charts.Chart, *, fmt: str, filename: str) -> HttpResponse:
    """The chart's table as CSV or XLSX (tablib): the rows the page shows, a missing value empty."""
    data = tablib.Dataset(headers=[chart.headers[0] or "Period", *chart.headers[1:]])
    for row in chart.rows:
        data.append(["" if cell is None else cell for cell in row])
    content_type = (
        "text/csv; charset=utf-8"
        if fmt == "csv"
        else "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    response = HttpResponse(data.export(fmt), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
