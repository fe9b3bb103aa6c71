"""Reports: what was asked for, how far its making got, the signed file, and who downloaded it.

A report's file is written once through the "reports" storage (STORAGES in config/settings.py)
and never changed: the row records its size and SHA-256, and `Report.save` refuses to
touch a finished report. Progress is written with `update()` by `reports.services`. Our stored
copy may later be deleted (an erasure of a person it names, or retention: reports.file_deletion);
the row stays, with its SHA-256, so a copy handed out before still verifies.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.storage import Storage, storages
from django.db import models
from django.urls import reverse


def report_storage() -> Storage:
    """The "reports" storage as configured now. Read and write report files through this, not
    `Report.file`'s own storage, which Django fixed when the model was loaded."""
    return storages["reports"]


class Report(models.Model):
    class Kind(models.TextChoices):
        PERIOD = "period", "Period audit report"
        EVIDENCE = "evidence", "Evidence pack"
        SAMPLE = "sample", "Auditor's sample"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Being made"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    id = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False, help_text="The report id printed on it."
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    scope = models.JSONField(help_text="What the report covers, as asked (reports.scopes).")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    requested_via = models.CharField(
        max_length=40, default="web", help_text="web, or the command that made it."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=120, blank=True)
    percent = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    file = models.FileField(storage=report_storage, max_length=200, blank=True)
    size = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    event_count = models.PositiveIntegerField(null=True, blank=True, help_text="Events in the embedded CSV.")
    seal_sequence = models.PositiveIntegerField(null=True, blank=True, help_text="The seal head when made.")
    seal_hash = models.CharField(max_length=64, blank=True)
    attachments = models.JSONField(default=dict, blank=True, help_text="SHA-256 of each embedded file.")
    contact_ids = models.JSONField(
        default=list, blank=True, help_text="The people it names (evidence pack, sample), for the access log."
    )
    file_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When our stored copy of the file was deleted (the row stays)."
    )
    file_deleted_reason = models.CharField(
        max_length=200, blank=True, help_text="Why: an erasure of a person it names, or retention."
    )

    class Meta:
        indexes = [
            # The report list, newest first: Report.objects.order_by("-created_at").
            models.Index(fields=["-created_at"], name="reports_report_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.id}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            stored = Report.objects.filter(pk=self.pk).values_list("status", flat=True).first()
            if stored == Report.Status.READY:
                raise ValidationError("A finished report never changes.")
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("reports:report_detail", args=[self.pk])

    @property
    def finished(self) -> bool:
        return self.status in (Report.Status.READY, Report.Status.FAILED)

    @property
    def file_deleted_text(self) -> str:
        """What the pages and the download say in place of the file, once our copy is deleted."""
        if self.file_deleted_at is None:
            return ""
        return f"Stored copy deleted on {self.file_deleted_at:%Y-%m-%d %H:%M:%S} UTC ({self.file_deleted_reason})."

    @property
    def scope_text(self) -> str:
        from reports.scopes import scope_from_json

        try:
            return scope_from_json(self.kind, self.scope).describe()
        except (KeyError, ValueError, TypeError):
            return str(self.scope)

    @property
    def requester(self) -> str:
        return self.requested_by.get_username() if self.requested_by else f"manage.py {self.requested_via}"

    @property
    def filename(self) -> str:
        return f"consent-desk-{self.kind}-{self.id}.pdf"


class ReportDownload(models.Model):
    """One download of a report's file: who, when, from where. Appended, never changed."""

    report = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="downloads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    downloaded_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)

    class Meta:
        indexes = [
            # A report's downloads on its page: filter(report=...).order_by("-downloaded_at").
            models.Index(fields=["report", "-downloaded_at"], name="reports_download_report"),
            # The officers' download log, newest first.
            models.Index(fields=["-downloaded_at"], name="reports_download_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} downloaded {self.report_id} at {self.downloaded_at:%Y-%m-%d %H:%M}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValidationError("The download log is append-only.")
        super().save(*args, **kwargs)
