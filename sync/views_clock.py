"""The opt-out clock page: withdrawals not yet in effect everywhere, oldest first, and how long
withdrawals take (`sync.optout_clock`). Officers and admins (the dashboards' permission)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_tables2 as tables
from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.utils.html import format_html
from django_tables2 import RequestConfig

from compliance.tables import DateTimeColumn
from sync import optout_clock
from sync.models import WithdrawalClock
from sync.views import DASHBOARD_PERMISSION, _export, _export_query

PER_PAGE = 50
NUMBER = {"td": {"class": "num"}, "th": {"class": "num"}}
STATE_CLASS = {"on time": "badge-opted_in", "due soon": "badge-pending", "overdue": "badge-opted_out"}


class OpenWithdrawalTable(tables.Table):  # type: ignore[misc]
    """One open withdrawal a row, paginated by the database; age, what is missing and the state
    are computed for the rows shown (and for every row of an export) from the clock itself."""

    recorded_at = DateTimeColumn(verbose_name="Recorded")
    event = tables.Column(accessor="event_id", verbose_name="Event")
    contact = tables.Column(verbose_name="Contact")
    purpose = tables.Column(accessor="purpose__code", verbose_name="Purpose")
    age = tables.Column(empty_values=(), verbose_name="Age (business days)", attrs=NUMBER)
    deadline_at = DateTimeColumn(verbose_name="Deadline")
    missing = tables.Column(empty_values=(), verbose_name="Waiting for")
    state = tables.Column(empty_values=(), verbose_name="State")

    class Meta:
        orderable = False
        attrs = {"class": "data optout-clock"}
        empty_text = "Every withdrawal is in effect in Zoho CRM and in every Campaigns list."

    def __init__(self, data: QuerySet[WithdrawalClock], *, now: datetime, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self.now = now

    def render_contact(self, value: Any) -> str:
        return format_html('<a href="{}">{}</a>', value.get_absolute_url(), value)

    def value_contact(self, record: WithdrawalClock) -> str:
        return str(record.contact_id)

    def render_age(self, record: WithdrawalClock) -> str:
        return f"{optout_clock.clock_age(record, now=self.now):.1f}"

    def value_age(self, record: WithdrawalClock) -> str:
        return f"{optout_clock.clock_age(record, now=self.now):.3f}"

    def render_missing(self, record: WithdrawalClock) -> str:
        return ", ".join(optout_clock.clock_missing(record))

    def value_missing(self, record: WithdrawalClock) -> str:
        return self.render_missing(record)

    def render_state(self, record: WithdrawalClock) -> str:
        state = optout_clock.clock_state(record, now=self.now)
        return format_html('<span class="badge {}">{}</span>', STATE_CLASS[state], state)

    def value_state(self, record: WithdrawalClock) -> str:
        return optout_clock.clock_state(record, now=self.now)


@login_required
@permission_required(DASHBOARD_PERMISSION, raise_exception=True)
def optout_clock_page(request: HttpRequest) -> HttpResponseBase:
    now = timezone.now()
    clocks = optout_clock.withdrawal_clocks_pending()
    table = OpenWithdrawalTable(clocks, now=now)
    exported = _export(
        request,
        table,
        name="opt-out-clock",
        contact_ids=lambda: list(clocks.values_list("contact_id", flat=True).distinct()),
    )
    if exported is not None:
        return exported
    RequestConfig(request, paginate={"per_page": PER_PAGE}).configure(table)
    return render(
        request,
        "sync/optout_clock.html",
        {
            "table": table,
            "counts": optout_clock.withdrawal_clocks_pending_counts(now=now),
            "effect": optout_clock.time_to_effect_recent(now=now),
            "deadline_days": settings.OPT_OUT_DEADLINE_BUSINESS_DAYS,
            "alert_days": settings.OPT_OUT_ALERT_BUSINESS_DAYS,
            "holidays_country": settings.COMPLIANCE_HOLIDAYS_COUNTRY,
            "export_query": _export_query(request),
        },
    )
