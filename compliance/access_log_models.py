"""The access log's rows: who read whose personal data, insert-only like the ledger
(compliance/services/access_log.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from compliance.models import ApiClient


class AccessLog(models.Model):
    """Who read personal data: a history or evidence view, a search, an export, a report download.

    Insert-only (database triggers, like the ledger's). The contacts concerned are rows of
    AccessLogContact; a search's terms are never stored, only their keyed hash.
    """

    class Kind(models.TextChoices):
        HISTORY_VIEW = "history_view", "History view"
        EVIDENCE_VIEW = "evidence_view", "Evidence view"
        SEARCH = "search", "Search"
        EXPORT = "export", "Export"
        REPORT_DOWNLOAD = "report_download", "Report download"

    created_at = models.DateTimeField()
    # PROTECT: a row can never be updated, so a user's deletion may not null it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Or the API client that read it (the API's contact look-ups and histories).
    api_client = models.ForeignKey(
        ApiClient, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    username = models.CharField(max_length=150, help_text="As it was at the time (users may be renamed).")
    ip = models.GenericIPAddressField(null=True, blank=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    path = models.CharField(max_length=300, blank=True, help_text="The URL path, without its query.")
    detail = models.CharField(max_length=300, blank=True, help_text="What was exported or downloaded.")
    query_hash = models.CharField(max_length=64, blank=True, help_text="HMAC-SHA256 of a search's terms.")
    contact_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("view_access_log", "Can read and export the access log")]
        indexes = [
            # The access-log page: newest first, optionally one person's or one kind's.
            models.Index(fields=["-created_at", "-id"], name="compliance_accesslog_newest"),
            models.Index(fields=["user", "-created_at"], name="compliance_accesslog_user"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.username} {self.kind}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError("The access log is append-only.")
        super().save(*args, **kwargs)


class AccessLogContact(models.Model):
    """One contact an access-log entry concerns (no foreign key: the log outlives merges)."""

    entry = models.ForeignKey(AccessLog, on_delete=models.PROTECT, related_name="contacts")
    contact_id = models.BigIntegerField()

    class Meta:
        indexes = [
            # "Who read this person's data?": the access-log page's contact filter.
            models.Index(fields=["contact_id", "entry"], name="compliance_accesslog_contact"),
        ]

    def __str__(self) -> str:
        return f"access {self.entry_id} contact {self.contact_id}"
