"""The consent ledger.

Events are append-only: the database itself rejects UPDATE and DELETE of
`ConsentEvent`, `IdentityEvent` and `Seal` rows (and TRUNCATE on PostgreSQL), see
`compliance/ledger_guard.py`. Every write goes through `compliance.services`.
"""

from __future__ import annotations

import calendar
import hashlib
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse

from compliance.personal import new_secret

GENESIS_HASH = "0" * 64
# The hashing rule of new events (compliance/chain.py): 1 hashed personal values themselves,
# 2 a keyed commitment of them (the values live in EventPersonalData/IdentityPersonalData), 3 the
# same values written as PostgreSQL writes a row and a jsonb, 4 their binary forms (record_send,
# jsonb_send) and a one-call keyed commitment (compliance/canonical.py, compliance/personal.py).
HASH_VERSION = 4
# Identity events follow the same numbering: 2, then 4 (the binary row; no version 3).
IDENTITY_HASH_VERSION = 4


class Contact(models.Model):
    """A data subject. Several identifiers, one person."""

    email = models.EmailField(max_length=254, null=True, blank=True)
    phone = models.CharField(max_length=20, null=True, blank=True, help_text="E.164, e.g. +4915112345678")
    app_user_id = models.CharField(max_length=128, null=True, blank=True)
    zoho_id = models.CharField("Zoho CRM record id", max_length=32, null=True, blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    # The identifiers above change only with an IdentityEvent: this is its chain's newest
    # version (1 from the contact's first identifiers on), which verify_ledger holds the chain to.
    identity_version = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    # The key of the commitments that the chains hold instead of this person's values (see
    # compliance/personal.py). Erasure drops it: the commitments then name nobody.
    secret = models.BinaryField(null=True, default=new_secret, editable=False)
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_contacts",
        editable=False,
        db_index=False,  # compliance_contact_merged_into, partial: few contacts are ever merged
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            # Identifiers are unique when present; NULL means "not known".
            models.UniqueConstraint(
                fields=["email"], condition=Q(email__isnull=False), name="compliance_contact_email_unique"
            ),
            models.UniqueConstraint(
                fields=["app_user_id"],
                condition=Q(app_user_id__isnull=False),
                name="compliance_contact_app_user_id_unique",
            ),
            models.CheckConstraint(
                condition=Q(email__isnull=False)
                | Q(phone__isnull=False)
                | Q(app_user_id__isnull=False)
                | Q(zoho_id__isnull=False)
                # A contact merged into another gave its identifiers to it.
                | Q(merged_into__isnull=False)
                # An erased contact has none left.
                | Q(erased_at__isnull=False),
                name="compliance_contact_has_identifier",
            ),
        ]
        indexes = [
            # GET /api/v1/contacts?phone=… and the phone lookup of the write path.
            models.Index(fields=["phone"], name="compliance_contact_phone"),
            # "Which contact is this CRM record": the reconciliation's look-up by Zoho id,
            # contact_resolve's and the contact search's.
            models.Index(fields=["zoho_id"], name="compliance_contact_zoho_id"),
            # The contacts merged into one (its page, and the foreign key's PROTECT check).
            models.Index(
                fields=["merged_into"],
                condition=Q(merged_into__isnull=False),
                name="compliance_contact_merged_into",
            ),
        ]

    def __str__(self) -> str:
        if self.erased_at is not None:
            return f"erased contact {self.pk}"
        return self.email or self.phone or self.app_user_id or f"contact {self.pk}"

    def get_absolute_url(self) -> str:
        return reverse("compliance:contact_detail", args=[self.pk])

    @property
    def display_name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part) or str(self)


class Purpose(models.Model):
    """What consent is for."""

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        PHONE = "phone", "Phone"
        NONE = "none", "No channel"

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    double_opt_in_required = models.BooleanField(default=False)
    validity_months = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Months an opt-in stays valid before it must be refreshed."
    )

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    def refresh_due_at(self, opted_in_at: datetime) -> datetime | None:
        """When an opt-in made at `opted_in_at` must be refreshed: `validity_months` later, on the
        same day of the month or, where that month is shorter, on its last day. None when this
        purpose's opt-ins do not lapse."""
        if not self.validity_months:
            return None
        month_index = opted_in_at.month - 1 + self.validity_months
        year, month = opted_in_at.year + month_index // 12, month_index % 12 + 1
        day = min(opted_in_at.day, calendar.monthrange(year, month)[1])
        return opted_in_at.replace(year=year, month=month, day=day)


class PolicyVersion(models.Model):
    """A privacy notice as it was published. Published versions never change."""

    label = models.CharField(max_length=50, unique=True)
    effective_at = models.DateField()
    text = models.TextField(blank=True)
    url = models.URLField(blank=True)
    sha256 = models.CharField(max_length=64, editable=False)
    published_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-effective_at"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(text="") | ~Q(url=""), name="compliance_policyversion_text_or_url"
            ),
        ]

    def __str__(self) -> str:
        return self.label

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            stored = PolicyVersion.objects.filter(pk=self.pk, published_at__isnull=False).exists()
            if stored:
                raise ValidationError(f"Policy version {self.label} is published and cannot change.")
        self.sha256 = hashlib.sha256((self.text or self.url).encode()).hexdigest()
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self.published_at is not None:
            raise ValidationError(f"Policy version {self.label} is published and cannot be deleted.")
        return super().delete(*args, **kwargs)

    def clean(self) -> None:
        if not self.text and not self.url:
            raise ValidationError("A policy version needs its full text or a URL.")


class ConsentStatus(models.TextChoices):
    OPTED_IN = "opted_in", "Opted in"
    OPTED_OUT = "opted_out", "Opted out"
    PENDING = "pending", "Pending double opt-in"
    EXPIRED = "expired", "Expired"


class Frequency(models.TextChoices):
    DAILY = "daily", "Daily"
    WEEKLY = "weekly", "Weekly"
    MONTHLY = "monthly", "Monthly"


class Source(models.TextChoices):
    MOBILE_APP = "mobile_app", "Mobile app"
    WEB_PORTAL = "web_portal", "Web portal"
    CUSTOMER_SERVICE = "customer_service", "Customer service (phone)"
    EMAIL_LINK = "email_link", "Email unsubscribe link"
    CAMPAIGNS = "campaigns", "Zoho Campaigns"
    CRM = "crm", "Zoho CRM"
    IMPORT = "import", "Import"
    ADMIN = "admin", "Admin correction"
    SYSTEM = "system", "System"
    PREFERENCE_CENTRE = "preference_centre", "Preference centre"


class ApiClient(models.Model):
    """A system that calls the ingest API (the mobile app's backend, the web portal).

    Its rights: `events:write` for each of `sources`, and the `scopes` beyond writing (reads
    are off until granted). A key is valid while the client is active and not expired; after a
    rotation the previous key stays valid too, until `previous_key_expires_at`.
    """

    class Scope(models.TextChoices):
        CONTACTS_READ = "contacts:read", "contacts:read: find contacts, read their consent history"
        IDENTITY_WRITE = "identity:write", "identity:write: change a contact's identifiers (update_identity)"
        LINKS_READ = "links:read", "links:read: read a contact's unsubscribe and preference links"
        ERASURE_WRITE = "erasure:write", "erasure:write: erase a contact's personal data (GDPR Art. 17)"

    name = models.CharField(max_length=100, unique=True)
    key_prefix = models.CharField(max_length=12, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    sources = models.JSONField(default=list, help_text="The sources this client may write (events:write).")
    scopes = models.JSONField(default=list, blank=True, help_text="Rights beyond writing events.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="From then on, every key is refused.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    previous_key_prefix = models.CharField(max_length=12, null=True, blank=True, unique=True, editable=False)
    previous_key_hash = models.CharField(max_length=64, blank=True, editable=False)
    previous_key_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    previous_key_last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # DRF's IsAuthenticated asks the authenticated principal this.
    is_authenticated = True

    def may_write(self, source: str) -> bool:
        return source in self.sources

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def previous_key_valid(self, now: datetime) -> bool:
        return bool(
            self.previous_key_hash
            and self.previous_key_expires_at is not None
            and self.previous_key_expires_at > now
        )


class ConsentEvent(models.Model):
    """One consent decision. Insert-only; the hash chains it to its predecessor."""

    # No index of their own: compliance_consentevent_chain_version (contact, purpose, version)
    # and compliance_event_purpose (purpose, occurred_at) lead with them.
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="events", db_index=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="events", db_index=False)
    version = models.PositiveIntegerField()
    previous_status = models.CharField(max_length=20, choices=ConsentStatus.choices, blank=True)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices)
    frequency = models.CharField(max_length=10, choices=Frequency.choices, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    policy_version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, null=True, blank=True)
    occurred_at = models.DateTimeField(help_text="When the person acted.")
    recorded_at = models.DateTimeField(help_text="When Consent Desk recorded it.")
    api_client = models.ForeignKey(ApiClient, on_delete=models.PROTECT, null=True, blank=True)
    actor_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True)
    actor = models.CharField(max_length=150, help_text="Who recorded it, e.g. api:mobile-app or user:alice.")
    evidence = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    idempotency_key = models.CharField(max_length=200)
    request_digest = models.CharField(
        max_length=64, help_text="SHA-256 of the request content, to tell a replay from a conflict."
    )
    # Which rule of compliance/chain.py the hash follows; from version 2 on, ip_address and
    # user_agent stay empty here and the evidence holds no personal value: they are in
    # EventPersonalData, and `personal_hash` (hashed) commits to them.
    hash_version = models.PositiveSmallIntegerField(default=HASH_VERSION, db_default=1)
    personal_hash = models.CharField(max_length=64, blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        # What the roles in compliance/roles.py are made of.
        permissions = [
            ("view_history", "Browse consent history"),
            ("view_dashboards", "See the discrepancy and error-rate dashboards"),
            ("download_reports", "Download signed audit reports"),
            ("record_phone_consent", "Record a consent decision taken by phone"),
            ("correct_consent", "Record an admin correction"),
            ("fix_discrepancies", "Resolve sync discrepancies"),
            ("erase_contacts", "Erase a contact's personal data and set legal holds"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "purpose", "version"], name="compliance_consentevent_chain_version"
            ),
            # Constraints rather than unique=True, which on PostgreSQL adds a second,
            # varchar_pattern_ops index for LIKE that no query here uses: the write path
            # looks keys up by equality (`=`, `IN`) and nothing looks hashes up at all.
            models.UniqueConstraint(
                fields=["idempotency_key"], name="compliance_consentevent_idempotency_key_unique"
            ),
            models.UniqueConstraint(fields=["hash"], name="compliance_consentevent_hash_unique"),
            models.CheckConstraint(
                condition=Q(version__gte=1), name="compliance_consentevent_version_positive"
            ),
        ]
        indexes = [
            # Newest first, selectors.event_history's order. Its callers all name one contact, whose
            # events compliance_consentevent_chain_version finds (then sorted), so no query reads
            # this index today.
            models.Index(fields=["-recorded_at"], name="compliance_event_recent"),
            # Events of a purpose: the admin event list's purpose filter (its row count reads only
            # this index) and the foreign key's look-ups, whose own index migration 0004 dropped for
            # this one. No query filters events by occurred_at.
            models.Index(fields=["purpose", "occurred_at"], name="compliance_event_purpose"),
            # Events from a source: the admin event list's source filter (its row count reads only
            # this index). No query filters events by occurred_at.
            models.Index(fields=["source", "occurred_at"], name="compliance_event_source"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}/{self.purpose_id} v{self.version} {self.status}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError("Consent events are append-only; record a compensating event instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValidationError("Consent events are append-only and cannot be deleted.")

    @property
    def personal_values(self) -> dict[str, Any]:
        """The personal values the event was recorded with: the side table's (empty once erased)
        from version 2 on, the row's own before."""
        if self.hash_version == 1:
            return {"ip_address": self.ip_address, "user_agent": self.user_agent}
        if hasattr(self, "plain_values"):  # an event just recorded: what went into its side row
            return dict(self.plain_values)
        try:
            return dict(self.personal.values)
        except EventPersonalData.DoesNotExist:
            return {}

    @property
    def shown_ip_address(self) -> str | None:
        return self.personal_values.get("ip_address")

    @property
    def shown_user_agent(self) -> str:
        return str(self.personal_values.get("user_agent") or "")

    @property
    def shown_evidence(self) -> dict[str, Any]:
        """The evidence with its personal values, where they are still held."""
        evidence = dict(self.evidence or {})
        if self.hash_version > 1:
            evidence.update(self.personal_values.get("evidence") or {})
        return evidence


class ConsentState(models.Model):
    """The latest decision per contact and purpose: what dashboards and the sync read."""

    # No index of their own: compliance_consentstate_one_per_purpose (contact, purpose) and
    # compliance_state_status (purpose, status) lead with them.
    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="states", db_index=False)
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="states", db_index=False)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices, blank=True)
    frequency = models.CharField(max_length=10, choices=Frequency.choices, blank=True)
    event = models.ForeignKey(ConsentEvent, on_delete=models.PROTECT, null=True, related_name="+")
    # The current event's policy version, kept here so that "how many current opt-ins cite
    # each version" reads this table's index, not millions of events.
    policy_version = models.ForeignKey(
        PolicyVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    occurred_at = models.DateTimeField(null=True)
    version = models.PositiveIntegerField(default=0, help_text="Version of the chain's newest event.")
    head_hash = models.CharField(max_length=64, default=GENESIS_HASH, help_text="Hash of the newest event.")
    refresh_due_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "purpose"], name="compliance_consentstate_one_per_purpose"
            ),
        ]
        indexes = [
            # The admin state list's purpose and status filters (their row count reads only this
            # index), and the foreign key's look-ups by purpose, whose own index migration 0004
            # dropped for this one.
            models.Index(fields=["purpose", "status"], name="compliance_state_status"),
            # Current opt-ins per policy version (the policies page, re-permission).
            models.Index(
                fields=["policy_version"],
                condition=Q(status="opted_in"),
                name="compliance_state_optin_policy",
            ),
            # The re-permission view's list of current opt-ins, in purpose and contact order: a
            # page walks the index and reads about as many rows as it shows.
            models.Index(
                fields=["purpose", "contact"],
                condition=Q(status="opted_in"),
                name="compliance_state_optin_purpose",
            ),
            # The refresh job: opt-ins whose validity runs out.
            models.Index(
                fields=["refresh_due_at"],
                condition=Q(refresh_due_at__isnull=False),
                name="compliance_state_refresh_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id}/{self.purpose_id}: {self.status or 'none'}"


class Suppression(models.Model):
    """A reason not to mail that is not a consent decision (a hard bounce, a complaint)."""

    class Kind(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        COMPLAINT = "complaint", "Spam complaint"
        MANUAL = "manual", "Manual"
        # An erased person's address or number came back (compliance/services/erasure.py).
        ERASED = "erased", "Erased before: do not contact"

    # The channel an ERASED suppression is recorded on: it holds every channel.
    ERASED_CHANNEL = "none"

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="suppressions")
    channel = models.CharField(max_length=10, choices=Purpose.Channel.choices, default=Purpose.Channel.EMAIL)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    detail = models.CharField(max_length=300, blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "channel", "kind"],
                condition=Q(lifted_at__isnull=True),
                name="compliance_suppression_one_active",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} {self.channel} {self.kind}"


class Seal(models.Model):
    """A checkpoint over every event since the previous seal, chained to it. Insert-only."""

    sequence = models.PositiveIntegerField(unique=True)
    created_at = models.DateTimeField()
    first_event_id = models.BigIntegerField(null=True)
    last_event_id = models.BigIntegerField(help_text="Every event with an id up to this one is covered.")
    event_count = models.PositiveIntegerField()
    events_digest = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["sequence"]

    def __str__(self) -> str:
        return f"seal {self.sequence} ({self.hash[:12]})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError("Seals are append-only.")
        super().save(*args, **kwargs)


class OutboxEntry(models.Model):
    """'This contact's state changed': the sync consumes these. Written in the event's transaction."""

    class Priority(models.IntegerChoices):
        WITHDRAWAL = 0, "Withdrawal"
        OPT_IN = 1, "Opt-in"
        OTHER = 2, "Other"

    contact = models.ForeignKey(Contact, on_delete=models.PROTECT, related_name="+")
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, null=True, related_name="+")
    event = models.ForeignKey(ConsentEvent, on_delete=models.PROTECT, null=True, related_name="+")
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.OTHER)
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.CharField(max_length=100, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "outbox entries"
        indexes = [
            # The sync's claim: pending rows, most urgent and oldest first.
            models.Index(
                fields=["priority", "id"],
                condition=Q(processed_at__isnull=True),
                name="compliance_outbox_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"outbox {self.pk} contact {self.contact_id}"


# The models of concerns of their own, in their own modules; imported here so that Django
# registers them with this app and `from compliance.models import ...` finds them.

from compliance.access_log_models import AccessLog as AccessLog  # noqa: E402
from compliance.access_log_models import AccessLogContact as AccessLogContact  # noqa: E402
from compliance.erasure_models import ErasedIdentifier as ErasedIdentifier  # noqa: E402
from compliance.erasure_models import ErasureRequest as ErasureRequest  # noqa: E402
from compliance.erasure_models import LegalHold as LegalHold  # noqa: E402
from compliance.identity_models import IdentityEvent as IdentityEvent  # noqa: E402
from compliance.lifecycle.models import LifecycleMessage as LifecycleMessage  # noqa: E402
from compliance.lifecycle.models import LinkGeneration as LinkGeneration  # noqa: E402
from compliance.lifecycle.models import RepermissionRun as RepermissionRun  # noqa: E402
from compliance.lifecycle.models import RepermissionTarget as RepermissionTarget  # noqa: E402
from compliance.personal_models import EventPersonalData as EventPersonalData  # noqa: E402
from compliance.personal_models import IdentityPersonalData as IdentityPersonalData  # noqa: E402
from compliance.tally_models import ConsentCount as ConsentCount  # noqa: E402
from compliance.tally_models import ConsentDay as ConsentDay  # noqa: E402
from compliance.tally_models import ConsentDayMark as ConsentDayMark  # noqa: E402
from compliance.tally_models import OptInCount as OptInCount  # noqa: E402
from compliance.tally_models import VerifyRun as VerifyRun  # noqa: E402
