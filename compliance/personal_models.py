"""Personal values apart from the chains (hash version 2): the rows erasure deletes
(re-exported by compliance.models; see compliance/personal.py)."""

from __future__ import annotations

from django.db import models


class EventPersonalData(models.Model):
    """The personal values of one consent event (hash version 2): its IP address, user agent
    and personal evidence, as {"ip_address": …, "user_agent": …, "evidence": {…}} with only
    those present. The event's personal_hash commits to them under its contact's secret.
    Not insert-only: erasure deletes these rows (and only erasure does)."""

    event = models.OneToOneField(
        "compliance.ConsentEvent",
        on_delete=models.DO_NOTHING,
        primary_key=True,
        related_name="personal",
        # No foreign key in the database: nothing but erasure deletes here, no event is ever
        # deleted, and the ingest saves the check on every row.
        db_constraint=False,
    )
    values = models.JSONField()

    def __str__(self) -> str:
        return f"personal data of event {self.event_id}"


class IdentityPersonalData(models.Model):
    """The identifiers, names and IP address of one identity event (hash version 2); its
    personal_hash commits to them. Erasure deletes these rows."""

    identity_event = models.OneToOneField(
        "compliance.IdentityEvent",
        on_delete=models.DO_NOTHING,
        primary_key=True,
        related_name="personal",
        db_constraint=False,  # as EventPersonalData's
    )
    email = models.EmailField(max_length=254, null=True, blank=True)
    phone = models.CharField(max_length=20, null=True, blank=True)
    app_user_id = models.CharField(max_length=128, null=True, blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        indexes = [
            # Look-ups by a former email (selectors.contact_find and contact_search).
            models.Index(fields=["email"], name="compliance_identity_pd_email"),
        ]

    def __str__(self) -> str:
        return f"personal data of identity event {self.identity_event_id}"
