"""Sync models. `ZohoCall` is the log of every HTTP call made to Zoho."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.urls import reverse

from sync.mappings import field_mapping_version_values


def webhook_secret_new() -> str:
    """A webhook's signing secret: 256 random bits."""
    return secrets.token_hex(32)


class ZohoCall(models.Model):
    """One HTTP call to Zoho Accounts, CRM or Campaigns.

    The row is written (outcome ``pending``) before the request goes out and
    completed after it, even when the call raised. It never holds an access
    token, a refresh token or a client secret: ``path`` has no query string.
    """

    class Service(models.TextChoices):
        CRM = "crm", "CRM"
        CAMPAIGNS = "campaigns", "Campaigns"
        ACCOUNTS = "accounts", "Accounts"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        OK = "ok", "OK"
        ERROR = "error", "Error"

    service = models.CharField(max_length=16, choices=Service.choices)
    operation = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=512)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    zoho_code = models.CharField(max_length=64, blank=True)
    records = models.PositiveIntegerField(default=0)
    credits = models.PositiveIntegerField(default=0)
    credits_remaining = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.PENDING)
    error = models.TextField(blank=True)
    permanent = models.BooleanField(null=True, blank=True)

    class Meta:
        indexes = [
            # The quota budget: calls of one service in a time window,
            # `ZohoCall.objects.filter(service=..., started_at__gte=...)`.
            models.Index(fields=["service", "started_at"], name="sync_zohocall_service_started"),
            # The health page's per-hour and per-endpoint tallies of the last 24 h, read from the
            # index alone on PostgreSQL (it holds every column they need; SQLite ignores include).
            models.Index(
                fields=["started_at"],
                include=["service", "operation", "outcome", "http_status", "credits", "duration_ms"],
                name="sync_zohocall_window",
            ),
            # Latest known remaining credits: `filter(credits_remaining__isnull=False)
            # .order_by("-started_at").first()`.
            models.Index(
                fields=["-started_at"],
                name="sync_zohocall_credits_seen",
                condition=models.Q(credits_remaining__isnull=False),
            ),
            # Recent failures for the "why does the sync fail" page:
            # `filter(outcome="error").order_by("-started_at")`.
            models.Index(
                fields=["-started_at"],
                name="sync_zohocall_errors",
                condition=models.Q(outcome="error"),
            ),
        ]

    def __str__(self) -> str:
        status = self.http_status if self.http_status is not None else "-"
        return f"{self.operation} {self.method} {self.path} → {status} {self.outcome}"


class CallHour(models.Model):
    """The call log's tallies for one closed hour, service and operation (the health page's).

    Written once per hour by `sync.tallies.callhour_tally` (beat, every 5 minutes), when the
    hour is over and no call started in it can still be finishing (`sync.selectors.CLOSED_AFTER`);
    the page then reads 24 of these instead of counting every call of the day again, and counts
    an hour not stored yet from the call log itself. Derived from the call log, so it can be
    deleted at any time: the next tally writes it again.
    """

    hour = models.DateTimeField()
    service = models.CharField(max_length=16)
    operation = models.CharField(max_length=64)
    calls = models.PositiveIntegerField()
    errors = models.PositiveIntegerField()
    throttled = models.PositiveIntegerField()
    credits = models.PositiveIntegerField()
    ms_sum = models.BigIntegerField()
    timed = models.PositiveIntegerField(help_text="Calls with a duration (the mean's divisor).")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "service", "operation"], name="sync_callhour_one_per_hour"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.operation}: {self.calls} calls"


class FieldMapping(models.Model):
    """Which CRM field carries a purpose, how the value translates, and which way it flows.

    Admins edit these in Django admin (`sync.admin.FieldMappingAdmin`). Every save is a new
    `version`, and the values it saved are appended to the mapping's history
    (`FieldMappingVersion`), which nothing changes; a mapping no longer wanted is deactivated.
    """

    class Transform(models.TextChoices):
        CONSENTED = "consented", "true when opted in"
        NOT_CONSENTED = "not_consented", "true when not opted in (e.g. Email_Opt_Out)"

    class Direction(models.TextChoices):
        TO_ZOHO = "to_zoho", "Consent Desk → Zoho"
        FROM_ZOHO = "from_zoho", "Zoho → Consent Desk (opt-outs only)"
        BOTH = "both", "Both ways (opt-outs only come back)"

    purpose = models.ForeignKey("compliance.Purpose", on_delete=models.PROTECT, related_name="+")
    crm_field = models.CharField(
        max_length=120,
        help_text="API name, or Data_Processing_Basis_Details.<key> for a key of the consent object.",
    )
    transform = models.CharField(max_length=20, choices=Transform.choices, default=Transform.CONSENTED)
    direction = models.CharField(max_length=10, choices=Direction.choices, default=Direction.TO_ZOHO)
    is_active = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["purpose__code", "crm_field"]
        constraints = [
            models.UniqueConstraint(
                fields=["crm_field"],
                condition=models.Q(is_active=True),
                name="sync_fieldmapping_one_active_field",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id} → {self.crm_field} ({self.transform}, {self.direction})"

    def save(self, *args: Any, changed_by: str = "", **kwargs: Any) -> None:
        """Save as the next version and append it to the history, in one transaction.

        The stored row is locked to number the version: two admins saving at once make two
        versions, one after the other, rather than one version number twice.
        """
        with transaction.atomic():
            if self.pk is not None:
                rows = FieldMapping.objects.select_for_update().filter(pk=self.pk)
                stored = rows.values_list("version", flat=True).first()
                self.version = (self.version if stored is None else stored) + 1
            super().save(*args, **kwargs)
            FieldMappingVersion.objects.create(
                **field_mapping_version_values(self), changed_by=changed_by[:150]
            )

    @property
    def pushes(self) -> bool:
        return self.direction in (self.Direction.TO_ZOHO, self.Direction.BOTH)

    @property
    def pulls(self) -> bool:
        return self.direction in (self.Direction.FROM_ZOHO, self.Direction.BOTH)

    def value_for(self, opted_in: bool) -> bool:
        return opted_in if self.transform == self.Transform.CONSENTED else not opted_in


class FieldMappingVersion(models.Model):
    """One saved version of a field mapping, as it was saved: its history, appended, never changed."""

    mapping = models.ForeignKey(FieldMapping, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    purpose = models.ForeignKey("compliance.Purpose", on_delete=models.PROTECT, related_name="+")
    crm_field = models.CharField(max_length=120)
    transform = models.CharField(max_length=20, choices=FieldMapping.Transform.choices)
    direction = models.CharField(max_length=10, choices=FieldMapping.Direction.choices)
    is_active = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)
    changed_by = models.CharField(max_length=150, blank=True, help_text="Who saved it (blank: not a person).")

    class Meta:
        ordering = ["mapping", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["mapping", "version"], name="sync_fieldmappingversion_once"),
        ]

    def __str__(self) -> str:
        return f"{self.crm_field} v{self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ValueError("A field mapping's past version is never changed: save the mapping instead.")
        super().save(*args, **kwargs)


class CrmLink(models.Model):
    """Where a contact stands with Zoho CRM: linked, not there, or ambiguous (duplicates).

    Its records, one per row and module, are `CrmLinkRecord` rows; ``candidates`` lists their
    ids (written ones when linked, the duplicates when ambiguous) for pages and reports.
    """

    class State(models.TextChoices):
        LINKED = "linked", "Linked to a CRM record"
        NOT_IN_CRM = "not_in_crm", "Not in CRM"
        DUPLICATE = "duplicate", "Several CRM records share the email"

    contact = models.OneToOneField("compliance.Contact", on_delete=models.PROTECT, related_name="crm_link")
    state = models.CharField(max_length=12, choices=State.choices)
    candidates = models.JSONField(default=list, blank=True, help_text="CRM record ids found for the email.")
    checked_at = models.DateTimeField()
    last_verified_at = models.DateTimeField(null=True, blank=True)
    # How the link was found (`sync.linking`): by "zoho_id", "email", "phone" or "app_user_id", and
    # the identifier's value then; a contact whose identifier changed since is linked again.
    matched_by = models.CharField(max_length=12, blank=True, default="")
    matched_value = models.CharField(max_length=254, blank=True, default="")

    def __str__(self) -> str:
        return f"{self.contact_id}: {self.state}"


class CrmWatchChannel(models.Model):
    """A Zoho CRM notification channel (`/actions/watch`) that calls our endpoint on CRM edits.

    Zoho echoes ``token`` on every callback; a callback without it is refused. Channels live
    at most a week: `crm_watch_ensure` renews one before ``expires_at``.
    """

    channel_id = models.CharField(max_length=20, unique=True)
    token = models.CharField(max_length=50)
    events = models.JSONField(default=list)
    notify_url = models.URLField(max_length=500)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    renewed_at = models.DateTimeField(null=True, blank=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"channel {self.channel_id} until {self.expires_at:%Y-%m-%d %H:%M}"


class SyncPush(models.Model):
    """One contact's projection sent to CRM in one batched update call, and its verification."""

    class Verification(models.TextChoices):
        PENDING = "pending", "Waiting for read-back"
        VERIFIED = "verified", "Verified in Zoho"
        MISMATCH = "mismatch", "Read-back differs"
        SUPERSEDED = "superseded", "A newer push replaced it"
        REJECTED = "rejected", "Zoho refused the record"

    contact = models.ForeignKey("compliance.Contact", on_delete=models.PROTECT, related_name="+")
    # The record written: a contact may have several (`CrmLinkRecord`), each with its own pushes.
    module = models.CharField(max_length=40, default="Contacts")
    zoho_id = models.CharField(max_length=32)
    call = models.ForeignKey(ZohoCall, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    sent = models.JSONField(help_text="The field values sent.")
    ledger_versions = models.JSONField(help_text="Chain version per purpose code that the values project.")
    response = models.JSONField(default=dict, help_text="Zoho's per-record answer.")
    attempt = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    verify_due_at = models.DateTimeField(null=True, blank=True)
    verification = models.CharField(max_length=12, choices=Verification.choices, default=Verification.PENDING)
    verified_at = models.DateTimeField(null=True, blank=True)
    readback = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            # The verify sweep: pushes waiting for read-back whose delay has passed.
            models.Index(
                fields=["verify_due_at"],
                condition=models.Q(verification="pending"),
                name="sync_syncpush_verify_due",
            ),
            # A contact's push history (discrepancy evidence, contact page).
            models.Index(fields=["contact", "-created_at"], name="sync_syncpush_contact"),
            # The health page's push outcomes of the last 24 h, counted from the index alone.
            models.Index(fields=["created_at"], include=["verification"], name="sync_syncpush_window"),
        ]

    def __str__(self) -> str:
        return f"push {self.pk} contact {self.contact_id} {self.verification}"


class Discrepancy(models.Model):
    """Zoho differs from the ledger, with the evidence and the likely cause."""

    class Kind(models.TextChoices):
        NOT_APPLIED = "not_applied", "Accepted but not applied"
        OVERWRITTEN = "overwritten", "Overwritten after our write"
        PERMISSION_DENIED = "permission_denied", "Permission denied"
        RECORD_MISSING = "record_missing", "CRM record missing"
        DUPLICATE = "duplicate", "Duplicate CRM records"
        NOT_IN_CRM = "not_in_crm", "Not in CRM"
        REJECTED = "rejected", "Rejected by Zoho"
        UNEVIDENCED_OPT_IN = "unevidenced_opt_in", "Opt-in in CRM without evidence"
        DRIFT = "drift", "Found by reconciliation"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        RESOLVED = "resolved", "Resolved"

    contact = models.ForeignKey("compliance.Contact", on_delete=models.PROTECT, related_name="+")
    zoho_id = models.CharField(max_length=32, blank=True)
    crm_field = models.CharField(max_length=120, blank=True, help_text="Blank for a record-level problem.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    expected = models.JSONField(null=True, blank=True)
    actual = models.JSONField(null=True, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    hint = models.TextField(blank=True, help_text="The likely root cause, in words.")
    retries = models.PositiveSmallIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "discrepancies"
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "crm_field"],
                condition=models.Q(status="open"),
                name="sync_discrepancy_one_open_per_field",
            ),
        ]
        indexes = [
            # Dashboard and threshold alert: open discrepancies by kind.
            models.Index(fields=["kind"], condition=models.Q(status="open"), name="sync_discrepancy_open"),
            # The retry sweep: open discrepancies whose backoff has passed.
            models.Index(
                fields=["next_retry_at"], condition=models.Q(status="open"), name="sync_discrepancy_retry_due"
            ),
            # The dashboard's list, newest first, by status or by kind: a page is read off the index.
            models.Index(fields=["status", "-opened_at", "-id"], name="sync_discrepancy_status_newest"),
            models.Index(fields=["kind", "-opened_at", "-id"], name="sync_discrepancy_kind_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.crm_field or 'record'} contact {self.contact_id} ({self.status})"


class Alert(models.Model):
    """Something the compliance team must look at: emailed once, bannered until acknowledged."""

    class Kind(models.TextChoices):
        RETRIES_EXHAUSTED = "retries_exhausted", "A change failed after every retry"
        THRESHOLD = "threshold", "Too many open discrepancies"
        AUTH = "auth", "Zoho refuses our credentials"
        OPT_OUT_DEADLINE = "opt_out_deadline", "A withdrawal is close to its deadline"
        ERASURE_ZOHO = "erasure_zoho", "An erasure has not reached Zoho"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    discrepancy = models.ForeignKey(
        Discrepancy, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    withdrawal = models.ForeignKey(
        "WithdrawalClock", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_to = models.JSONField(default=list, blank=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints = [
            # Exactly one alert per discrepancy that ran out of retries.
            models.UniqueConstraint(
                fields=["discrepancy"],
                condition=models.Q(kind="retries_exhausted"),
                name="sync_alert_one_per_discrepancy",
            ),
            # At most one unacknowledged "Zoho refuses our credentials" alert, however many
            # workers meet the refusal at once.
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(kind="auth", acknowledged_at__isnull=True),
                name="sync_alert_one_open_auth",
            ),
            # Exactly one alert per withdrawal close to its deadline (`sync.optout_clock`).
            models.UniqueConstraint(
                fields=["withdrawal"],
                condition=models.Q(kind="opt_out_deadline"),
                name="sync_alert_one_per_withdrawal",
            ),
        ]
        indexes = [
            # The banner: unacknowledged alerts, newest first.
            models.Index(
                fields=["-created_at"],
                condition=models.Q(acknowledged_at__isnull=True),
                name="sync_alert_unacked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message[:60]}"


class CampaignsObservation(models.Model):
    """An unsubscribe or bounce seen in Zoho Campaigns, recorded once however often it is seen."""

    class Status(models.TextChoices):
        UNSUBSCRIBED = "unsub", "Unsubscribed"
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        SOFT_BOUNCE = "soft_bounce", "Soft bounce"

    list_key = models.CharField(max_length=100, blank=True)
    campaign_key = models.CharField(max_length=100, blank=True)
    email = models.EmailField()
    status = models.CharField(max_length=12, choices=Status.choices)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    raw = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["list_key", "campaign_key", "email", "status"], name="sync_campaignsobservation_once"
            ),
        ]
        indexes = [
            # A contact's sightings (the contact page's Zoho proof, the opt-out clock, erasure):
            # addresses are stored in their normal form, as contacts' are.
            models.Index(fields=["email"], name="sync_campobs_email"),
        ]

    def __str__(self) -> str:
        return f"{self.status} {self.email}"


class ReconciliationRun(models.Model):
    """One full comparison of the ledger with every CRM contact."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    method = models.CharField(max_length=10, help_text="coql or bulk")
    records_read = models.PositiveIntegerField(default=0)
    contacts_compared = models.PositiveIntegerField(default=0)
    opened = models.PositiveIntegerField(default=0)
    resolved = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(
        default=0, help_text="Ledger contacts linked to a CRM record that the run did not find."
    )
    error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"reconciliation {self.pk} ({self.method})"


class SyncAudit(models.Model):
    """One run of the stranded-change audit (`sync.audit.sync_audit`): how many contacts it
    checked, and those it found breaking the sync's invariant (each re-queued, each a bug)."""

    ran_at = models.DateTimeField()
    window_from = models.DateTimeField(help_text="Contacts with a push made since then were checked.")
    checked = models.PositiveIntegerField()
    stranded = models.PositiveIntegerField()
    stranded_contacts = models.JSONField(default=list, blank=True, help_text="Their ids (the first 1,000).")

    class Meta:
        indexes = [
            # The health page: the latest run, and the stranded count over a window.
            models.Index(fields=["-ran_at"], name="sync_syncaudit_newest"),
        ]

    def __str__(self) -> str:
        return f"audit {self.ran_at:%Y-%m-%d %H:%M}: {self.stranded} of {self.checked} stranded"


class BulkAction(models.Model):
    """An admin's action on a whole group of open discrepancies (`sync.bulk`): who, when, on how many.

    The group is what the page showed: its kind, CRM field and likely cause, and the newest
    discrepancy in it then (``seen_max_id``). The background run acts only on the group's
    rows that are still open and no newer than that, and records how many it matched and how
    far it got (the progress page reads ``done`` of ``matched``).
    """

    class Action(models.TextChoices):
        RETRY = "retry", "Retry all in this group"
        RESOLVE = "resolve", "Resolve all with a note"
        RECORD_DECISION = "record_decision", "Record as the person's decision"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    action = models.CharField(max_length=20, choices=Action.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    kind = models.CharField(max_length=20, choices=Discrepancy.Kind.choices)
    crm_field = models.CharField(max_length=120, blank=True)
    hint = models.TextField(blank=True)
    seen_count = models.PositiveIntegerField(help_text="Open discrepancies the page showed in the group.")
    seen_max_id = models.BigIntegerField(help_text="The newest of them: newer ones are left alone.")
    matched = models.PositiveIntegerField(default=0, help_text="Of those, still open when the run began.")
    done = models.PositiveIntegerField(default=0, help_text="Acted on so far.")
    refused = models.PositiveIntegerField(default=0, help_text="Left open: the action did not apply to them.")
    note = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    requested_by_name = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        indexes = [
            # The group page's recent actions, newest first.
            models.Index(fields=["kind", "crm_field", "-created_at"], name="sync_bulkaction_group"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.kind}/{self.crm_field or 'record'} by {self.requested_by_name}"

    def get_absolute_url(self) -> str:
        return reverse("sync:bulk_action_detail", args=[self.pk])

    @property
    def percent(self) -> int:
        return 100 if not self.matched else min(100, round(100 * (self.done + self.refused) / self.matched))


# The models of two concerns of their own, in their own modules; imported here so that Django
# registers them with this app and `from sync.models import ...` finds them.

from sync.callday_models import CallDay as CallDay  # noqa: E402
from sync.clock_models import OPEN_CLOCK as OPEN_CLOCK  # noqa: E402
from sync.clock_models import WithdrawalClock as WithdrawalClock  # noqa: E402
from sync.clock_models import WithdrawalClockMark as WithdrawalClockMark  # noqa: E402
from sync.erasure_models import ErasureZohoJob as ErasureZohoJob  # noqa: E402
from sync.import_models import ImportRun as ImportRun  # noqa: E402
from sync.link_models import CrmLinkRecord as CrmLinkRecord  # noqa: E402
from sync.link_models import DuplicateDecision as DuplicateDecision  # noqa: E402
from sync.webhook_models import WebhookAttempt as WebhookAttempt  # noqa: E402
from sync.webhook_models import WebhookDelivery as WebhookDelivery  # noqa: E402
from sync.webhook_models import WebhookEndpoint as WebhookEndpoint  # noqa: E402
