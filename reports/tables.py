"""django-tables2 tables of the report pages: presentation only.

django-tables2 ships no type information, so its classes are `Any` to mypy: each class here
that subclasses one says so with `type: ignore[misc]`.
"""

from __future__ import annotations

from typing import Any

import django_tables2 as tables
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from compliance.tables import DateTimeColumn
from reports.models import Report, ReportDownload


class ReportTable(tables.Table):  # type: ignore[misc]
    created_at = DateTimeColumn(verbose_name="Requested (UTC)")
    kind = tables.Column(verbose_name="Report", linkify=True)
    scope = tables.Column(accessor="scope_text", verbose_name="Scope", orderable=False)
    requester = tables.Column(accessor="requester", verbose_name="Requested by", orderable=False)
    status = tables.Column()
    size = tables.Column(verbose_name="Size", default="—")
    sha256 = tables.Column(verbose_name="SHA-256", default="—")

    class Meta:
        model = Report
        fields = ("created_at", "kind", "scope", "requester", "status", "size", "sha256")
        orderable = False
        attrs = {"class": "data reports"}
        empty_text = "No report yet."

    def render_status(self, record: Report) -> str:
        if record.status == Report.Status.RUNNING:
            return format_html("{} ({} %)", record.get_status_display(), record.percent)
        if record.file_deleted_at is not None:  # signed, but nothing left to download here
            return format_html('<span class="muted file-deleted">{}</span>', record.file_deleted_text)
        return str(record.get_status_display())

    def render_size(self, value: int) -> str:
        return str(filesizeformat(value))

    def render_sha256(self, value: str) -> Any:
        return format_html('<code class="sha256">{}</code>', value)


class DownloadTable(tables.Table):  # type: ignore[misc]
    downloaded_at = DateTimeColumn(verbose_name="When (UTC)", format="Y-m-d H:i:s")
    user = tables.Column(accessor="user__username", verbose_name="Who")
    ip_address = tables.Column(verbose_name="IP address", default="—")
    report = tables.Column(
        accessor="report_id",
        verbose_name="Report id",
        linkify=lambda record: record.report.get_absolute_url(),
    )
    kind = tables.Column(accessor="report__kind", verbose_name="Kind")

    class Meta:
        model = ReportDownload
        fields = ("downloaded_at", "user", "ip_address", "report", "kind")
        orderable = False
        attrs = {"class": "data downloads"}
        empty_text = "No report has been downloaded."
