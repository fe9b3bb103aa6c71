"""django-tables2 tables for the sync pages: presentation only, no rules, no per-row queries."""

from __future__ import annotations

import json
from typing import Any

import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html

from compliance.tables import DateTimeColumn
from sync.models import Alert, Discrepancy, ReconciliationRun

NUMBER = {"td": {"class": "num"}, "th": {"class": "num"}}


def crm_value(value: Any) -> str:
    """A CRM value as it reads best: JSON for structures, ``true``/``false``/``null`` like Zoho."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class DiscrepancyTable(tables.Table):
    opened_at = DateTimeColumn(
        verbose_name="Opened",
        linkify=lambda record: reverse("sync:discrepancy_detail", args=[record.pk]),
    )
    contact = tables.Column(
        accessor="contact__display_name",
        verbose_name="Contact",
        linkify=lambda record: record.contact.get_absolute_url(),
    )
    crm_field = tables.Column(verbose_name="CRM field", empty_values=())
    kind = tables.Column()
    status = tables.Column()
    expected = tables.Column(verbose_name="Ledger says", empty_values=())
    actual = tables.Column(verbose_name="Zoho shows", empty_values=())
    retries = tables.Column(attrs=NUMBER)
    next_retry_at = DateTimeColumn(verbose_name="Next retry", default="—")

    class Meta:
        model = Discrepancy
        fields = (
            "opened_at",
            "contact",
            "crm_field",
            "kind",
            "status",
            "expected",
            "actual",
            "retries",
            "next_retry_at",
        )
        orderable = False
        attrs = {"class": "data discrepancies"}
        empty_text = "No discrepancy matches."

    def render_crm_field(self, value: str) -> str:
        return format_html("<code>{}</code>", value) if value else "(whole record)"

    def render_kind(self, value: str, record: Discrepancy) -> str:
        return record.get_kind_display()

    def render_status(self, value: str, record: Discrepancy) -> str:
        return format_html('<span class="badge badge-{}">{}</span>', value, record.get_status_display())

    def render_expected(self, value: Any) -> str:
        return format_html("<code>{}</code>", crm_value(value))

    def render_actual(self, value: Any) -> str:
        return format_html("<code>{}</code>", crm_value(value))


ACKNOWLEDGE_BUTTON = """{% if record.acknowledged_at %}{{ record.acknowledged_by|default:"—" }}, {{ record.acknowledged_at|date:"Y-m-d H:i" }}{% else %}
<form method="post" action="{% url 'sync:alert_acknowledge' record.pk %}" class="inline">{% csrf_token %}
<button type="submit" class="small">Acknowledge</button></form>{% endif %}"""


class AlertTable(tables.Table):
    created_at = DateTimeColumn(verbose_name="Raised")
    kind = tables.Column()
    message = tables.Column()
    discrepancy = tables.Column(accessor="discrepancy_id", verbose_name="Discrepancy", default="—")
    acknowledged = tables.TemplateColumn(
        ACKNOWLEDGE_BUTTON, verbose_name="Acknowledged", empty_values=(), orderable=False
    )

    class Meta:
        model = Alert
        fields = ("created_at", "kind", "message", "discrepancy", "acknowledged")
        orderable = False
        attrs = {"class": "data alerts"}
        row_attrs = {"class": lambda record: "unacknowledged" if record.acknowledged_at is None else ""}
        empty_text = "No alert waits for acknowledgement."

    def render_kind(self, value: str, record: Alert) -> str:
        return record.get_kind_display()

    def render_message(self, value: str) -> str:
        return format_html('<span class="message">{}</span>', value)

    def render_discrepancy(self, value: int) -> str:
        return format_html('<a href="{}">#{}</a>', reverse("sync:discrepancy_detail", args=[value]), value)


class EndpointTable(tables.Table):
    """Rows are `sync.selectors.EndpointStats`."""

    service = tables.Column()
    operation = tables.Column(verbose_name="Endpoint")
    calls = tables.Column(attrs=NUMBER)
    errors = tables.Column(attrs=NUMBER)
    error_rate = tables.Column(verbose_name="Error rate", attrs=NUMBER)
    throttled = tables.Column(verbose_name="429s", attrs=NUMBER)
    credits = tables.Column(attrs=NUMBER)
    avg_ms = tables.Column(verbose_name="Mean latency", default="—", attrs=NUMBER)

    class Meta:
        orderable = False
        attrs = {"class": "data endpoints"}
        empty_text = "No call to Zoho in the last 24 hours."

    def render_operation(self, value: str) -> str:
        return format_html("<code>{}</code>", value)

    def render_error_rate(self, value: float) -> str:
        return format_html('<span class="{}">{} %</span>', "error" if value else "", f"{value:.1f}")

    def render_avg_ms(self, value: float) -> str:
        return f"{value:,.0f} ms"


class ReconciliationRunTable(tables.Table):
    started_at = DateTimeColumn(verbose_name="Started")
    finished_at = DateTimeColumn(verbose_name="Finished", default="running")
    method = tables.Column()
    records_read = tables.Column(verbose_name="CRM records read", attrs=NUMBER)
    contacts_compared = tables.Column(verbose_name="Contacts compared", attrs=NUMBER)
    opened = tables.Column(verbose_name="Discrepancies opened", attrs=NUMBER)
    resolved = tables.Column(verbose_name="Resolved", attrs=NUMBER)
    error = tables.Column(default="")

    class Meta:
        model = ReconciliationRun
        fields = (
            "started_at",
            "finished_at",
            "method",
            "records_read",
            "contacts_compared",
            "opened",
            "resolved",
            "error",
        )
        orderable = False
        attrs = {"class": "data"}
        empty_text = "No reconciliation has run yet."

    def render_error(self, value: str) -> str:
        return format_html('<span class="error">{}</span>', value)
