"""verify_ledger's check of the personal values kept apart (hash version 2) against the chains.

The chains hash `personal_hash`, the keyed commitment of an event's personal values
(compliance/personal.py), not the values: a changed IP address, user agent, evidence or email
in EventPersonalData or IdentityPersonalData leaves every chain intact. So each side row must
give, under its contact's secret, the commitment its chained row holds. An erased contact has no
secret and no side rows, and verifies; a side row beside an event of hash version 1, or of a
contact without a secret (erased), was put there outside the ledger.

Cost: one HMAC-SHA256 a side row. On PostgreSQL the canonical JSON the commitment covers is
written by the database as it reads each row (`_event_text_sql`, `_identity_text_sql`), so
Python only takes the HMAC; a row whose text is not the canonical one (nested evidence) or whose
HMAC differs is judged again by `personal.commitment` over the values as Django reads them, so
"tampered" is only ever said by the reference. The consent events' side rows are checked in the
same pass as the chains: the single pass merges them with the events (`EventPersonalRows`); each
chain worker joins them to its share's events (`event_personal_sql`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from django.db import connection

from compliance import chain, personal
from compliance.canonical import JSONB_FORMAT, SEND_VERSION
from compliance.hmac_sql import hmac_hex_sql, padded_key_sql
from compliance.identity_verification import Broken
from compliance.models import ConsentEvent, Contact, EventPersonalData, IdentityEvent, IdentityPersonalData

APART_VERSION = 2


def event_personal_problem(
    event_id: int, hash_version: int, personal_hash: str, secret: Any, values: Any
) -> str | None:
    """Why event `event_id`'s side row does not match its chained row, or None."""
    if hash_version < APART_VERSION:
        return f"event {event_id}: personal data kept apart beside an event of hash version {hash_version}: it was planted"
    if secret is None:
        return f"event {event_id}: personal data kept apart for an erased contact: it was put back outside the ledger"
    if (
        not isinstance(values, dict)
        or personal.commitment(secret, values, version=hash_version) != personal_hash
    ):
        return (
            f"event {event_id}: its personal data kept apart was tampered with "
            "(the values do not match the commitment in the event)"
        )
    return None


def identity_personal_problem(
    identity_event_id: int, hash_version: int, personal_hash: str, secret: Any, values: dict[str, Any]
) -> str | None:
    """Why identity event `identity_event_id`'s side row does not match its chained row, or None."""
    if hash_version not in (APART_VERSION, SEND_VERSION):
        return (
            f"identity event {identity_event_id}: personal data kept apart beside an identity event of "
            f"hash version {hash_version}: it was planted"
        )
    if secret is None:
        return (
            f"identity event {identity_event_id}: personal data kept apart for an erased contact: it was "
            "put back outside the ledger"
        )
    plain = personal.identity_personal_values(values)
    if personal.identity_commitment(secret, plain, version=hash_version) != personal_hash:
        return (
            f"identity event {identity_event_id}: its personal data kept apart was tampered with "
            "(the identifiers do not match the commitment in the identity event)"
        )
    return None


class ShareCommitments:
    """Whether the HMAC of the database's canonical text of a side row (None: it could not write
    one) under the contact's secret (none: the contact was erased) is the commitment, for a chain
    worker's share of the contacts, made cheap per event: HMAC-SHA256 (RFC 2104) from two SHA-256
    states per contact, its key padded and xored with the inner and the
    outer pad, made at the contact's first event and copied for each of its events. hmac.digest pads
    the key again for each message (measured alone: 1.4 µs a commitment against 0.6 µs here; over a
    worker's 500,000 events, 1.0 s against 0.75 s)."""

    def __init__(self, secrets: dict[int, bytes]) -> None:
        self._secrets = secrets
        self._states: dict[int, tuple[Any, Any]] = {}

    def matches(self, contact_id: int, text: str | None, personal_hash: str, hash_version: int) -> bool:
        """Whether the commitment of `text` (the jsonb's text from version 3 on) under the
        contact's secret is personal_hash."""
        if text is None:
            return False
        if hash_version >= SEND_VERSION:
            secret = self._secrets.get(contact_id)
            if secret is None:
                return False
            committed = personal.keyed_digest(bytes(secret), JSONB_FORMAT + text.encode())
            return hmac.compare_digest(committed, personal_hash)
        states = self._states.get(contact_id)
        if states is None:
            secret = self._secrets.get(contact_id)
            if secret is None:
                return False
            states = self._states[contact_id] = _hmac_states(bytes(secret))
        inner = states[0].copy()
        inner.update(text.encode())
        outer = states[1].copy()
        outer.update(inner.digest())
        return hmac.compare_digest(outer.hexdigest(), personal_hash)


_SHA256_BLOCK = 64
# Each byte xored with HMAC's inner and outer pad, for bytes.translate.
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def _hmac_states(key: bytes) -> tuple[Any, Any]:
    """SHA-256 having read the key xored with HMAC's inner pad, and with its outer pad."""
    if len(key) > _SHA256_BLOCK:
        key = hashlib.sha256(key).digest()
    padded = key.ljust(_SHA256_BLOCK, b"\0")
    return hashlib.sha256(padded.translate(_INNER_PAD)), hashlib.sha256(padded.translate(_OUTER_PAD))


# --- Consent events, in the single pass ---------------------------------------------------------

_VERSION_AT = chain.EVENT_HASHED_COLUMNS.index("hash_version")
_PERSONAL_HASH_AT = chain.EVENT_HASHED_COLUMNS.index("personal_hash")


class EventPersonalRows:
    """The side rows in event id order, read alongside verify_ledger's single pass over the events
    (which asks about each event in id order): a merge, one query streamed in chunks."""

    def __init__(self, chunk_size: int) -> None:
        self._rows: Any = (
            EventPersonalData.objects.order_by("event_id")
            .values_list("event_id", "values", "event__contact__secret")
            .iterator(chunk_size=chunk_size)
        )
        self._head: tuple[Any, ...] | None = next(self._rows, None)

    def problem(self, event_id: int, columns: tuple[Any, ...]) -> str | None:
        """The event's side row (if it has one) against its EVENT_HASHED_COLUMNS values. One
        missing is no problem: the chains verify with or without the plain values."""
        while self._head is not None and self._head[0] < event_id:
            self._head = next(self._rows, None)  # a row without an event: nothing it could commit to
        if self._head is None or self._head[0] != event_id:
            return None
        _, values, secret = self._head
        return event_personal_problem(
            event_id, columns[_VERSION_AT], columns[_PERSONAL_HASH_AT], secret, values
        )

    def close(self) -> None:
        # The server-side cursor closes inside the transaction that opened it.
        self._rows.close()


# --- Consent events, in a chain worker (PostgreSQL) ---------------------------------------------

# The canonical JSON (compliance/personal.py: keys sorted, no spaces) of EventPersonalData.values
# ({"evidence", "ip_address", "user_agent"}: sorted already), as PostgreSQL writes jsonb strings
# (as json.dumps(ensure_ascii=False) does); evidence as the chain's SQL writes an event's (exact
# unless nested). NULL when the row holds another key: Python judges it.
_EVIDENCE_SQL = chain._EVENT_COLUMN_SQL["evidence"]


def _event_text_sql(col: str) -> str:
    evidence = _EVIDENCE_SQL.replace("{col}", f"({col} -> 'evidence')")
    return (
        f"CASE WHEN jsonb_typeof({col}) = 'object'"
        f" AND ({col} - '{{evidence,ip_address,user_agent}}'::text[]) = '{{}}'::jsonb"
        f" THEN '{{' || concat_ws(',',"
        f" CASE WHEN {col} ? 'evidence' THEN '\"evidence\":' || ({evidence}) END,"
        f" CASE WHEN {col} ? 'ip_address' THEN '\"ip_address\":' || ({col} -> 'ip_address')::text END,"
        f" CASE WHEN {col} ? 'user_agent' THEN '\"user_agent\":' || ({col} -> 'user_agent')::text END"
        ") || '}' END"
    )


def share_secrets(raw: Any, modulus: int, remainder: int) -> dict[int, bytes]:
    """In a chain worker: the secrets of its share of the contacts (contact_id % modulus ==
    remainder), read once: joined to each event instead, the events' ordered scan would lose its
    order."""
    with raw.cursor(name="verify_ledger_secrets", binary=True) as cursor:
        cursor.execute(
            f"SELECT id, secret FROM {Contact._meta.db_table}"  # noqa: S608 - _meta names only
            " WHERE secret IS NOT NULL AND id %% %s = %s",
            [modulus, remainder],
        )
        return dict(cursor.fetchall())


def event_personal_sql(event: str) -> tuple[str, str]:
    """For a chain worker's query over the events (aliased `event`): the join of their side rows,
    and three columns: the event's commitment when it has a side row (else NULL), the database's
    canonical text of the row's values when the event is of hash version 2 to 4 (else NULL), and
    the event's hash version."""
    join = f"LEFT JOIN {EventPersonalData._meta.db_table} side ON side.event_id = {event}.id"
    columns = (
        f"CASE WHEN side.event_id IS NOT NULL THEN {event}.personal_hash END, {side_text_sql(event)},"
        f" {event}.hash_version"
    )
    return join, columns


def side_text_sql(event: str) -> str:
    """The database's canonical text of the side row `side` of the event aliased `event`, by the
    event's hash version (2: compact JSON, 3 and 4: the jsonb's own text); NULL for any other."""
    return (
        f"CASE {event}.hash_version WHEN {APART_VERSION} THEN {_event_text_sql('side.values')}"
        f" WHEN {chain.RECORD_VERSION} THEN side.values::text WHEN {SEND_VERSION} THEN side.values::text END"
    )


def side_commitment_sql(event: str, secret: str) -> str:
    """The commitment in hex of the side row `side` of the event aliased `event` under the bytea
    `secret`, by the event's hash version (personal.commitment): version 4's keyed SHA-384 of the
    jsonb_send bytes, else HMAC-SHA256 of the canonical text (its key padded for each row: only
    rows written before version 4 take it)."""
    hmac = hmac_hex_sql(
        padded_key_sql(secret, "36"),
        padded_key_sql(secret, "5c"),
        f"convert_to({side_text_sql(event)}, 'UTF8')",
    )
    return (
        f"CASE {event}.hash_version WHEN {SEND_VERSION}"
        f" THEN encode(substring(sha384({secret} || jsonb_send(side.values)) from 1 for 32), 'hex')"
        f" ELSE {hmac} END"
    )


def judge_event_rows(raw: Any, ids: list[int]) -> tuple[int, str] | None:
    """personal.commitment over the values as Django reads them (the side rows of events `ids`):
    the first that fails."""
    personal_table = EventPersonalData._meta.db_table
    events = ConsentEvent._meta.db_table
    contacts = Contact._meta.db_table
    with raw.cursor(name="verify_ledger_personal_judge", binary=True) as cursor:
        cursor.execute(
            "SELECT e.id, e.hash_version, e.personal_hash, c.secret, p.values::text"  # noqa: S608 - _meta names only
            f" FROM {personal_table} p JOIN {events} e ON e.id = p.event_id JOIN {contacts} c ON c.id = e.contact_id"
            " WHERE p.event_id = ANY(%s) ORDER BY p.event_id",
            [ids],
        )
        for event_id, hash_version, personal_hash, secret, text in cursor:
            problem = event_personal_problem(event_id, hash_version, personal_hash, secret, json.loads(text))
            if problem:
                return (event_id, problem)
    return None


# --- Identity events ------------------------------------------------------------------------------

_IDENTITY_FIELDS = personal.IDENTITY_PERSONAL_FIELDS  # email, phone, app_user_id, names, ip_address


def _identity_text_sql(alias: str) -> str:
    """The canonical JSON of an IdentityPersonalData row's (`alias`) present values (keys sorted),
    as PostgreSQL writes it; the address as Django reads an inet (inet_out, as the chain's SQL)."""
    items = []
    for name in sorted(_IDENTITY_FIELDS):
        column = f"{alias}.{name}"
        text = f"inet_out({column})::text" if name == "ip_address" else f"{column}::text"
        items.append(f"CASE WHEN coalesce({text}, '') <> '' THEN '\"{name}\":' || to_json({text})::text END")
    return f"'{{' || concat_ws(',', {', '.join(items)}) || '}}'"


def verify_identity_personal(chunk_size: int) -> None:
    """Every IdentityPersonalData row against its identity event's commitment (Broken at the
    first, by identity event id, that does not match). On PostgreSQL the rows the database's
    text confirms are passed over in one streamed query; the others are judged by Python."""
    rows: Any = IdentityPersonalData.objects.order_by("identity_event_id")
    if connection.vendor == "postgresql":
        rows = rows.filter(identity_event_id__in=_identity_doubtful(chunk_size))
    stream: Any = rows.values_list(
        "identity_event_id",
        "identity_event__hash_version",
        "identity_event__personal_hash",
        "identity_event__contact__secret",
        *_IDENTITY_FIELDS,
    ).iterator(chunk_size=chunk_size)
    try:
        for identity_event_id, hash_version, personal_hash, secret, *values in stream:
            problem = identity_personal_problem(
                identity_event_id,
                hash_version,
                personal_hash,
                secret,
                dict(zip(_IDENTITY_FIELDS, values, strict=True)),
            )
            if problem:
                raise Broken(problem)
    finally:
        stream.close()


def identity_side_commitment_sql(event: str, side: str, secret: str) -> str:
    """The commitment in hex of the identity side row `side` of the identity event aliased `event`
    under the bytea `secret`, by the event's hash version (personal.identity_commitment): version
    4's keyed SHA-384 of the row of its six values (blanks as NULL), else HMAC-SHA256 of the
    canonical JSON (its key padded for each row: only rows written before version 4 take it)."""
    # (nullif gives a text: cast back to the column's type, which the row's binary form names.)
    values = ", ".join(
        f"{side}.{name}" if name == "ip_address" else f"nullif({side}.{name}, '')::varchar"
        for name in _IDENTITY_FIELDS
    )
    text = f"convert_to({_identity_text_sql(side)}, 'UTF8')"
    hmac = hmac_hex_sql(padded_key_sql(secret, "36"), padded_key_sql(secret, "5c"), text)
    return (
        f"CASE {event}.hash_version WHEN {SEND_VERSION}"
        f" THEN encode(substring(sha384({secret} || record_send(ROW({values}))) from 1 for 32), 'hex')"
        f" ELSE {hmac} END"
    )


def _identity_doubtful(chunk_size: int) -> list[int]:
    """The identity events whose side row the database does not confirm: it writes each row's
    commitment under the contact's secret (identity_side_commitment_sql), and sends only the ids
    of the rows whose commitment that is not (an erased contact's, or one of another hash version,
    included)."""
    digest = identity_side_commitment_sql("e", "p", "c.secret")
    with connection.chunked_cursor() as cursor:
        cursor.execute(
            f"SELECT p.identity_event_id FROM {IdentityPersonalData._meta.db_table} p"  # noqa: S608 - _meta names only
            f" JOIN {IdentityEvent._meta.db_table} e ON e.id = p.identity_event_id"
            f" JOIN {Contact._meta.db_table} c ON c.id = e.contact_id"
            f" WHERE e.hash_version NOT IN ({APART_VERSION}, {SEND_VERSION}) OR c.secret IS NULL"
            f" OR ({digest}) IS DISTINCT FROM e.personal_hash"
        )
        return [
            identity_event_id
            for rows in iter(lambda: cursor.fetchmany(chunk_size), [])
            for (identity_event_id,) in rows
        ]
