"""Finding the ledger's contacts for a chunk of CRM rows of one module: raw SQL, a query per way.

A record is its contact's by ``Contact.zoho_id`` (Contacts), else by a written `CrmLinkRecord` of
its module (a Lead, a Contact linked without a Zoho id, duplicates written to all), else by email
for a contact not linked to any record yet. A contact comes back with two flags that decide how
much comparing it needs: whether it holds any consent state or active suppression (else its
projection is the blank one), and whether it has an open discrepancy.
"""

from __future__ import annotations

import itertools
from typing import Any, Final

from django.db import connection

from compliance.models import ConsentState, Contact, Suppression
from sync.models import CrmLinkRecord, Discrepancy
from sync.reconcile.crm_rows import Row

# SQLite's limit on parameters is low; the embedded demo is small.
SQLITE_BATCH = 500

# A ledger contact found for a CRM row, as the lookup query returns it: (the Zoho id or email it
# was found by, contact id, holds any consent state or active suppression (so its projection is
# not the blank one), has an open discrepancy, the `CrmLinkRecord` it was found by or 0). A plain
# tuple: there is one per CRM record.
Linked = tuple[str, int, bool, bool, int]
CONTACT: Final = 1
HOLDING: Final = 2
OPEN: Final = 3
LINK_RECORD: Final = 4


def _text_array(values: list[str]) -> tuple[str, Any]:
    """PostgreSQL: SQL for a text[] of `values`, and its parameter. One comma-joined string is far
    cheaper to build and send than a list of 10,000 (psycopg dumps a list item by item)."""
    if any("," in value for value in values):
        return "%s::text[]", values
    return "string_to_array(%s, ',')", ",".join(values)


def _flags_sql() -> str:
    states, suppressions = ConsentState._meta.db_table, Suppression._meta.db_table
    discrepancies = Discrepancy._meta.db_table
    return (
        f"EXISTS (SELECT 1 FROM {states} s WHERE s.contact_id = c.id AND s.version > 0) "  # noqa: S608
        f"OR EXISTS (SELECT 1 FROM {suppressions} p WHERE p.contact_id = c.id AND p.lifted_at IS NULL), "
        f"EXISTS (SELECT 1 FROM {discrepancies} d WHERE d.contact_id = c.id AND d.status = 'open')"
    )


def _bounds(cursor: Any, array: str, param: Any, values: list[str]) -> tuple[str, str]:
    """The lowest and highest of `values` in the database's collation. Digit strings of one length
    (Zoho's ids) sort the same in every collation, so Python orders them; others ask the database."""
    width = len(values[0])
    if all(len(value) == width and value.isdigit() for value in values):
        return min(values), max(values)
    cursor.execute(f"SELECT min(z), max(z) FROM unnest({array}) AS z", [param])  # noqa: S608
    low, high = cursor.fetchone()
    return str(low), str(high)


def _by_key(cursor: Any) -> dict[str, Linked]:
    """PostgreSQL's rows ``(key, contact id, holding, has open, link record id or 0)`` are `Linked`
    tuples as they come (no copy: there is one per CRM record)."""
    return {row[0]: row for row in cursor.fetchall()}


def _sqlite_linked(
    cursor: Any, query: str, values: list[str], params: list[Any] | None = None
) -> dict[str, Linked]:
    """SQLite: `query` (ending in ``IN``; its own `params` first) over `values`, ``SQLITE_BATCH``
    at a time, as `Linked` tuples."""
    found: dict[str, Linked] = {}
    for start in range(0, len(values), SQLITE_BATCH):
        batch = values[start : start + SQLITE_BATCH]
        cursor.execute(f"{query} ({', '.join(['%s'] * len(batch))})", [*(params or []), *batch])
        for key, contact_id, holding, has_open, link_record in cursor.fetchall():
            found[key] = (key, contact_id, bool(holding), bool(has_open), link_record)
    return found


def written_roles_sql() -> str:
    """The roles of the records a push writes, as an SQL list (constants, not input)."""
    return ", ".join(f"'{role}'" for role in CrmLinkRecord.WRITTEN)


def _by_zoho_id(ids: list[str]) -> dict[str, Linked]:
    """The contacts linked to these CRM ids, with their flags: one query.

    On PostgreSQL a chunk costs what its size does, not what the table's does. A plain
    ``zoho_id = ANY(…)`` of 10,000 ids makes the planner scan the whole table per chunk
    (quadratic in the CRM's size). Instead: ids in ascending order (COQL pages, Zoho's Bulk Read
    files) are joined as a set with the index read over the range they span, which holds about the
    chunk's own rows; ids in any other order are looked up one index probe each."""
    table = Contact._meta.db_table
    ids = [i for i in ids if i]
    if not ids:
        return {}
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            query = f"SELECT c.zoho_id, c.id, {_flags_sql()}, 0 FROM {table} c WHERE c.zoho_id IN"  # noqa: S608
            return _sqlite_linked(cursor, query, ids)
        array, param = _text_array(ids)
        if all(a < b for a, b in itertools.pairwise(ids)):
            low, high = _bounds(cursor, array, param, ids)
            cursor.execute(
                f"SELECT c.zoho_id, c.id, {_flags_sql()}, 0 FROM {table} c "  # noqa: S608
                f"JOIN unnest({array}) AS z(zoho_id) ON z.zoho_id = c.zoho_id "
                "WHERE c.zoho_id BETWEEN %s AND %s",
                [param, low, high],
            )
        else:
            cursor.execute(
                f"SELECT c.zoho_id, c.id, {_flags_sql()}, 0 FROM unnest({array}) AS z(zoho_id) "  # noqa: S608
                f"CROSS JOIN LATERAL (SELECT id, zoho_id FROM {table} WHERE zoho_id = z.zoho_id OFFSET 0) c",
                [param],
            )
        return _by_key(cursor)


def _by_record(module: str, ids: list[str]) -> dict[str, Linked]:
    """The contacts with a written `CrmLinkRecord` of these records of `module` (one index probe
    per id; a record two contacts share is matched to the older link)."""
    table, records = Contact._meta.db_table, CrmLinkRecord._meta.db_table
    written = written_roles_sql()
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            return _sqlite_linked(
                cursor,
                f"SELECT r.record_id, c.id, {_flags_sql()}, r.id FROM {records} r "  # noqa: S608
                f"JOIN {table} c ON c.id = r.contact_id WHERE r.module = %s AND r.role IN ({written}) "
                "AND r.record_id IN",
                ids,
                [module],
            )
        array, param = _text_array(ids)
        cursor.execute(
            f"SELECT z.record_id, c.id, {_flags_sql()}, r.id FROM unnest({array}) AS z(record_id) "  # noqa: S608
            f"CROSS JOIN LATERAL (SELECT id, contact_id FROM {records} WHERE record_id = z.record_id "
            f"AND module = %s AND role IN ({written}) ORDER BY id LIMIT 1) r "
            f"JOIN {table} c ON c.id = r.contact_id",
            [param, module],
        )
        return _by_key(cursor)


def _by_email(emails: list[str]) -> dict[str, Linked]:
    """Contacts not linked to any CRM record yet (no Zoho id, no `CrmLinkRecord`: a linked
    contact's other records are not its own until linking says so), by email, with their flags
    (one index probe per email: emails come in no useful order)."""
    table, records = Contact._meta.db_table, CrmLinkRecord._meta.db_table
    unlinked = f"NOT EXISTS (SELECT 1 FROM {records} r WHERE r.contact_id = c.id)"  # noqa: S608
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            return _sqlite_linked(
                cursor,
                f"SELECT c.email, c.id, {_flags_sql()}, 0 FROM {table} c "  # noqa: S608
                f"WHERE c.zoho_id IS NULL AND {unlinked} AND c.email IN",
                emails,
            )
        array, param = _text_array(emails)
        cursor.execute(
            f"SELECT z.email, c.id, {_flags_sql()}, 0 FROM unnest({array}) AS z(email) "  # noqa: S608
            f"CROSS JOIN LATERAL (SELECT id FROM {table} c WHERE email = z.email AND zoho_id IS NULL "
            f"AND {unlinked} OFFSET 0) c",
            [param],
        )
        return _by_key(cursor)


def ledger_match(chunk: list[Row], module: str = "Contacts") -> dict[str, Linked]:
    """CRM id -> ledger contact, for a chunk of `module`'s records: by Zoho id (Contacts), by a
    written link record, then by email for contacts not linked yet (an email that two CRM records
    of the chunk share matches neither: duplicates are the push's concern)."""
    matched = _by_zoho_id([row[0] for row in chunk]) if module == "Contacts" else {}
    if len(matched) >= len(chunk):
        return matched
    record_ids = [row[0] for row in chunk if row[0] and row[0] not in matched]
    if record_ids:
        matched.update(_by_record(module, record_ids))
    unmatched = [row for row in chunk if row[0] not in matched]
    by_email: dict[str, str] = {}
    counted: dict[str, int] = {}
    for row in chunk:
        email = str(row[1] or "").strip().lower()
        counted[email] = counted.get(email, 0) + 1
    for row in unmatched:
        email = str(row[1] or "").strip().lower()
        if email and row[0] and counted[email] == 1:
            by_email[email] = row[0]
    if by_email:
        for email, linked in _by_email(list(by_email)).items():
            matched[by_email[email]] = linked
    return matched
