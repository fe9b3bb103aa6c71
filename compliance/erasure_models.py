"""Erasure (GDPR Art. 17) and what it keeps: the request, the legal holds that stop it, and the
hashed identifiers that keep the person's objection ("do not contact") after it.

None of these rows holds a personal value: a request names the contact by id, a hold gives the
admin's reason, an erased identifier is an HMAC under the suppression secret.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class LegalHold(models.Model):
    """An admin's reason to keep a contact's data: while it stands, nobody erases the contact."""

    contact = models.ForeignKey("compliance.Contact", on_delete=models.PROTECT, related_name="legal_holds")
    reason = models.TextField(help_text="Why the data must be kept, e.g. a court case or a tax audit.")
    set_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=150, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["contact"], condition=Q(lifted_at__isnull=True), name="compliance_hold_open"
            ),
        ]

    def __str__(self) -> str:
        return f"legal hold {self.pk} on contact {self.contact_id}"


class ErasureRequest(models.Model):
    """One request to erase a contact, from its arrival to its completion.

    Recorded (pending) in a transaction of its own before the erasure runs in another: a crash
    in between leaves it pending, and `erasure_retry_pending` (beat) completes it."""

    class Channel(models.TextChoices):
        API = "api", "API"
        ADMIN = "admin", "Admin"
        RETENTION = "retention", "Retention period ended"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    contact = models.ForeignKey("compliance.Contact", on_delete=models.PROTECT, related_name="erasures")
    channel = models.CharField(max_length=20, choices=Channel.choices)
    requested_by = models.CharField(max_length=150, help_text="e.g. api:crm-backend, user:alice, system.")
    reason = models.TextField(blank=True, help_text="Why (no personal data), e.g. a ticket number.")
    requested_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    erased_at = models.DateTimeField(null=True, blank=True)
    identity_event = models.ForeignKey(
        "compliance.IdentityEvent", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # What the erasure did, in numbers (no personal data).
    events_kept = models.PositiveIntegerField(default=0)
    values_deleted = models.PositiveIntegerField(default=0)
    legacy_events = models.PositiveIntegerField(
        default=0, help_text="Events of hash version 1, whose values are in the event itself and stay."
    )

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            # One erasure per contact: a second request answers with the first.
            models.UniqueConstraint(fields=["contact"], name="compliance_erasure_one_per_contact"),
        ]
        indexes = [
            models.Index(fields=["id"], condition=Q(status="pending"), name="compliance_erasure_pending"),
        ]

    def __str__(self) -> str:
        return f"erasure {self.pk} of contact {self.contact_id} ({self.status})"


class ErasedIdentifier(models.Model):
    """An erased person's email address or phone number, as an HMAC under the suppression secret:
    enough to tell that a new contact is that person again (whose only effect is "do not
    contact"), not to learn who they were."""

    class Kind(models.TextChoices):
        EMAIL = "email", "Email address"
        PHONE = "phone", "Phone number"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    digest = models.CharField(max_length=64)
    key_id = models.CharField(max_length=16, help_text="Which suppression secret made the digest.")
    erasure = models.ForeignKey(ErasureRequest, on_delete=models.PROTECT, related_name="identifiers")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["digest"], name="compliance_erased_digest")]

    def __str__(self) -> str:
        return f"erased {self.kind} {self.digest[:12]}"
