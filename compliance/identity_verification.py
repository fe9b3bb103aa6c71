"""verify_ledger's check of the identity chains: per contact, each identity event follows the
one before (version + 1, previous hash) and hashes to what it stores, and the contact row holds
what its newest identity event says. On PostgreSQL an intact ledger is confirmed by two aggregates;
otherwise (or when they find a problem) a row-by-row pass names the first broken point."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection

from compliance import canonical, chain
from compliance.models import Contact, IdentityEvent, IdentityPersonalData


class Broken(Exception):
    """The ledger is broken at the point the message names (raised by every check of verify_ledger)."""


_IDENTITY_SNAPSHOT = slice(
    chain.IDENTITY_HASHED_FIELDS.index("email"), chain.IDENTITY_HASHED_FIELDS.index("last_name") + 1
)
# The identifiers a contact row holds: from the event's own columns (hash version 1), or from its
# personal data apart (version 2; none once erased), but the Zoho id, which stays in the event.
SNAPSHOT_FIELDS = chain.IDENTITY_HASHED_FIELDS[_IDENTITY_SNAPSHOT]
_APART = tuple(name for name in SNAPSHOT_FIELDS if name != "zoho_id")


def verify_identity(counters: dict[str, int], chunk_size: int) -> bool:
    """Every contact's identity chain (per contact: version + 1, previous hash, its own hash),
    and every contact row against its chain: the version it records, and the identifiers of
    the newest event. A contact without identity events, or whose identifiers differ from its
    newest one, had them changed outside the ledger (or its events deleted).

    True when the database has also confirmed every side row's commitment (the identity events'
    personal data apart): then `personal_verification.verify_identity_personal` has nothing left
    to check."""
    intact = _identity_intact_in_database()
    if intact is not None:
        count, sides_confirmed = intact
        counters["identity_events"] += count
        return sides_confirmed
    names = ("id", "hash", "prev_hash", *chain.IDENTITY_HASHED_COLUMNS)
    apart = tuple(f"personal__{name}" for name in _APART)
    # Chain by chain (the chain-version index's order, which PostgreSQL reads without sorting).
    rows: Any = (
        IdentityEvent.objects.order_by("contact_id", "version")
        .values_list(*names, *apart)
        .iterator(chunk_size=chunk_size)
    )
    try:
        heads = _check_identity_chains(counters, rows)
    finally:
        # Close the server-side cursor now, inside the transaction that opened it (as below).
        rows.close()
    contacts: Any = (
        Contact.objects.order_by("id")
        .values_list("id", "identity_version", *SNAPSHOT_FIELDS)
        .iterator(chunk_size=chunk_size)
    )
    try:
        _check_contacts_against_identity(heads, contacts)
    finally:
        contacts.close()
    return False


def _identity_intact_in_database() -> tuple[int, bool] | None:
    """On PostgreSQL (in UTC), the identity checks as one statement that returns counts, not
    rows: (the number of identity events, whether every side row's commitment is confirmed too)
    when every check of the chains passes, else None (and when the database cannot tell), for the
    row-by-row pass to name the first broken point.

    Two aggregates in one snapshot. The events in id order, each read once with its side row and
    its contact: each event's hash is recomputed, its side row's commitment confirmed
    (`personal_verification.identity_side_commitment_sql`), and the head (the event of the version
    its contact records) must hold the contact's identifiers. The events along their chains (the
    chain-version index's order, `lag()` and `lead()`, as `chain_fingerprint` checks the consent
    chains): the first of each has version 1 and the genesis hash before it, each next one the
    version after and the hash of the one before, and the last one is the version its contact
    records; every contact has one chain. Exact, with no key and no odds."""
    if connection.vendor != "postgresql" or connection.timezone_name != "UTC":
        return None
    # (Imported here: personal_verification imports Broken from this module.)
    from compliance.personal_verification import (
        APART_VERSION,
        identity_side_commitment_sql,
    )

    events = IdentityEvent._meta.db_table
    contacts = Contact._meta.db_table
    personal = IdentityPersonalData._meta.db_table

    def held(name: str) -> str:
        if name == "zoho_id":
            return "e.zoho_id"
        apart = f"coalesce(p.{name}, '')" if name in ("first_name", "last_name") else f"p.{name}"
        return f"CASE e.hash_version WHEN 1 THEN e.{name} ELSE {apart} END"

    differs = " OR ".join(f"{held(name)} IS DISTINCT FROM c.{name}" for name in SNAPSHOT_FIELDS)
    committed = identity_side_commitment_sql("e", "p", "c.secret")
    is_head = "e.version = c.identity_version"
    contents = (
        "SELECT count(*) AS events,"  # noqa: S608 - _meta names and fixed SQL only
        f" count(*) FILTER (WHERE {chain.identity_event_hash_sql('e')} IS DISTINCT FROM e.hash) AS altered,"
        f" count(*) FILTER (WHERE {is_head}) AS heads,"
        f" count(*) FILTER (WHERE {is_head} AND ({differs})) AS mismatched,"
        " count(*) FILTER (WHERE p.identity_event_id IS NOT NULL AND (c.secret IS NULL"
        f" OR e.hash_version NOT IN ({APART_VERSION}, {canonical.SEND_VERSION})"
        f" OR ({committed}) IS DISTINCT FROM e.personal_hash)) AS doubtful"
        f" FROM {events} e LEFT JOIN {personal} p ON p.identity_event_id = e.id"
        f" LEFT JOIN {contacts} c ON c.id = e.contact_id"
    )
    # A chain's last event meets its contact only if it is the version the contact records.
    chains = (
        "SELECT count(*) AS links,"  # noqa: S608 - _meta names and fixed SQL only
        f" count(*) FILTER (WHERE {chain.CHAIN_BROKEN_SQL}) AS unchained,"
        " count(*) FILTER (WHERE x.after_version IS NULL) AS chains,"
        " count(c.id) AS ends"
        f" FROM {chain.chain_links_sql(events, ('contact_id',))}"
        f" LEFT JOIN {contacts} c ON c.id = x.contact_id AND x.after_version IS NULL"
        " AND c.identity_version = x.version"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT a.*, b.*, (SELECT count(*) FROM {contacts}) FROM ({contents}) a CROSS JOIN ({chains}) b"  # noqa: S608
        )
        count, altered, heads, mismatched, doubtful, links, unchained, chain_count, ends, contacts_count = (
            cursor.fetchone()
        )
    if altered or mismatched or unchained or links != count:
        return None
    if not heads == chain_count == ends == contacts_count:
        return None
    return int(count), not doubtful


def _check_identity_chains(
    counters: dict[str, int], rows: Iterable[tuple[Any, ...]]
) -> dict[int, tuple[int, str, tuple[Any, ...]]]:
    """Each identity event against its chain; returns each contact's (version, hash, identifiers)."""
    heads: dict[int, tuple[int, str, tuple[Any, ...]]] = {}
    get_head = heads.get
    genesis = (0, chain.GENESIS_HASH, ())
    identity_hash = chain.identity_event_hash
    columns = len(chain.IDENTITY_HASHED_COLUMNS)
    for row in rows:
        event_id, stored_hash, prev_hash = row[0], row[1], row[2]
        values = row[3 : 3 + columns]
        contact_id, version = values[0], values[1]
        head_version, head_hash, _snapshot = get_head(contact_id, genesis)
        if version != head_version + 1:
            raise Broken(
                f"identity event {event_id} (contact {contact_id}) has version {version} after version "
                f"{head_version}: an identity event is missing or was moved"
            )
        if prev_hash != head_hash:
            raise Broken(f"identity event {event_id} does not chain to the identity event before it")
        try:
            content = chain.identity_event_values(values)
        except ValueError:
            content = ()
        if not content or identity_hash(prev_hash, content) != stored_hash:
            raise Broken(
                f"identity event {event_id} (contact {contact_id}) was altered "
                "(its hash does not match its content)"
            )
        heads[contact_id] = (version, stored_hash, _held_snapshot(values, row[3 + columns :]))
        counters["identity_events"] += 1
    return heads


def _held_snapshot(values: tuple[Any, ...], apart: tuple[Any, ...]) -> tuple[Any, ...]:
    """The identifiers an identity event holds (in SNAPSHOT_FIELDS order), from its own columns
    (hash version 1) or its personal data apart (version 2; None or "" once erased)."""
    own = values[_IDENTITY_SNAPSHOT]
    if values[chain.IDENTITY_HASHED_COLUMNS.index("hash_version")] == 1:
        return tuple(own)
    kept = dict(zip(_APART, apart, strict=True))
    blank = {"first_name": "", "last_name": ""}
    return tuple(
        own[index] if name == "zoho_id" else (kept[name] if kept[name] is not None else blank.get(name))
        for index, name in enumerate(SNAPSHOT_FIELDS)
    )


def _check_contacts_against_identity(
    heads: dict[int, tuple[int, str, tuple[Any, ...]]], contacts: Iterable[tuple[Any, ...]]
) -> None:
    for contact_id, identity_version, *identifiers in contacts:
        head = heads.get(contact_id)
        if head is None:
            raise Broken(
                f"contact {contact_id} has no identity history: its identifiers were recorded outside "
                "the ledger or its identity events were deleted"
            )
        if head[0] != identity_version:
            raise Broken(
                f"contact {contact_id}: the identity chain ends at version {head[0]} but version "
                f"{identity_version} was recorded: its newest identity events were deleted or altered"
            )
        if head[2] != tuple(identifiers):
            raise Broken(
                f"contact {contact_id}: its identifiers differ from its newest identity event "
                f"(version {head[0]}): they were changed outside the ledger"
            )
