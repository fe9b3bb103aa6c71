"""The identity history: one insert-only, hash-chained event per change of a contact's identifiers
(re-exported by compliance.models)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from compliance.models import IDENTITY_HASH_VERSION, ApiClient, Contact, Source
from compliance.personal_models import IdentityPersonalData


class IdentityEvent(models.Model):
    """One change of a contact's identifiers: insert-only, hash-chained per contact.

    Holds the identifiers as they were after the change, so the newest event of a chain is
    what the contact row says (verify_ledger checks it) and the earlier ones say what the
    contact was known by before. Version 1 is the contact's first identifiers.
    """

    class Kind(models.TextChoices):
        CREATED = "created", "First identifiers"
        FILLED_IN = "filled_in", "Missing identifiers filled in"
        UPDATED = "updated", "Identifiers changed"
        MERGED_FROM = "merged_from", "Another contact merged into this one"
        MERGED_INTO = "merged_into", "Merged into another contact"
        ERASED = "erased", "Personal data erased"

    # No index of its own: compliance_identityevent_chain_version (contact, version) leads with it.
    contact = models.ForeignKey(
        Contact, on_delete=models.PROTECT, related_name="identity_events", db_index=False
    )
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    email = models.EmailField(max_length=254, null=True, blank=True)
    phone = models.CharField(max_length=20, null=True, blank=True)
    app_user_id = models.CharField(max_length=128, null=True, blank=True)
    zoho_id = models.CharField("Zoho CRM record id", max_length=32, null=True, blank=True)
    first_name = models.CharField(max_length=100, blank=True)
    last_name = models.CharField(max_length=100, blank=True)
    other_contact = models.ForeignKey(
        Contact, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    # No indexes of their own: nothing looks identity events up by who made them, and each index
    # would cost every new contact's insert (only deleting a client or user reads these columns).
    api_client = models.ForeignKey(
        ApiClient, on_delete=models.PROTECT, null=True, blank=True, related_name="+", db_index=False
    )
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    actor = models.CharField(max_length=150, help_text="Who recorded it, e.g. api:mobile-app or user:alice.")
    reason = models.TextField(blank=True)
    request_key = models.CharField(
        max_length=200,
        blank=True,
        help_text="Idempotency key of the consent request that carried the change.",
    )
    recorded_at = models.DateTimeField()
    # As ConsentEvent's: from version 2 on, email, phone, app_user_id, the names and the IP
    # address stay empty here (IdentityPersonalData holds them) and personal_hash commits to them.
    hash_version = models.PositiveSmallIntegerField(default=IDENTITY_HASH_VERSION, db_default=1)
    personal_hash = models.CharField(max_length=64, blank=True, default="")
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["contact", "version"], name="compliance_identityevent_chain_version"
            ),
            models.CheckConstraint(
                condition=Q(version__gte=1), name="compliance_identityevent_version_positive"
            ),
        ]
        indexes = [
            # Look-ups by a former email (selectors.contact_find and contact_search).
            models.Index(fields=["email"], name="compliance_identity_email"),
        ]

    def __str__(self) -> str:
        return f"{self.contact_id} identity v{self.version} {self.kind}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValidationError("Identity events are append-only; record a new one instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValidationError("Identity events are append-only and cannot be deleted.")

    def shown(self, name: str) -> Any:
        """An identifier or the IP address as recorded: the side table's from version 2 on
        (None or "" once erased), the row's own before."""
        if self.hash_version == 1:
            return getattr(self, name)
        try:
            return getattr(self.personal, name)
        except IdentityPersonalData.DoesNotExist:
            return "" if name in ("first_name", "last_name") else None

    @property
    def shown_email(self) -> str | None:
        return self.shown("email")  # type: ignore[no-any-return]

    @property
    def shown_phone(self) -> str | None:
        return self.shown("phone")  # type: ignore[no-any-return]

    @property
    def shown_app_user_id(self) -> str | None:
        return self.shown("app_user_id")  # type: ignore[no-any-return]

    @property
    def shown_first_name(self) -> str:
        return self.shown("first_name")  # type: ignore[no-any-return]

    @property
    def shown_last_name(self) -> str:
        return self.shown("last_name")  # type: ignore[no-any-return]

    @property
    def shown_ip_address(self) -> str | None:
        return self.shown("ip_address")  # type: ignore[no-any-return]
