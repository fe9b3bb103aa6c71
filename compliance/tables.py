"""django-tables2 tables for the history pages: presentation only, no rules.

django-tables2 ships no type information, so its classes are `Any` to mypy: each class here
that subclasses one says so with `type: ignore[misc]`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import django_tables2 as tables
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from compliance.models import AccessLog, ConsentEvent, ConsentState, Contact, PolicyVersion, Suppression

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

    def value(self, value: datetime) -> str:
        # Exports (CSV, XLSX) hold the instant in UTC, in ISO 8601, whatever the page's time zone.
        return value.astimezone(UTC).isoformat()


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
    # From the personal data kept apart (none once erased).
    ip_address = tables.Column(accessor="shown_ip_address", verbose_name="IP", default="—", orderable=False)
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


# --- The filterable, sortable and exportable tables (issue 16) -------------------------------


class ContactSearchTable(ContactTable):
    """The contact search's results, sortable by name and identifiers, exportable."""

    name = tables.Column(
        accessor="display_name", verbose_name="Name", linkify=True, order_by=("last_name", "first_name", "id")
    )
    id = tables.Column(verbose_name="Contact id", visible=False)

    class Meta(ContactTable.Meta):
        fields = ("name", "email", "phone", "app_user_id", "zoho_id")
        orderable = True

    def value_email(self, value: str | None) -> str:
        return value or ""


class ContactHistoryTable(ConsentEventTable):
    """A contact's events on their own page: sortable and exportable."""

    id = tables.Column(verbose_name="Event id", visible=False)
    hash = tables.Column(verbose_name="Hash", orderable=False)
    reason = tables.Column(default="", orderable=False)

    class Meta(ConsentEventTable.Meta):
        orderable = True
        order_by = ("-recorded_at",)

    def value_status(self, value: str) -> str:
        return value

    def value_hash(self, value: str) -> str:
        return value


class AccessLogTable(tables.Table):  # type: ignore[misc]
    """The access log. Read a page at a time by keyset, so only "when" sorts (the view orders)."""

    created_at = DateTimeColumn(verbose_name="When", format="Y-m-d H:i:s")
    username = tables.Column(verbose_name="User", default="—", orderable=False)
    ip = tables.Column(verbose_name="IP", default="—", orderable=False)
    kind = tables.Column(orderable=False)
    path = tables.Column(verbose_name="Page", orderable=False)
    contacts = tables.Column(verbose_name="Contacts", accessor="pk", orderable=False)
    query_hash = tables.Column(verbose_name="Search (hash)", default="—", orderable=False)
    detail = tables.Column(default="—", orderable=False)

    class Meta:
        model = AccessLog
        fields = ("created_at", "username", "ip", "kind", "path", "contacts", "query_hash", "detail")
        attrs = {"class": "data access-log"}
        empty_text = "No entries."

    def render_path(self, value: str) -> str:
        return format_html("<code>{}</code>", value)

    def value_path(self, value: str) -> str:
        return value

    def render_contacts(self, record: AccessLog) -> str:
        shown = getattr(record, "contacts_shown", None)  # the page's (selectors.access_log_shown)
        ids = [c.contact_id for c in (record.contacts.all() if shown is None else shown)]
        if not ids:
            return "—"
        links = [
            format_html('<a href="{}">{}</a>', reverse("compliance:contact_detail", args=[i]), i) for i in ids
        ]
        more = record.contact_count - len(ids)
        if more > 0:
            links.append(format_html('<span class="muted">and {} more</span>', f"{more:,}"))
        return mark_safe(", ".join(links))  # noqa: S308 (each part escaped by format_html)

    def value_contacts(self, record: AccessLog) -> str:
        ids = getattr(record, "contact_id_list", None)  # an export's (access_log_contact_ids_attach)
        if ids is None:
            ids = [c.contact_id for c in record.contacts.all()]
        return " ".join(map(str, ids))

    def render_query_hash(self, value: str) -> str:
        return format_html('<code title="{}">{}</code>', value, value[:12])

    def value_query_hash(self, value: str) -> str:
        return value


class PolicyVersionTable(tables.Table):  # type: ignore[misc]
    """Published policy versions with how many current opt-ins cite each (set by the view)."""

    label = tables.Column(linkify=("compliance:policy_detail", [tables.A("pk")]))
    effective_at = tables.DateColumn(verbose_name="In effect from", format="Y-m-d")
    published_at = DateTimeColumn(verbose_name="Published")
    source = tables.Column(verbose_name="Notice", accessor="url", empty_values=(), orderable=False)
    sha256 = tables.Column(verbose_name="SHA-256", orderable=False)
    consent_count = tables.Column(
        verbose_name="Current opt-ins citing it", attrs={"td": {"class": "num"}, "th": {"class": "num"}}
    )

    class Meta:
        model = PolicyVersion
        fields = ("label", "effective_at", "published_at", "source", "sha256", "consent_count")
        attrs = {"class": "data policies"}
        empty_text = "No policy version is published yet."

    def render_effective_at(self, value: Any) -> str:
        return f"{value:%Y-%m-%d}"

    def value_effective_at(self, value: Any) -> str:
        return f"{value:%Y-%m-%d}"

    def render_source(self, record: PolicyVersion) -> str:
        if record.url and not record.text:
            return format_html('<a href="{}" rel="noopener noreferrer">{}</a>', record.url, record.url)
        lines = len(record.text.splitlines())
        return f"Full text, {lines} line{'s' if lines != 1 else ''}" + (" and a link" if record.url else "")

    def value_source(self, record: PolicyVersion) -> str:
        return record.url or "full text"

    def render_sha256(self, value: str) -> str:
        return format_html('<code title="{}">{}</code>', value, value[:12])

    def value_sha256(self, value: str) -> str:
        return value

    def render_consent_count(self, value: int) -> str:
        return f"{value:,}"
