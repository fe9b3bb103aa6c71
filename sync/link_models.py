"""The CRM records of each contact (`CrmLinkRecord`) and the admins' duplicate decisions
(`DuplicateDecision`). `CrmLink` (sync/models.py) says where the contact stands; these rows say
which records, in which module, a push writes and a read-back verifies."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class CrmLinkRecord(models.Model):
    """One CRM record of a contact: a Contact, or a Lead not yet converted.

    A contact may have several: a Lead and a Contact that share the address (each written),
    or duplicates an admin chose to write to all. Records of role ``candidate`` are the
    duplicates awaiting an admin's choice: none is written until then (`DuplicateDecision`).
    """

    class Role(models.TextChoices):
        LINKED = "linked", "Linked (the only record of its module)"
        CANDIDATE = "candidate", "Duplicate awaiting an admin's choice"
        PRIMARY = "primary", "Chosen as the primary of its duplicates"
        ALL = "all", "One of duplicates written to all"

    # The records a push writes and a read-back verifies.
    WRITTEN = (Role.LINKED, Role.PRIMARY, Role.ALL)

    contact = models.ForeignKey("compliance.Contact", on_delete=models.PROTECT, related_name="crm_records")
    module = models.CharField(max_length=40, default="Contacts")
    record_id = models.CharField(max_length=32)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.LINKED)
    # The record's consent record (Data_Processing_Basis_Details.id), which a push updates in
    # place: None when unknown, "" when the record had none when last read.
    consent_id = models.CharField(max_length=32, null=True, blank=True)
    # The Lead this Contact record was converted from (the link moved with the conversion).
    converted_from = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "module", "record_id"], name="sync_crmlinkrecord_once_per_contact"
            ),
        ]
        indexes = [
            # A record's contact: notifications, conversions (`filter(record_id__in=...)`).
            models.Index(fields=["record_id"], name="sync_crmlinkrecord_record"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.module} {self.record_id} ({self.role})"

    @property
    def written(self) -> bool:
        return self.role in self.WRITTEN


class DuplicateDecision(models.Model):
    """An admin's choice for a contact whose address several CRM records share: who, when, why.

    Appended, never changed: a later choice (after the records changed) is a new row.
    """

    class Choice(models.TextChoices):
        WRITE_ALL = "write_all", "Write to all"
        PRIMARY = "primary", "Write to the primary only"

    contact = models.ForeignKey("compliance.Contact", on_delete=models.PROTECT, related_name="+")
    choice = models.CharField(max_length=10, choices=Choice.choices)
    primary_module = models.CharField(max_length=40, blank=True)
    primary_record_id = models.CharField(max_length=32, blank=True)
    candidates = models.JSONField(help_text="The records the admin chose among: [{module, record_id}].")
    reason = models.TextField(help_text="Why, in the admin's words.")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    decided_by_name = models.CharField(max_length=150)
    decided_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The duplicates page's recent decisions, newest first.
            models.Index(fields=["-decided_at"], name="sync_dupdecision_newest"),
        ]

    def __str__(self) -> str:
        target = f" {self.primary_module} {self.primary_record_id}" if self.primary_record_id else ""
        return f"{self.choice}{target} for contact {self.contact_id} by {self.decided_by_name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("A duplicate decision is never changed: record a new one.")
        super().save(*args, **kwargs)
