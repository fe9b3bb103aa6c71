"""`ErasureZohoJob`: what Zoho must still forget of an erased person (docs/erasure.md)."""

from __future__ import annotations

from django.db import models


class ErasureZohoJob(models.Model):
    """The Zoho part of one erasure: its CRM records deleted or anonymised
    (``ERASURE_ZOHO_ACTION``), its addresses unsubscribed from every Campaigns list.

    Written in the erasure's own transaction (`sync.erasure_zoho.erasure_zoho_job_create`), so a
    crash after the commit loses nothing; run right after the commit and by beat until done.
    ``campaigns_left`` is the only place the person's addresses outlive the erasure: it empties
    as Zoho forgets each one, and is empty once the job is done.
    """

    class Action(models.TextChoices):
        DELETE = "delete", "Delete the CRM records"
        ANONYMISE = "anonymise", "Anonymise the CRM records"
        NONE = "none", "Leave the CRM records as they are"

    contact = models.OneToOneField("compliance.Contact", on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=10, choices=Action.choices)
    # The CRM records the erasure found, kept as evidence: [{"module", "record_id"}].
    records = models.JSONField(default=list, blank=True)
    # Those still to delete or anonymise: [{"module", "record_id", "consent_id"}].
    records_left = models.JSONField(default=list, blank=True)
    # The Campaigns lists, kept as evidence; and the (list key, address) pairs still to unsubscribe.
    list_keys = models.JSONField(default=list, blank=True)
    campaigns_left = models.JSONField(default=list, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Runs that left work undone.")
    last_error = models.TextField(blank=True, help_text="Why the last run left work undone (values masked).")
    # When the next run may start; a run moves it past its own end first (its lease).
    next_attempt_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    done_at = models.DateTimeField(null=True, blank=True)
    alerted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # The beat run: `filter(done_at__isnull=True, next_attempt_at__lte=now)`.
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(done_at__isnull=True),
                name="sync_erasurezohojob_due",
            ),
        ]

    def __str__(self) -> str:
        state = "done" if self.done_at else f"pending ({self.attempts} attempts)"
        return f"erasure of contact {self.contact_id} in Zoho: {self.action}, {state}"
