"""The consent lifecycle's own rows: each contact's link generation, every message sent, and the
re-permission runs after a new policy version."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from compliance.models import ConsentEvent, Contact, PolicyVersion, Purpose


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
        REPERMISSION = "repermission", "Re-permission request (a new policy version)"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+")
    # The pending event a confirmation (or its reminder) asks the person to confirm; the opt-in a
    # refresh request asks the person to renew. A re-permission request has none: its
    # `RepermissionTarget` names the opt-in it asks about (one per run, not one per event).
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


class RepermissionRun(models.Model):
    """An admin's re-permission action after a new policy version (compliance/lifecycle/repermission.py).

    Asks the people whose current opt-in cites an older version (or none, or was imported without
    their own evidence) to opt in again under `policy`: by a mail with a confirm link, or by adding
    their addresses to a Zoho Campaigns list (an action the sync registers). Who asked, when and how
    many stay here; the Celery task fills `targets` and counts its progress in `processed`.
    """

    class Action(models.TextChoices):
        MAIL = "mail", "Send re-permission mails"
        CAMPAIGNS_LIST = "campaigns_list", "Add the addresses to a Zoho Campaigns list"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    policy = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=20, choices=Action.choices)
    purposes = models.JSONField(default=list, help_text="The purpose codes asked about.")
    include_legacy = models.BooleanField(
        default=False, help_text="Also opt-ins imported without the person's own evidence."
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Without an email address.")
    failed = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"re-permission {self.pk} to {self.policy_id} ({self.action}, {self.status})"

    @property
    def percent(self) -> int:
        return 100 if self.status == self.Status.DONE else int(100 * self.processed / max(self.total, 1))


class RepermissionTarget(models.Model):
    """One opt-in a re-permission run asks about: the contact, the purpose and the opt-in event
    current when the run started. Whether the person answered is read from the ledger (a later
    opt-in under the run's policy version), never stored here."""

    # No index of its own: compliance_repermtarget_run (run, id) leads with it.
    run = models.ForeignKey(RepermissionRun, on_delete=models.PROTECT, related_name="targets", db_index=False)
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+", db_index=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey(ConsentEvent, on_delete=models.PROTECT, related_name="+", db_index=False)
    legacy = models.BooleanField(default=False)
    message = models.OneToOneField(
        LifecycleMessage, on_delete=models.PROTECT, null=True, blank=True, related_name="repermission_target"
    )
    done_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "contact", "purpose"], name="compliance_repermissiontarget_once"
            ),
        ]
        indexes = [
            # The run's task: the targets not yet done, in order (run, done_at IS NULL, id).
            models.Index(fields=["run", "id"], name="compliance_repermtarget_run"),
        ]

    def __str__(self) -> str:
        return f"run {self.run_id}: contact {self.contact_id}/{self.purpose_id}"
