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

from compliance.canonical import RECORD_VERSION, SEND_VERSION, record_bytes, record_text
from compliance.models import GENESIS_HASH, HASH_VERSION, ConsentEvent

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

# Hash version 2: the personal values (IP address, user agent, personal evidence) are kept
# apart; the row's ip_address and user_agent stay empty (still hashed, so nothing can be planted
# there), and the content gains the version first and `personal_hash`, a keyed commitment of the
# values (compliance/personal.py), last.
EVENT_HASHED_FIELDS_V2 = ("hash_version", *EVENT_HASHED_FIELDS, "personal_hash")
# Hash version 3: the same values, written as PostgreSQL writes the row
# `ROW(prev_hash, hash_version, ..., personal_hash)::text` (compliance/canonical.py), which it does
# for a third of the CPU the JSON form costs it; the personal commitment covers the jsonb text.
EVENT_HASHED_FIELDS_V3 = EVENT_HASHED_FIELDS_V2
# Hash version 4: the same values, as the bytes PostgreSQL gives for
# `record_send(ROW(prev_hash, hash_version, ..., personal_hash))` (compliance/canonical.py), which
# it writes for about half the CPU of the text; the personal commitment covers jsonb_send's bytes.
EVENT_HASHED_FIELDS_V4 = EVENT_HASHED_FIELDS_V2
EVENT_HASHED_FIELDS_BY_VERSION = {
    1: EVENT_HASHED_FIELDS,
    2: EVENT_HASHED_FIELDS_V2,
    3: EVENT_HASHED_FIELDS_V3,
    4: EVENT_HASHED_FIELDS_V4,
}
# The PostgreSQL type of each field version 4 hashes, prev_hash first: the row's binary form
# names each field's type (tests/compliance/test_canonical.py checks them against the table).
EVENT_FIELD_TYPES_V4 = (
    "varchar",  # prev_hash
    "int2",  # hash_version
    "int8",  # contact_id
    "int8",  # purpose_id
    "int4",  # version
    "varchar",  # previous_status
    "varchar",  # status
    "varchar",  # frequency
    "varchar",  # source
    "inet",  # ip_address
    "varchar",  # user_agent
    "int8",  # policy_version_id
    "timestamptz",  # occurred_at
    "timestamptz",  # recorded_at
    "varchar",  # actor
    "jsonb",  # evidence
    "text",  # reason
    "varchar",  # idempotency_key
    "varchar",  # personal_hash
)
# Every column either version reads, in this order: what verify_ledger selects.
EVENT_HASHED_COLUMNS = (*EVENT_HASHED_FIELDS, "hash_version", "personal_hash")
_EVENT_PICK = {
    version: tuple(EVENT_HASHED_COLUMNS.index(name) for name in fields)
    for version, fields in EVENT_HASHED_FIELDS_BY_VERSION.items()
}
_VERSION_AT = EVENT_HASHED_COLUMNS.index("hash_version")


def event_values(columns: tuple[Any, ...]) -> tuple[Any, ...]:
    """From an event's EVENT_HASHED_COLUMNS values, those its version's hash covers, in order."""
    pick = _EVENT_PICK.get(columns[_VERSION_AT])
    if pick is None:
        raise ValueError(f"unknown hash version {columns[_VERSION_AT]!r}")
    return tuple(columns[index] for index in pick)


def event_hash_of(prev_hash: str, event: Any) -> str:
    """The hash of an event object (saved or not) by its own hash version."""
    fields = EVENT_HASHED_FIELDS_BY_VERSION[event.hash_version]
    return event_hash(prev_hash, tuple(getattr(event, name) for name in fields))


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _instant(value: datetime) -> str:
    # In UTC, as the row gives it back: a decision made at 10:00+02:00 is stored, and read
    # back, as 08:00+00:00, and its hash must not depend on the offset it arrived with.
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def event_hash(prev_hash: str, values: tuple[Any, ...]) -> str:
    """Hash of one event from its EVENT_HASHED_FIELDS (or _V2, _V3, _V4) values and its
    predecessor's hash. Versions 2 to 4 give their version first; version 1 gives fewer values."""
    if len(values) == len(EVENT_HASHED_FIELDS_V4) and values[0] == SEND_VERSION:
        fields = zip(EVENT_FIELD_TYPES_V4, (prev_hash, *values), strict=True)
        return hashlib.sha256(record_bytes(fields)).hexdigest()
    if len(values) == len(EVENT_HASHED_FIELDS_V3) and values[0] == RECORD_VERSION:
        return hashlib.sha256(record_text((prev_hash, *values)).encode()).hexdigest()
    # The two instants (occurred_at, recorded_at) are the only datetimes among the values.
    items = [_instant(value) if isinstance(value, datetime) else value for value in values]
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
    "hash_version": "{col}::text",
    "personal_hash": _JSON_TEXT,
}


def event_hash_sql() -> str | None:
    """A PostgreSQL expression over a ConsentEvent row: the event_hash of the row (from its own
    prev_hash column) as Django reads it with the connection's time zone UTC (and, for version 3,
    DateStyle ISO: canonical.SESSION_SQL), in hex.

    Exact unless the evidence holds a nested object or array or a number Python writes
    with an exponent; then it differs (see _EVENT_COLUMN_SQL). None when a hashed field
    has no SQL form here.
    """
    if not set(EVENT_HASHED_COLUMNS) <= _EVENT_COLUMN_SQL.keys():
        return None
    forms = []
    for version, fields in EVENT_HASHED_FIELDS_BY_VERSION.items():
        if version == SEND_VERSION:
            row = ", ".join(_event_column(name) for name in ("prev_hash", *fields))
            forms.append(f"WHEN {version} THEN encode(sha256(record_send(ROW({row}))), 'hex')")
            continue
        if version == RECORD_VERSION:
            row = ", ".join(_event_column(name) for name in ("prev_hash", *fields))
            forms.append(f"WHEN {version} THEN encode(sha256(convert_to(ROW({row})::text, 'UTF8')), 'hex')")
            continue
        items = " || ',' || ".join(
            _EVENT_COLUMN_SQL[name].replace("{col}", _event_column(name)) for name in fields
        )
        content = f"{_event_column('prev_hash')} || E'\\n[' || {items} || ']'"
        forms.append(f"WHEN {version} THEN encode(sha256(convert_to({content}, 'UTF8')), 'hex')")
    return f"(CASE {_event_column('hash_version')} {' '.join(forms)} END)"


def _event_column(name: str) -> str:
    field = ConsentEvent._meta.get_field(name)  # by attname too: "contact_id"
    assert isinstance(field, Field)
    return str(field.column)


def chain_links_sql(table: str, chain_columns: tuple[str, ...], where: str = "true") -> str:
    """A subquery `x` over the events of `table` (matching `where`, on alias `e`) along their
    chains, each chain keyed by `chain_columns` and ordered by version (the chain-version index's
    order): each event's chain columns, version, hash and prev_hash, with the version and hash of
    the event before it in its chain (`before_version`, `before_hash`) and the version of the one
    after (`after_version`, NULL for a chain's last event). CHAIN_BROKEN_SQL says which do not
    follow."""
    keys = ", ".join(f"e.{column}" for column in chain_columns)
    return (
        f"(SELECT {keys}, e.version, e.hash, e.prev_hash,"  # noqa: S608 - _meta names and fixed SQL only
        " lag(e.version) OVER chain AS before_version, lag(e.hash) OVER chain AS before_hash,"
        " lead(e.version) OVER chain AS after_version"
        f" FROM {table} e WHERE {where} WINDOW chain AS (PARTITION BY {keys} ORDER BY e.version)) x"
    )


# Over chain_links_sql's rows: an event that does not follow the one before it in its chain (the
# first of a chain has version 1 and the genesis hash before it, each next one the version after
# and the hash of the one before).
CHAIN_BROKEN_SQL = (
    "x.version <> coalesce(x.before_version, 0) + 1"
    f" OR x.prev_hash <> coalesce(x.before_hash, '{GENESIS_HASH}')"
)


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


# Hash version 2: the identifiers but the Zoho id, the names and the IP address are kept apart
# (their columns stay empty, and hashed); the version comes first and personal_hash (their keyed
# commitment) last.
IDENTITY_HASHED_FIELDS_V2 = ("hash_version", *IDENTITY_HASHED_FIELDS, "personal_hash")
# Hash version 4 (as the consent events' version 4; identity events have no version 3): the same
# values as the bytes of `record_send(ROW(prev_hash, hash_version, ..., personal_hash))`.
IDENTITY_HASHED_FIELDS_V4 = IDENTITY_HASHED_FIELDS_V2
IDENTITY_HASHED_FIELDS_BY_VERSION = {
    1: IDENTITY_HASHED_FIELDS,
    2: IDENTITY_HASHED_FIELDS_V2,
    4: IDENTITY_HASHED_FIELDS_V4,
}
# The PostgreSQL type of each field version 4 hashes, prev_hash first (tests/compliance/
# test_canonical.py checks them against the table).
IDENTITY_FIELD_TYPES_V4 = (
    "varchar",  # prev_hash
    "int2",  # hash_version
    "int8",  # contact_id
    "int4",  # version
    "varchar",  # kind
    "varchar",  # email
    "varchar",  # phone
    "varchar",  # app_user_id
    "varchar",  # zoho_id
    "varchar",  # first_name
    "varchar",  # last_name
    "int8",  # other_contact_id
    "varchar",  # source
    "inet",  # ip_address
    "varchar",  # actor
    "text",  # reason
    "varchar",  # request_key
    "timestamptz",  # recorded_at
    "varchar",  # personal_hash
)
IDENTITY_HASHED_COLUMNS = (*IDENTITY_HASHED_FIELDS, "hash_version", "personal_hash")
_IDENTITY_PICK = {
    version: tuple(IDENTITY_HASHED_COLUMNS.index(name) for name in fields)
    for version, fields in IDENTITY_HASHED_FIELDS_BY_VERSION.items()
}
_IDENTITY_VERSION_AT = IDENTITY_HASHED_COLUMNS.index("hash_version")


def identity_event_values(columns: tuple[Any, ...]) -> tuple[Any, ...]:
    """From an identity event's IDENTITY_HASHED_COLUMNS values, those its version's hash covers."""
    pick = _IDENTITY_PICK.get(columns[_IDENTITY_VERSION_AT])
    if pick is None:
        raise ValueError(f"unknown hash version {columns[_IDENTITY_VERSION_AT]!r}")
    return tuple(columns[index] for index in pick)


def identity_event_hash_of(prev_hash: str, event: Any) -> str:
    fields = IDENTITY_HASHED_FIELDS_BY_VERSION[event.hash_version]
    return identity_event_hash(prev_hash, tuple(getattr(event, name) for name in fields))


def _identity_item(value: Any) -> str:
    if value is None:
        return "-"
    text = _instant(value) if isinstance(value, datetime) else str(value)
    return f"{len(text)}:{text}"


def identity_event_hash(prev_hash: str, values: tuple[Any, ...]) -> str:
    """Hash of one identity event from its IDENTITY_HASHED_FIELDS (or _V2, _V4) values and its
    predecessor's hash."""
    if len(values) == len(IDENTITY_HASHED_FIELDS_V4) and values[0] == SEND_VERSION:
        fields = zip(IDENTITY_FIELD_TYPES_V4, (prev_hash, *values), strict=True)
        return hashlib.sha256(record_bytes(fields)).hexdigest()
    content = ",".join(_identity_item(value) for value in values)
    return hashlib.sha256(f"{prev_hash}\n{content}".encode()).hexdigest()


# How PostgreSQL writes each column's text as str() does (an instant as _instant does in UTC,
# an address as Django reads it).
_IDENTITY_TEXT_SQL = {
    "contact_id": "{col}::text",
    "version": "{col}::text",
    "hash_version": "{col}::text",
    "other_contact_id": "{col}::text",
    "ip_address": "inet_out({col})::text",
    "recorded_at": """to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'""",
}


def identity_event_hash_sql(alias: str) -> str:
    """A PostgreSQL expression over an IdentityEvent row named `alias`: identity_event_hash of
    the row, in hex, from its own prev_hash, for a connection whose time zone is UTC. Where it
    differs from the stored hash, identity_event_hash is the judge."""
    forms = []
    for version, fields in IDENTITY_HASHED_FIELDS_BY_VERSION.items():
        if version == SEND_VERSION:
            row = ", ".join(f"{alias}.{name}" for name in ("prev_hash", *fields))
            forms.append(f"WHEN {version} THEN encode(sha256(record_send(ROW({row}))), 'hex')")
            continue
        items = []
        for name in fields:
            text = _IDENTITY_TEXT_SQL.get(name, "{col}").replace("{col}", f"{alias}.{name}")
            items.append(f"coalesce(length({text})::text || ':' || {text}, '-')")
        content = f"{alias}.prev_hash || E'\\n' || " + " || ',' || ".join(items)
        forms.append(f"WHEN {version} THEN encode(sha256(convert_to({content}, 'UTF8')), 'hex')")
    return f"(CASE {alias}.hash_version {' '.join(forms)} END)"


__all__ = [
    "CHAIN_BROKEN_SQL",
    "EVENT_HASHED_COLUMNS",
    "EVENT_HASHED_FIELDS",
    "EVENT_HASHED_FIELDS_V2",
    "EVENT_HASHED_FIELDS_V3",
    "EVENT_HASHED_FIELDS_V4",
    "GENESIS_HASH",
    "HASH_VERSION",
    "IDENTITY_HASHED_COLUMNS",
    "IDENTITY_HASHED_FIELDS",
    "IDENTITY_HASHED_FIELDS_V2",
    "IDENTITY_HASHED_FIELDS_V4",
    "RECORD_VERSION",
    "chain_links_sql",
    "event_hash",
    "event_hash_of",
    "event_hash_sql",
    "event_values",
    "identity_event_hash",
    "identity_event_hash_of",
    "identity_event_hash_sql",
    "identity_event_values",
    "seal_hash",
]
