"""Shapes of the ingest API. Types only: the rules live in compliance.services."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import MaxLengthValidator, ProhibitNullCharactersValidator
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import Field, SkipField, empty
from rest_framework.relations import RelatedField
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from compliance.models import ConsentEvent, ConsentState, Contact, ErasureRequest
from compliance.services import ConsentDecision, ContactIdentity


class AwareDateTimeField(serializers.DateTimeField):
    """An ISO 8601 time that names its time zone (`Z` or an offset): a time without one is a
    guess about where the person was, and the ledger records no guesses."""

    default_error_messages = {"naive": "Give a time zone, e.g. 2026-11-20T09:14:03Z or +01:00."}

    def to_internal_value(self, value: Any) -> datetime:
        if isinstance(value, str) and len(value) < 64:
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None  # well formed, but no date: the parent says so
            if parsed is not None and parsed.tzinfo is None:
                self.fail("naive")
        return super().to_internal_value(value)


class ContactIdentitySerializer(serializers.Serializer[Any]):
    email = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=254)
    phone = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=40)
    app_user_id = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=128)
    zoho_id = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=32)
    first_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    last_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class ConsentEventInputSerializer(serializers.Serializer[Any]):
    contact = ContactIdentitySerializer()
    purpose = serializers.CharField(max_length=50)
    status = serializers.CharField(max_length=20)
    frequency = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=10)
    # DRF's stubs type Field.source as an attribute; here it is our field of that name.
    source = serializers.CharField(max_length=20)  # type: ignore[assignment]
    ip_address = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=45)
    user_agent = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)
    policy_version = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=50)
    occurred_at = AwareDateTimeField()
    idempotency_key = serializers.CharField(required=False, max_length=200)
    evidence = serializers.DictField(required=False, default=dict)
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    update_identity = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Change the contact's identifiers to the ones given, recorded as an identity event "
        "(needs the identity:write right); without it a conflicting identifier is refused with 409.",
    )
    send_confirmation = serializers.BooleanField(
        required=False,
        default=True,
        help_text="For status pending of a purpose with double opt-in: Consent Desk mails the confirmation "
        "link (the default). false: the client runs its own double opt-in and posts opted_in with evidence.",
    )

    def to_domain(self, header_key: str | None = None) -> tuple[ContactIdentity, ConsentDecision]:
        return self.domain_of(self.validated_data, header_key)

    @staticmethod
    def domain_of(
        data: dict[str, Any], header_key: str | None = None
    ) -> tuple[ContactIdentity, ConsentDecision]:
        """The service's arguments from validated data (`run_validation`'s or `validated_data`)."""
        contact = data["contact"]
        identity = ContactIdentity(
            email=contact.get("email"),
            phone=contact.get("phone"),
            app_user_id=contact.get("app_user_id"),
            zoho_id=contact.get("zoho_id"),
            first_name=contact.get("first_name", ""),
            last_name=contact.get("last_name", ""),
            update_identity=bool(data.get("update_identity", False)),
        )
        decision = ConsentDecision(
            purpose=data["purpose"],
            status=data["status"],
            source=data["source"],
            occurred_at=data["occurred_at"],
            idempotency_key=data.get("idempotency_key") or header_key or "",
            frequency=data.get("frequency") or None,
            ip_address=data.get("ip_address") or None,
            user_agent=data.get("user_agent", ""),
            policy_version=data.get("policy_version") or None,
            evidence=data.get("evidence") or {},
            reason=data.get("reason", ""),
        )
        return identity, decision


class ContactLinksSerializer(serializers.Serializer[Any]):
    contact_id = serializers.IntegerField()
    unsubscribe_url = serializers.URLField(help_text="One-click unsubscribe from every email purpose.")
    unsubscribe_urls = serializers.DictField(
        child=serializers.URLField(), help_text="One-click unsubscribe per purpose code."
    )
    preferences_url = serializers.URLField()
    headers = serializers.DictField(
        child=serializers.CharField(), help_text="List-Unsubscribe and List-Unsubscribe-Post (RFC 8058)."
    )


class BatchInputSerializer(serializers.Serializer[Any]):
    events = serializers.ListField(child=serializers.JSONField(), allow_empty=False)


class ConsentEventSerializer(serializers.ModelSerializer[ConsentEvent]):
    contact_id = serializers.IntegerField(read_only=True)
    purpose: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    policy_version: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="label", read_only=True
    )
    # The personal values, from the data kept apart (null, "" and none once erased).
    ip_address = serializers.CharField(source="shown_ip_address", read_only=True, allow_null=True)
    user_agent = serializers.CharField(source="shown_user_agent", read_only=True)
    evidence = serializers.JSONField(source="shown_evidence", read_only=True)

    class Meta:
        model = ConsentEvent
        fields = [
            "id",
            "contact_id",
            "purpose",
            "version",
            "previous_status",
            "status",
            "frequency",
            "source",
            "ip_address",
            "user_agent",
            "policy_version",
            "occurred_at",
            "recorded_at",
            "actor",
            "evidence",
            "reason",
            "idempotency_key",
            "hash_version",
            "personal_hash",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class ConsentStateSerializer(serializers.ModelSerializer[ConsentState]):
    purpose: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="code", read_only=True
    )
    event_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = ConsentState
        fields = ["purpose", "status", "frequency", "version", "event_id", "occurred_at", "refresh_due_at"]
        read_only_fields = fields


class ContactSerializer(serializers.ModelSerializer[Contact]):
    former = serializers.SerializerMethodField(
        help_text="Found by an email this contact no longer has (selectors.contact_find)."
    )

    class Meta:
        model = Contact
        fields = [
            "id",
            "email",
            "phone",
            "app_user_id",
            "zoho_id",
            "first_name",
            "last_name",
            "created_at",
            "merged_into",
            "former",
        ]
        read_only_fields = fields

    def get_former(self, contact: Contact) -> bool:
        return bool(getattr(contact, "former", False))


class ZohoDiscrepancySerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="Why Zoho differs, e.g. permission_denied, overwritten.")
    crm_field = serializers.CharField(help_text="Blank for the whole record.")
    opened_at = serializers.DateTimeField()


class ZohoRecordStatusSerializer(serializers.Serializer[Any]):
    """One written CRM record of the contact (a Contact, or a Lead not yet converted)."""

    module = serializers.CharField(help_text="The CRM module: Contacts or Leads.")
    record_id = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["pending", "verified", "discrepancy"], help_text="This purpose on this record."
    )
    verified_at = serializers.DateTimeField(allow_null=True)


class ZohoStatusSerializer(serializers.Serializer[Any]):
    """What the sync registered for a purpose (compliance.panels): whether its state reached Zoho."""

    status = serializers.ChoiceField(
        choices=["pending", "verified", "discrepancy", "not_synced"],
        help_text="pending: pushed or queued, not yet read back; verified: read back and matching "
        "(verified_at); discrepancy: Zoho differs (discrepancy.kind); not_synced: no CRM field carries it.",
    )
    verified_at = serializers.DateTimeField(allow_null=True)
    pushed_at = serializers.DateTimeField(allow_null=True, help_text="The last push carrying this purpose.")
    record_ids = serializers.ListField(child=serializers.CharField(), help_text="Linked CRM record id(s).")
    records = ZohoRecordStatusSerializer(
        many=True, help_text="Each written CRM record with its module; verified only when every one is."
    )
    discrepancy = ZohoDiscrepancySerializer(allow_null=True)


class ConsentStateStatusSerializer(ConsentStateSerializer):
    zoho = serializers.SerializerMethodField(help_text="Null when the sync is not installed.")

    class Meta(ConsentStateSerializer.Meta):
        fields = [*ConsentStateSerializer.Meta.fields, "zoho"]
        read_only_fields = fields

    @extend_schema_field(ZohoStatusSerializer(allow_null=True))
    def get_zoho(self, state: ConsentState) -> dict[str, Any] | None:
        statuses = self.context.get("statuses", {}).get("zoho", {})
        return statuses.get(state.purpose.code) if statuses else None


class ContactConsentsSerializer(serializers.Serializer[Any]):
    contact = ContactSerializer()
    states = ConsentStateStatusSerializer(many=True)
    history = ConsentEventSerializer(many=True)


class BatchItemResultSerializer(serializers.Serializer[Any]):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="HTTP status this item alone would have had.")
    event = ConsentEventSerializer(required=False)
    detail = serializers.CharField(required=False)
    errors = serializers.DictField(required=False)  # type: ignore[assignment]  # a field, not Serializer.errors


class BatchResultSerializer(serializers.Serializer[Any]):
    created = serializers.IntegerField()
    replayed = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = BatchItemResultSerializer(many=True)


class ErasureInputSerializer(serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=500,
        help_text="Why, without personal data (e.g. a ticket number).",
    )


class ErasureSerializer(serializers.ModelSerializer[ErasureRequest]):
    contact_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = ErasureRequest
        fields = [
            "id",
            "contact_id",
            "channel",
            "requested_by",
            "reason",
            "requested_at",
            "status",
            "erased_at",
            "events_kept",
            "values_deleted",
            "legacy_events",
        ]
        read_only_fields = fields


# What QuickInput does with a field: a plain CharField's rules in place, a nested serializer's
# fields in turn, any other field's own run_validation.
_CHAR, _NESTED, _FIELD = "char", "nested", "field"
_CHAR_VALIDATORS = [ProhibitNullCharactersValidator, ProhibitSurrogateCharactersValidator]
_Plan = list[tuple[str, str, Any, Any]]


class QuickInput:
    """`serializer.run_validation(data)` with the same result, in a fifth of the calls for the
    input clients send: a batch validates 1,000 events, and DRF runs each CharField through four
    calls and three validators. A field of plain text is checked here by CharField's own rules
    (trimmed; blank, null, length, NUL and surrogates refused); any other field by its own
    run_validation. Whatever is not plainly valid here (a number for a text, a blank purpose, a
    field in error) goes to `serializer.run_validation` itself, which gives the answer or the
    errors exactly as before; so does a serializer with rules of its own (validators, `validate`).
    """

    def __init__(self, serializer: serializers.Serializer[Any]) -> None:
        self.serializer = serializer
        self.plan = self._plan_of(serializer)

    @classmethod
    def _plan_of(cls, serializer: serializers.Serializer[Any]) -> _Plan | None:
        if (
            type(serializer).validate is not serializers.Serializer.validate
            or serializer.validators
            or any(field.read_only for field in serializer.fields.values())
        ):
            return None
        plan: _Plan = []
        for name, field in serializer.fields.items():
            if field.source_attrs != [name] or hasattr(serializer, f"validate_{name}"):
                return None
            if isinstance(field, serializers.Serializer):
                nested = cls._plan_of(field)
                if nested is None:
                    return None
                plan.append((name, _NESTED, field, nested))
            elif (
                type(field) is serializers.CharField
                and field.trim_whitespace
                and field.min_length is None
                and [type(v) for v in field.validators]
                == ([MaxLengthValidator] if field.max_length is not None else []) + _CHAR_VALIDATORS
            ):
                plan.append((name, _CHAR, field, field.max_length))
            else:
                plan.append((name, _FIELD, field, None))
        return plan

    def run_validation(self, data: Any) -> Any:
        """The validated data, or ValidationError as `serializer.run_validation` raises it."""
        quick = self._validated(self.plan, data) if self.plan is not None else None
        return quick if quick is not None else self.serializer.run_validation(data)

    @classmethod
    def _validated(cls, plan: _Plan, data: Any) -> dict[str, Any] | None:
        """The validated data, or None for anything not plainly valid."""
        if type(data) is not dict:
            return None
        validated: dict[str, Any] = {}
        for name, kind, field, detail in plan:
            value = data.get(name, empty)
            if value is empty:
                if field.required:
                    return None
                if field.default is not empty:
                    validated[name] = field.get_default()
            elif kind == _CHAR:
                if value is None:
                    if not field.allow_null:
                        return None
                    validated[name] = None
                    continue
                if type(value) is not str:
                    return None
                text = value.strip()
                if not text and not field.allow_blank:
                    return None
                if text and (
                    (detail is not None and len(text) > detail)
                    or "\x00" in text
                    or not (text.isascii() or _utf8_encodable(text))
                ):
                    return None
                validated[name] = text
            elif kind == _NESTED:
                nested = cls._validated(detail, value)  # None (not a dict) goes the long way too
                if nested is None:
                    return None
                validated[name] = nested
            else:
                try:
                    validated[name] = field.run_validation(value)
                except (serializers.ValidationError, DjangoValidationError):
                    return None
                except SkipField:
                    continue
        return validated


def _utf8_encodable(text: str) -> bool:
    """No surrogate code point (U+D800 to U+DFFF) in the text: only those fail to encode."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class QuickOutput:
    """`serializer.to_representation(instance)` with the same result, without DRF's calls per
    field to find the attribute: each field's value is the instance's attribute of its name
    (None stays None) and its to_representation. A serializer with a field that reads anything
    else (a dotted source, `*`, a primary-key-only relation) and an instance whose attribute is
    missing or callable go through `serializer.to_representation` itself."""

    def __init__(self, serializer: serializers.Serializer[Any]) -> None:
        self.serializer = serializer
        fields = list(serializer._readable_fields)
        simple = all(
            len(field.source_attrs) == 1
            and type(field).get_attribute in (Field.get_attribute, RelatedField.get_attribute)
            and not (isinstance(field, RelatedField) and field.use_pk_only_optimization())
            for field in fields
        )
        # A bound field's name is set (DRF types it optional for the unbound ones).
        self.plan = (
            [(str(field.field_name), field.source_attrs[0], field.to_representation) for field in fields]
            if simple
            else None
        )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        if self.plan is None or isinstance(instance, Mapping):
            return self.serializer.to_representation(instance)
        shown: dict[str, Any] = {}
        for name, attribute, represent in self.plan:
            try:
                value = getattr(instance, attribute)
            except (AttributeError, KeyError, ObjectDoesNotExist):
                return self.serializer.to_representation(instance)
            if value is None:
                shown[name] = None
            elif callable(value):
                return self.serializer.to_representation(instance)
            else:
                shown[name] = represent(value)
        return shown
