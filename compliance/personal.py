"""Personal values apart from the chains: keyed commitments, and what counts as personal.

From hash version 2 on, an event's hash covers `personal_hash`: HMAC-SHA256, under its
contact's own secret (`Contact.secret`), of the canonical JSON of the event's personal values.
The values themselves sit in a side table (`EventPersonalData`, `IdentityPersonalData`) that
erasure may delete from, so the chains verify with or without them; once the secret is
dropped too, nobody can test a guess (an IP address, an email) against a commitment either:
a plain hash of an IPv4 address is broken by trying all 2^32 of them, a keyed one is not.

Evidence keys are personal unless they are known not to be (`NON_PERSONAL_EVIDENCE_KEYS`):
an API client's own evidence keys are taken for personal, the safe side.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

from compliance.canonical import RECORD_VERSION, SEND_VERSION, jsonb_bytes, jsonb_text, record_bytes

SECRET_BYTES = 32

# Evidence keys whose values never name the person: the ledger's own references and times.
NON_PERSONAL_EVIDENCE_KEYS = frozenset(
    {
        "double_opt_in_confirmed_at",
        "pending_event",
        "campaign_id",
        "opt_in_event",
        "validity_months",
        "correction",
        "legacy_source",
        "import",
        "campaigns_list_key",
        "campaigns_campaign_key",
        "observed_at",
        "channel",
        "form",
        "file",
        "erasure",
        "retention",
        # The lifecycle's links and mails (compliance/lifecycle): references, digests and times.
        "confirmed_through",
        "token_sha256",
        "message_id",
        "message_kind",
        "sent_at",
        "clicked_at",
        "refresh",
        "refreshed_event",
        "link",
        "page",
        "double_opt_in_event",
        # Zoho CRM changes (sync/crm_changes.py): the record (id and module: Contacts or Leads),
        # its field, and the CRM user who changed it (a member of staff, not the person).
        "zoho_id",
        "crm_module",
        "crm_field",
        "crm_value",
        "expected",
        "modified_by",
        "modified_time",
        "last_push",
        "crm_user",
        "discrepancy",
        "bulk_action",
        # Re-permission (compliance/lifecycle/repermission.py): the run and the events it renews.
        "repermission",
        "repermission_run",
        "repermission_of_event",
        "previous_policy_version",
        # The Zoho import (sync/imports_zoho.py): its run and the legacy opt-in's dates and channel.
        # The record's field values (`zoho_crm`, `zoho_campaigns`) name the person and stay personal.
        "import_run",
        "legacy",
        "consent_date",
        "consent_through",
        "double_opt_in_basis",
        "occurred_at_is",
    }
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def secret_bytes(secret: bytes | memoryview | None) -> bytes | None:
    """The secret as bytes (PostgreSQL gives a bytea back as a memoryview)."""
    return None if secret is None else bytes(secret)


def commitment(secret: bytes | memoryview | None, values: Mapping[str, Any], *, version: int) -> str:
    """The keyed commitment in hex, under `secret`, of `values` by the hash version of the event
    that holds it; "" when there are none.

    - Version 4: the first 32 bytes of SHA-384 over the secret (32 bytes) then the values'
      jsonb_send bytes (compliance/canonical.py). One hash call, where HMAC takes two: a keyed
      prefix is safe with SHA-384, whose output hides part of its state, so no one without the
      secret can extend a commitment into another (SHA-256 would let them).
    - Versions 2 and 3: HMAC-SHA256 of compact JSON with its keys sorted (2), of the text
      PostgreSQL gives the values as a jsonb (3)."""
    if not values:
        return ""
    key = secret_bytes(secret)
    if key is None:
        raise ValueError("A commitment needs the contact's secret (was the contact erased?).")
    if version >= SEND_VERSION:
        return keyed_digest(key, jsonb_bytes(dict(values)))
    text = jsonb_text(dict(values)) if version >= RECORD_VERSION else _dumps(dict(values))
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def keyed_digest(key: bytes, message: bytes) -> str:
    """Hash version 4's commitment: SHA-384 of the key then the message, its first 32 bytes in hex."""
    return hashlib.sha384(key + message).digest()[:32].hex()


def evidence_split(evidence: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the evidence kept in the event, its personal part kept apart)."""
    kept: dict[str, Any] = {}
    personal: dict[str, Any] = {}
    for key, value in evidence.items():
        (kept if key in NON_PERSONAL_EVIDENCE_KEYS else personal)[key] = value
    return kept, personal


def event_personal_values(
    *, ip_address: str | None, user_agent: str, personal_evidence: Mapping[str, Any]
) -> dict[str, Any]:
    """A consent event's personal values, only those present."""
    values: dict[str, Any] = {}
    if ip_address:
        values["ip_address"] = ip_address
    if user_agent:
        values["user_agent"] = user_agent
    if personal_evidence:
        values["evidence"] = dict(personal_evidence)
    return values


IDENTITY_PERSONAL_FIELDS = ("email", "phone", "app_user_id", "first_name", "last_name", "ip_address")


# Their PostgreSQL types (IdentityPersonalData's columns), for version 4's commitment.
IDENTITY_PERSONAL_TYPES = ("varchar", "varchar", "varchar", "varchar", "varchar", "inet")


def identity_personal_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """An identity event's personal values (from IDENTITY_PERSONAL_FIELDS), only those present."""
    return {name: values[name] for name in IDENTITY_PERSONAL_FIELDS if values.get(name)}


def identity_commitment(secret: bytes | memoryview | None, values: Mapping[str, Any], *, version: int) -> str:
    """The keyed commitment of an identity event's personal values (identity_personal_values)
    by its hash version; "" when there are none.

    - Version 4: as a consent event's (keyed SHA-384, its first 32 bytes), over the binary row of
      the six values in IDENTITY_PERSONAL_FIELDS' order, an absent one as NULL: what PostgreSQL
      gives for `record_send(ROW(email, phone, ...))` of the side row, blanks as NULL.
    - Version 2: HMAC-SHA256 of their compact JSON (commitment)."""
    if not values:
        return ""
    if version < SEND_VERSION:
        return commitment(secret, values, version=version)
    key = secret_bytes(secret)
    if key is None:
        raise ValueError("A commitment needs the contact's secret (was the contact erased?).")
    row = zip(
        IDENTITY_PERSONAL_TYPES, (values.get(name) or None for name in IDENTITY_PERSONAL_FIELDS), strict=True
    )
    return keyed_digest(key, record_bytes(row))
