"""The consent lifecycle's own rows: each contact's link generation and every message sent."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from compliance.models import ConsentEvent, Contact, Purpose


class LinkGeneration(models.Model):
    """A contact's link generation (compliance/lifecycle): every token carries the one it was made
    in and is refused once the contact's has moved on, so revoking a contact's links is one UPDATE."""

    contact = models.OneToOneField(Contact, on_delete=models.PROTECT, related_name="+")
    generation = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"contact {self.contact_id} links generation {self.generation}"


class LifecycleMessage(models.Model):
    """One mail of the consent lifecycle (a double opt-in confirmation, its reminder), as sent.

    Written before the send (status queued) and finished after it, by `compliance.lifecycle.mail`;
    the Celery task retries a failed send. A bounce of such a mail is not a withdrawal.
    """

    class Kind(models.TextChoices):
        CONFIRMATION = "confirmation", "Double opt-in confirmation"
        REMINDER = "reminder", "Double opt-in reminder"
        REFRESH = "refresh", "Consent refresh request"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+")
    # The pending event a confirmation (or its reminder) asks the person to confirm; the opt-in a
    # refresh request asks the person to renew.
    event = models.ForeignKey(
        ConsentEvent, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    message_id = models.CharField(max_length=200, unique=True, help_text="The mail's Message-ID header.")
    to_email = models.EmailField(max_length=254)
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One confirmation and one reminder per pending event (also the reminder job's look-up).
            models.UniqueConstraint(
                fields=["event", "kind"],
                condition=Q(event__isnull=False),
                name="compliance_lifecyclemessage_one_per_event",
            ),
        ]
        indexes = [
            # lifecycle_cycle: queued mails whose task never ran; confirmations old enough for a reminder.
            models.Index(
                fields=["status", "kind", "created_at"],
                condition=Q(status="queued") | Q(kind="confirmation"),
                name="compliance_lifecyclemsg_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to contact {self.contact_id} ({self.status})"
