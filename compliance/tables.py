"""django-tables2 tables for the history pages: presentation only, no rules.

django-tables2 ships no type information, so its classes are `Any` to mypy: each class here
that subclasses one says so with `type: ignore[misc]`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_tables2 as tables
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html

from compliance.models import ConsentEvent, ConsentState, Contact, Suppression

DATETIME = "Y-m-d H:i"


class DateTimeColumn(tables.Column):  # type: ignore[misc]
    """A date and time in the current time zone, as the `date` filter formats it.

    django-tables2's own DateTimeColumn compiles and renders a template for every cell; this
    formats in Python, a few microseconds a cell.
    """

    def __init__(self, *, format: str = DATETIME, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.format = format

    def render(self, value: datetime) -> str:
        return date_format(timezone.localtime(value), self.format)


class ContactTable(tables.Table):  # type: ignore[misc]
    name = tables.Column(accessor="display_name", verbose_name="Name", linkify=True, orderable=False)
    email = tables.Column(default="—", empty_values=())  # render_email marks a former email
    phone = tables.Column(default="—")
    app_user_id = tables.Column(verbose_name="App user id", default="—")
    zoho_id = tables.Column(verbose_name="Zoho CRM id", default="—")

    class Meta:
        model = Contact
        fields = ("name", "email", "phone", "app_user_id", "zoho_id")
        orderable = False
        attrs = {"class": "data"}
        empty_text = "No contact matches."

    def render_email(self, value: str | None, record: Any) -> str:
        # selectors.contact_search marks a contact found by an email it no longer has.
        former = getattr(record, "former_email", None)
        if not former:
            return value or "—"
        merged = f", merged into contact {record.merged_into_id}" if record.merged_into_id else ""
        return format_html(
            '{} <small class="former">(former email {}{})</small>', value or "—", former, merged
        )


def _status_badge(record: Any) -> str:
    return format_html('<span class="badge badge-{}">{}</span>', record.status, record.get_status_display())


class ConsentStateTable(tables.Table):  # type: ignore[misc]
    purpose = tables.Column(accessor="purpose__name", verbose_name="Purpose")
    status = tables.Column()
    frequency = tables.Column(default="—")
    occurred_at = DateTimeColumn(verbose_name="Since")
    version = tables.Column(verbose_name="Events")
    policy_version = tables.Column(
        accessor="event__policy_version__label", verbose_name="Policy", default="—"
    )
    refresh_due_at = DateTimeColumn(format="Y-m-d", verbose_name="Refresh due", default="—")

    class Meta:
        model = ConsentState
        fields = (
            "purpose",
            "status",
            "frequency",
            "occurred_at",
            "version",
            "policy_version",
            "refresh_due_at",
        )
        orderable = False
        attrs = {"class": "data"}
        empty_text = "No consent recorded yet."

    def render_status(self, value: str, record: ConsentState) -> str:
        return _status_badge(record)


class ConsentEventTable(tables.Table):  # type: ignore[misc]
    # Choice fields (previous status, source) show their labels: django-tables2 calls get_FOO_display.
    purpose = tables.Column(accessor="purpose__code", verbose_name="Purpose")
    version = tables.Column(verbose_name="Ver.")
    status = tables.Column()
    previous_status = tables.Column(verbose_name="Previous", default="—")
    frequency = tables.Column(default="—")
    source = tables.Column()
    ip_address = tables.Column(verbose_name="IP", default="—")
    policy_version = tables.Column(accessor="policy_version__label", verbose_name="Policy", default="—")
    occurred_at = DateTimeColumn(verbose_name="Occurred")
    recorded_at = DateTimeColumn(verbose_name="Recorded")
    actor = tables.Column()
    reason = tables.Column(default="")
    hash = tables.Column(verbose_name="Hash")

    class Meta:
        model = ConsentEvent
        fields = (
            "purpose",
            "version",
            "status",
            "previous_status",
            "frequency",
            "source",
            "ip_address",
            "policy_version",
            "occurred_at",
            "recorded_at",
            "actor",
            "reason",
            "hash",
        )
        orderable = False
        attrs = {"class": "data events"}
        empty_text = "No events."

    def render_status(self, value: str, record: ConsentEvent) -> str:
        return _status_badge(record)

    def render_hash(self, value: str) -> str:
        return format_html('<code title="{}">{}</code>', value, value[:12])


class SuppressionTable(tables.Table):  # type: ignore[misc]
    kind = tables.Column()
    channel = tables.Column()
    source = tables.Column()
    detail = tables.Column(default="—")
    created_at = DateTimeColumn(verbose_name="Since")
    lifted_at = DateTimeColumn(verbose_name="Lifted", default="active")

    class Meta:
        model = Suppression
        fields = ("kind", "channel", "source", "detail", "created_at", "lifted_at")
        orderable = False
        attrs = {"class": "data"}
        empty_text = "No suppressions."
