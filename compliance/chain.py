"""Canonical content and hashes of events and seals.

An event's hash is SHA-256 over its predecessor's hash (in the chain of its
contact and purpose) and its canonical content: a JSON array of its fields in a
fixed order. `verify_ledger` recomputes it from the stored columns, so the
canonical form is built from exactly what the database returns.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from django.db.models import Field

from compliance.models import GENESIS_HASH, ConsentEvent

# The columns (in this order) that the canonical form is built from; the
# verifier selects them in one query.
EVENT_HASHED_FIELDS = (
    "contact_id",
    "purpose_id",
    "version",
    "previous_status",
    "status",
    "frequency",
    "source",
    "ip_address",
    "user_agent",
    "policy_version_id",
    "occurred_at",
    "recorded_at",
    "actor",
    "evidence",
    "reason",
    "idempotency_key",
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _instant(value: datetime) -> str:
    # In UTC, as the row gives it back: a decision made at 10:00+02:00 is stored, and read
    # back, as 08:00+00:00, and its hash must not depend on the offset it arrived with.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(prev_hash: str, values: tuple[Any, ...]) -> str:
    """Hash of one event from its EVENT_HASHED_FIELDS values and its predecessor's hash."""
    items = list(values)
    items[10] = _instant(items[10])
    items[11] = _instant(items[11])
    return hashlib.sha256(f"{prev_hash}\n{_dumps(items)}".encode()).hexdigest()


# How PostgreSQL writes each hashed column as the canonical JSON above does: to_json()
# escapes text exactly as json.dumps(ensure_ascii=False) does, an instant is written in
# UTC as isoformat() writes it there, and evidence objects get their keys in code point
# order (COLLATE "C" orders UTF-8 by code point). Where it cannot match the Python form
# (the spacing inside nested evidence, a number Python writes with an exponent) it still
# writes a JSON text of the same values: its hash then differs from the stored one, but
# it never equals a stored hash that event_hash would not give.
_JSON_TEXT = "to_json({col}::text)::text"
_INSTANT = """'"' || to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00"'"""
_EVENT_COLUMN_SQL = {
    "contact_id": "{col}::text",
    "purpose_id": "{col}::text",
    "version": "{col}::text",
    "previous_status": _JSON_TEXT,
    "status": _JSON_TEXT,
    "frequency": _JSON_TEXT,
    "source": _JSON_TEXT,
    # inet_out: the text Django reads (an address with a netmask keeps it).
    "ip_address": "coalesce(to_json(inet_out({col})::text)::text, 'null')",
    "user_agent": _JSON_TEXT,
    "policy_version_id": "coalesce({col}::text, 'null')",
    "occurred_at": _INSTANT,
    "recorded_at": _INSTANT,
    "actor": _JSON_TEXT,
    "evidence": (
        "CASE WHEN {col} = '{}' THEN '{}' WHEN jsonb_typeof({col}) = 'object' THEN"
        " (SELECT '{' || string_agg(to_json(k)::text || ':' || v::text, ',' ORDER BY k COLLATE \"C\") || '}'"
        " FROM jsonb_each({col}) AS evidence_item(k, v)) ELSE {col}::text END"
    ),
    "reason": _JSON_TEXT,
    "idempotency_key": _JSON_TEXT,
}


def event_hash_sql() -> str | None:
    """A PostgreSQL expression over a ConsentEvent row: the event_hash of the row (from its own
    prev_hash column) as Django reads it with the connection's time zone UTC, in hex.

    Exact unless the evidence holds a nested object or array or a number Python writes
    with an exponent; then it differs (see _EVENT_COLUMN_SQL). None when a hashed field
    has no SQL form here.
    """
    if not set(EVENT_HASHED_FIELDS) <= _EVENT_COLUMN_SQL.keys():
        return None
    items = " || ',' || ".join(
        _EVENT_COLUMN_SQL[name].replace("{col}", _event_column(name)) for name in EVENT_HASHED_FIELDS
    )
    content = f"{_event_column('prev_hash')} || E'\\n[' || {items} || ']'"
    return f"encode(sha256(convert_to({content}, 'UTF8')), 'hex')"


def _event_column(name: str) -> str:
    field = ConsentEvent._meta.get_field(name)  # by attname too: "contact_id"
    assert isinstance(field, Field)
    return str(field.column)


def seal_hash(
    *,
    sequence: int,
    created_at: datetime,
    first_event_id: int | None,
    last_event_id: int,
    event_count: int,
    events_digest: str,
    prev_hash: str,
) -> str:
    content = [sequence, _instant(created_at), first_event_id, last_event_id, event_count, events_digest]
    return hashlib.sha256(f"{prev_hash}\n{_dumps(content)}".encode()).hexdigest()


# An identity event's canonical content: these columns in this order, chained per contact.
# Each value is written as its length, a colon and its text (None as "-"): unambiguous without
# escaping, so PostgreSQL writes it cheaply too (identity_event_hash_sql; to_json, which the
# consent events' JSON form needs, costs six times as much per row).
IDENTITY_HASHED_FIELDS = (
    "contact_id",
    "version",
    "kind",
    "email",
    "phone",
    "app_user_id",
    "zoho_id",
    "first_name",
    "last_name",
    "other_contact_id",
    "source",
    "ip_address",
    "actor",
    "reason",
    "request_key",
    "recorded_at",
)


def _identity_item(value: Any) -> str:
    if value is None:
        return "-"
    text = _instant(value) if isinstance(value, datetime) else str(value)
    return f"{len(text)}:{text}"


def identity_event_hash(prev_hash: str, values: tuple[Any, ...]) -> str:
    """Hash of one identity event from its IDENTITY_HASHED_FIELDS values and its predecessor's hash."""
    content = ",".join(_identity_item(value) for value in values)
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


# How PostgreSQL writes each column's text as str() does (an instant as _instant does in UTC,
# an address as Django reads it).
_IDENTITY_TEXT_SQL = {
    "contact_id": "{col}::text",
    "version": "{col}::text",
    "other_contact_id": "{col}::text",
    "ip_address": "inet_out({col})::text",
    "recorded_at": """to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'""",
}


def identity_event_hash_sql(alias: str) -> str:
    """A PostgreSQL expression over an IdentityEvent row named `alias`: identity_event_hash of
    the row, in hex, from its own prev_hash, for a connection whose time zone is UTC. Where it
    differs from the stored hash, identity_event_hash is the judge."""
    items = []
    for name in IDENTITY_HASHED_FIELDS:
        text = _IDENTITY_TEXT_SQL.get(name, "{col}").replace("{col}", f"{alias}.{name}")
        items.append(f"coalesce(length({text})::text || ':' || {text}, '-')")
    content = f"{alias}.prev_hash || E'\\n' || " + " || ',' || ".join(items)
    return f"encode(sha256(convert_to({content}, 'UTF8')), 'hex')"


__all__ = [
    "EVENT_HASHED_FIELDS",
    "GENESIS_HASH",
    "IDENTITY_HASHED_FIELDS",
    "event_hash",
    "event_hash_sql",
    "identity_event_hash",
    "identity_event_hash_sql",
    "seal_hash",
]
