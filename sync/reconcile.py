"""Reconciliation: every CRM contact's mapped fields compared with the ledger's projection.

`reconcile()` (daily task ``sync.reconcile``, ``python manage.py reconcile``):

1. Asks the quota gate first: reconciliation is low priority, so when the
   credits left are below the reserve outside the off-peak window it raises
   `QuotaDeferred` (the task looks again later). Every CRM call it makes runs
   under ``quota.urgency(RECONCILE)``.
2. Streams the CRM's contacts: COQL keyset pages of 2,000 (``where id > '…'
   order by id``), or Bulk Read (200,000 rows per job page, a zipped CSV
   spooled to disk and read row by row) when the CRM is larger than
   ``RECONCILE_BULK_THRESHOLD`` (estimated from the previous run, or the
   ledger's linked contacts). Rows are tuples in one column order, whichever
   the method.
3. Per chunk of ``RECONCILE_CHUNK`` rows (memory stays bounded whatever the
   size): one query finds the ledger contacts by Zoho id, with whether each
   holds any consent state or suppression and whether it has an open
   discrepancy (contacts not yet linked are looked up by email). Contacts that
   hold nothing share one blank projection, and a row's differences from it
   are worked out once per distinct set of CRM values; the others are
   projected (`sync.projection.project`). Then `sync.crm_changes` applies the
   rule of direction (a person's CRM opt-out becomes an event; a workflow's or
   our own is ``overwritten``; a CRM opt-in is ``unevidenced_opt_in``), every
   other mapped field that differs opens a ``drift`` discrepancy (retried: the
   ledger's value is pushed again after ``SYNC_RETRY_BASE_S``), and open
   discrepancies whose field now matches are resolved, as is an open
   ``record_missing`` of a contact whose record is there again.
4. Only after a run that read every page: the ledger contacts linked to a CRM
   record (``Contact.zoho_id``, or a linked `CrmLink`) that the run did not see
   get a ``record_missing`` discrepancy (not retried: an admin links the
   contact to its new record). Which contacts were seen is one bit per contact
   id (125 kB per million). Not flagged: contacts changed or linked since the
   run started (the run may have passed their record before it existed), and a
   `CrmLink` whose record Zoho still returns by id (the CRM record's email
   changed, so the email lookup could not see it). A run that fails part way,
   or reads no record at all, flags nothing.
5. Writes a `ReconciliationRun` and, when more discrepancies are open than
   ``DISCREPANCY_ALERT_THRESHOLD``, one ``threshold`` alert (emailed to
   ``COMPLIANCE_ALERT_EMAILS``). Not again for the same state: a run alerts only
   if it opened new discrepancies or no threshold alert is waiting
   unacknowledged.

CRM records without a ledger contact are counted, not compared (the ledger
holds no decision for them).
"""

from __future__ import annotations

import itertools
import logging
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from compliance.models import ConsentState, Contact, Suppression
from sync import quota
from sync.crm_changes import CrmRecord, coerce, crm_changes_apply, crm_record
from sync.discrepancies import HINTS, discrepancies_resolve, discrepancy_record
from sync.models import Alert, CrmLink, Discrepancy, FieldMapping, ReconciliationRun
from sync.projection import Projection, active_mappings, bounce_field, project
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoTransientError

logger = logging.getLogger("sync.reconcile")

COQL = "coql"
BULK = "bulk"
SYSTEM_FIELDS = ("Email", "Modified_By", "Modified_Time")
# A row is a tuple: the CRM id, the system fields, then the compared fields (`compared_fields`).
HEAD = ("id", *SYSTEM_FIELDS)
# SQLite's limit on parameters is low; the embedded demo is small.
SQLITE_BATCH = 500
# Records that need more than the lookup (a projection, open discrepancies, a write) are compared
# this many at a time, whatever the chunk size.
SLOW_BATCH = 1000
# Zoho reads at most this many records by id in one call.
GET_MANY_MAX = 100

Row = tuple[Any, ...]


@dataclass
class _Counts:
    records_read: int = 0
    compared: int = 0
    opened: int = 0
    resolved: int = 0
    crm_only: int = 0
    recorded: int = 0
    missing: int = 0


# A ledger contact found for a CRM row, as the lookup query returns it: (the Zoho id or email it
# was found by, contact id, holds any consent state or active suppression (so its projection is
# not the blank one), has an open discrepancy). A plain tuple: there is one per CRM record.
Linked = tuple[str, int, bool, bool]
CONTACT: Final = 1
HOLDING: Final = 2
OPEN: Final = 3


def compared_fields(mappings: list[FieldMapping]) -> list[str]:
    """The flat field names reconciliation compares: every pushed mapping, and the bounce field."""
    names = {m.crm_field for m in mappings if m.pushes}
    bounce = bounce_field()
    if bounce:
        names.add(bounce)
    return sorted(names)


def _estimated_size() -> int:
    last = ReconciliationRun.objects.filter(error="").exclude(records_read=0).order_by("-started_at").first()
    if last is not None:
        return last.records_read
    return Contact.objects.filter(zoho_id__isnull=False).count()


# -- reading the CRM ---------------------------------------------------------------------------


def _coql_getter(name: str) -> Callable[[Mapping[str, Any]], Any]:
    """A column of a COQL record: dotted keys as Zoho returns them, else inside the nested object."""
    top, _, key = name.partition(".")

    def get(record: Mapping[str, Any]) -> Any:
        if name in record:
            return record[name]
        value = record.get(top)
        if key:
            return value.get(key) if isinstance(value, Mapping) else None
        return value

    return get


def _csv_picker(header: list[str], columns: tuple[str, ...]) -> Callable[[list[str]], Row]:
    """Cells of a Bulk Read CSV row in `columns` order (None for a column the file lacks)."""
    positions = [header.index(name) if name in header else -1 for name in columns]
    if -1 not in positions:
        return operator.itemgetter(*positions)  # a row shorter than the header raises IndexError
    return lambda cells: tuple(cells[i] if 0 <= i < len(cells) else None for i in positions)


def _rows(zoho: ZohoClient, method: str, fields: list[str]) -> Iterator[Row]:
    """Every CRM contact as a tuple: `HEAD`, then `fields`."""
    columns = (*HEAD, *fields)
    if method == COQL:
        getters = [_coql_getter(name) for name in columns[1:]]
        for record in zoho.crm.coql_iter([*fields, *SYSTEM_FIELDS]):
            yield (str(record.get("id") or ""), *(get(record) for get in getters))
        return
    poll_s = float(getattr(settings, "RECONCILE_BULK_POLL_S", 5.0))
    select = [*fields, *SYSTEM_FIELDS]
    page = 1
    job = zoho.crm.bulk.wait(zoho.crm.bulk.create(select, page=page).id, poll_s=poll_s)
    while True:
        # Ask for the next page before reading this one: Zoho builds its file meanwhile.
        following = zoho.crm.bulk.create(select, page=page + 1) if job.more_records else None
        table = zoho.crm.bulk.table(job.id)
        header = next(table, None)
        if header is not None:
            try:
                yield from map(_csv_picker(header, columns), table)
            except IndexError as exc:
                raise ZohoTransientError(
                    f"bulk read job {job.id}: a CSV row is shorter than its header"
                ) from exc
        if following is None:
            return
        page += 1
        job = zoho.crm.bulk.wait(following.id, poll_s=poll_s)


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    while chunk := list(itertools.islice(rows, size)):
        yield chunk


# -- finding the ledger's contacts -------------------------------------------------------------


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


def _by_zoho_id(ids: list[str]) -> dict[str, Linked]:
    """The contacts linked to these CRM ids, with their flags: one query.

    On PostgreSQL a chunk costs what its size does, not what the table's does. A plain
    ``zoho_id = ANY(…)`` of 10,000 ids makes the planner scan the whole table per chunk
    (quadratic in the CRM's size). Instead: ids in ascending order (COQL pages, Zoho's Bulk Read
    files) are joined as a set with the index read over the range they span, which holds about the
    chunk's own rows; ids in any other order are looked up one index probe each."""
    table = Contact._meta.db_table
    found: dict[str, Linked] = {}
    ids = [i for i in ids if i]
    if not ids:
        return found
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            array, param = _text_array(ids)
            if all(a < b for a, b in itertools.pairwise(ids)):
                low, high = _bounds(cursor, array, param, ids)
                cursor.execute(
                    f"SELECT c.zoho_id, c.id, {_flags_sql()} FROM {table} c "  # noqa: S608
                    f"JOIN unnest({array}) AS z(zoho_id) ON z.zoho_id = c.zoho_id "
                    "WHERE c.zoho_id BETWEEN %s AND %s",
                    [param, low, high],
                )
            else:
                cursor.execute(
                    f"SELECT c.zoho_id, c.id, {_flags_sql()} FROM unnest({array}) AS z(zoho_id) "  # noqa: S608
                    f"CROSS JOIN LATERAL (SELECT id, zoho_id FROM {table} WHERE zoho_id = z.zoho_id OFFSET 0) c",
                    [param],
                )
            return {row[0]: row for row in cursor.fetchall()}
        for start in range(0, len(ids), SQLITE_BATCH):
            batch = ids[start : start + SQLITE_BATCH]
            cursor.execute(
                f"SELECT c.zoho_id, c.id, {_flags_sql()} FROM {table} c "  # noqa: S608
                f"WHERE c.zoho_id IN ({', '.join(['%s'] * len(batch))})",
                batch,
            )
            for zoho_id, contact_id, holding, has_open in cursor.fetchall():
                found[zoho_id] = (zoho_id, contact_id, bool(holding), bool(has_open))
    return found


def _by_email(emails: list[str]) -> dict[str, Linked]:
    """Contacts not linked to any CRM id yet, by email, with their flags (one index probe per
    email: emails come in no useful order)."""
    table = Contact._meta.db_table
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            array, param = _text_array(emails)
            cursor.execute(
                f"SELECT z.email, c.id, {_flags_sql()} FROM unnest({array}) AS z(email) "  # noqa: S608
                f"CROSS JOIN LATERAL (SELECT id FROM {table} WHERE email = z.email AND zoho_id IS NULL OFFSET 0) c",
                [param],
            )
            rows = cursor.fetchall()
        else:
            for start in range(0, len(emails), SQLITE_BATCH):
                batch = emails[start : start + SQLITE_BATCH]
                cursor.execute(
                    f"SELECT c.email, c.id, {_flags_sql()} FROM {table} c "  # noqa: S608
                    f"WHERE c.zoho_id IS NULL AND c.email IN ({', '.join(['%s'] * len(batch))})",
                    batch,
                )
                rows.extend(cursor.fetchall())
    return {
        email: (email, contact_id, bool(holding), bool(has_open))
        for email, contact_id, holding, has_open in rows
    }


def _match(chunk: list[Row]) -> dict[str, Linked]:
    """CRM id -> ledger contact, by Zoho id, then by email for contacts not linked yet (an email
    that two CRM records of the chunk share matches neither: duplicates are the push's concern)."""
    matched = _by_zoho_id([row[0] for row in chunk])
    if len(matched) >= len(chunk):
        return matched
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


class _Seen:
    """The ledger contacts a run found in CRM: one bit per contact id."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, contact_ids: Iterable[int]) -> None:
        ids = list(contact_ids)
        if not ids:
            return
        size = (max(ids) >> 3) + 1
        bits = self.bits
        if size > len(bits):
            bits.extend(bytes(max(size - len(bits), len(bits) // 2)))
        for contact_id in ids:
            bits[contact_id >> 3] |= 1 << (contact_id & 7)

    def unseen(self, contact_ids: Iterable[int]) -> list[int]:
        bits, size = self.bits, len(self.bits) << 3
        return [c for c in contact_ids if c >= size or not bits[c >> 3] & (1 << (c & 7))]


# -- comparing ---------------------------------------------------------------------------------


class _Comparer:
    """Compares chunks of CRM rows with the ledger; holds what every chunk shares."""

    def __init__(
        self,
        *,
        fields: list[str],
        mappings: list[FieldMapping],
        zoho: ZohoClient,
        api_user: str,
        counts: _Counts,
        seen: _Seen,
    ) -> None:
        self.fields = fields
        self.field_set = frozenset(fields)
        self.columns = (*HEAD, *fields)
        self.width = len(HEAD)
        self.mappings = mappings
        self.zoho = zoho
        self.api_user = api_user
        self.counts = counts
        self.seen = seen
        self.blank: Projection | None = None
        # CRM values (the compared cells of a row) -> coerced values, and -> differences from the
        # blank projection. Most rows carry one of a few value sets; bounded all the same.
        self._values: dict[Row, dict[str, Any]] = {}
        self._blank_differences: dict[Row, dict[str, tuple[Any, Any]]] = {}
        self._pending: list[tuple[Row, Linked]] = []

    def _coerced(self, key: Row) -> dict[str, Any]:
        try:
            found = self._values.get(key)
        except TypeError:  # an unhashable value (a nested object where a flat one was expected)
            return {name: coerce(value) for name, value in zip(self.fields, key, strict=True)}
        if found is None:
            if len(self._values) > 10_000:
                self._values.clear()
            found = self._values[key] = {
                name: coerce(value) for name, value in zip(self.fields, key, strict=True)
            }
        return found

    def _differences_from_blank(self, key: Row, blank: Projection) -> dict[str, tuple[Any, Any]]:
        try:
            found = self._blank_differences.get(key)
        except TypeError:
            return blank.differences(self._coerced(key))
        if found is None:
            if len(self._blank_differences) > 10_000:
                self._blank_differences.clear()
            found = self._blank_differences[key] = blank.differences(self._coerced(key))
        return found

    def _blank_projection(self, contact_id: int) -> Projection:
        if self.blank is None:
            self.blank = project([contact_id], self.mappings)[contact_id]
        return self.blank

    def chunk(self, chunk: list[Row]) -> None:
        """Compare a chunk. A record of a contact that holds nothing, has no open discrepancy and
        matches the blank projection (nearly all of them) is done here, with no query but the
        lookup; the others wait in a batch of ``SLOW_BATCH`` (`flush`), so that the queries they
        need (projections, open discrepancies, writes) do not run once per chunk."""
        counts = self.counts
        counts.records_read += len(chunk)
        matched = _match(chunk)
        counts.crm_only += len(chunk) - len(matched)
        if not matched:
            return
        counts.compared += len(matched)
        self.seen.add([linked[CONTACT] for linked in matched.values()])
        width = self.width
        by_key = self._blank_differences
        pending = self._pending
        blank = self.blank
        for row in chunk:
            linked = matched.get(row[0])
            if linked is None:
                continue
            if linked[HOLDING] or linked[OPEN]:
                pending.append((row, linked))
                continue
            if blank is None:
                blank = self._blank_projection(linked[CONTACT])
            key = row[width:]
            try:
                differences = by_key[key]
            except (KeyError, TypeError):
                differences = self._differences_from_blank(key, blank)
            if differences:
                pending.append((row, linked))
        if len(pending) >= SLOW_BATCH:
            self.flush()

    def flush(self) -> None:
        """Compare the records waiting for projections or open discrepancies, and record what differs."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        holding = [linked[CONTACT] for _, linked in rows if linked[HOLDING]]
        projections = project(holding, self.mappings) if holding else {}
        with_open = [linked[CONTACT] for _, linked in rows if linked[OPEN]]
        open_rows: dict[tuple[int, str], tuple[int, str]] = {}
        open_by_contact: dict[int, list[tuple[str, int, str]]] = {}
        if with_open:
            for pk, contact_id, crm_field, kind in Discrepancy.objects.filter(
                status=Discrepancy.Status.OPEN, contact_id__in=with_open
            ).values_list("pk", "contact_id", "crm_field", "kind"):
                open_rows[(contact_id, crm_field)] = (pk, kind)
                open_by_contact.setdefault(contact_id, []).append((crm_field, pk, kind))
        differing: list[tuple[Row, int, Projection, dict[str, tuple[Any, Any]]]] = []
        matching_open: list[int] = []
        found_again: list[int] = []
        for row, linked in rows:
            contact_id = linked[CONTACT]
            key = row[self.width :]
            if linked[HOLDING]:
                projection = projections[contact_id]
                differences = projection.differences(self._coerced(key))
            else:
                projection = self._blank_projection(contact_id)
                differences = self._differences_from_blank(key, projection)
            if differences:
                differing.append((row, contact_id, projection, differences))
            for crm_field, pk, kind in open_by_contact.get(contact_id, ()):
                if crm_field == "":
                    if kind == Discrepancy.Kind.RECORD_MISSING:
                        found_again.append(pk)
                elif crm_field in self.field_set and crm_field not in differences:
                    matching_open.append(pk)
        if matching_open:
            self.counts.resolved += discrepancies_resolve(
                ids=matching_open, resolution="Reconciliation found CRM matching the ledger."
            )
        if found_again:
            self.counts.resolved += discrepancies_resolve(
                ids=found_again, resolution="Reconciliation found the CRM record again."
            )
        if differing:
            self._record(differing, open_rows)

    def _record(
        self,
        differing: list[tuple[Row, int, Projection, dict[str, tuple[Any, Any]]]],
        open_rows: Mapping[tuple[int, str], Any],
    ) -> None:
        counts = self.counts
        records: list[tuple[CrmRecord, dict[str, tuple[Any, Any]]]] = []
        projections: dict[int, Projection] = {}
        for row, contact_id, projection, differences in differing:
            record = crm_record(contact_id, dict(zip(self.columns, row, strict=True)), self.fields)
            records.append((record, differences))
            projections[contact_id] = projection
        with transaction.atomic():
            changes = crm_changes_apply(
                records=[record for record, _ in records],
                projections=projections,
                mappings=self.mappings,
                client=self.zoho,
                api_user=self.api_user,
            )
            counts.recorded += changes.recorded
            counts.opened += changes.overwritten + changes.unevidenced
            now = timezone.now().isoformat()
            for record, differences in records:
                for name, (expected, actual) in differences.items():
                    key = (record.contact_id, name)
                    if key in changes.handled or key in open_rows:
                        continue
                    _, created = discrepancy_record(
                        contact_id=record.contact_id,
                        zoho_id=record.zoho_id,
                        crm_field=name,
                        kind=Discrepancy.Kind.DRIFT,
                        expected=expected,
                        actual=actual,
                        evidence={
                            "zoho_id": record.zoho_id,
                            "crm_value": actual,
                            "expected": expected,
                            "modified_by": {"id": record.modified_by_id, "name": record.modified_by_name},
                            "modified_time": record.modified_time.isoformat()
                            if record.modified_time
                            else None,
                            "found_at": now,
                        },
                        hint="Reconciliation found CRM different from the ledger's projection; the next push of this contact writes the ledger's value.",
                    )
                    counts.opened += created


# -- ledger contacts the CRM no longer has -----------------------------------------------------


def _linked_ids_sql() -> str:
    """Every contact linked to a CRM record: by its Zoho id, or (without one) by a linked CrmLink."""
    contacts, links = Contact._meta.db_table, CrmLink._meta.db_table
    return (
        f"SELECT id FROM {contacts} WHERE zoho_id IS NOT NULL AND zoho_id <> '' "  # noqa: S608
        f"UNION ALL SELECT l.contact_id FROM {links} l JOIN {contacts} c ON c.id = l.contact_id "
        f"WHERE l.state = %s AND (c.zoho_id IS NULL OR c.zoho_id = '')"
    )


def _missing_flag(
    *, run: ReconciliationRun, seen: _Seen, zoho: ZohoClient, counts: _Counts, batch_size: int = 500
) -> None:
    """After a complete run: a ``record_missing`` discrepancy for each linked contact not seen."""
    unseen: list[int] = []
    with connection.chunked_cursor() as cursor:
        cursor.execute(_linked_ids_sql(), [CrmLink.State.LINKED])
        while batch := cursor.fetchmany(10_000):
            unseen.extend(seen.unseen(contact_id for (contact_id,) in batch))
    for start in range(0, len(unseen), batch_size):
        _missing_record(ids=unseen[start : start + batch_size], run=run, zoho=zoho, counts=counts)


def _missing_record(*, ids: list[int], run: ReconciliationRun, zoho: ZohoClient, counts: _Counts) -> None:
    started: datetime = run.started_at
    # Changed or linked since the run started: the run may have passed the record before it existed.
    zoho_ids: dict[int, str] = {
        pk: str(zoho_id)
        for pk, zoho_id in Contact.objects.filter(pk__in=ids, updated_at__lt=started)
        .exclude(zoho_id__isnull=True)
        .exclude(zoho_id="")
        .values_list("pk", "zoho_id")
    }
    by_link: dict[int, str] = {}
    for contact_id, candidates in CrmLink.objects.filter(
        contact_id__in=[i for i in ids if i not in zoho_ids],
        state=CrmLink.State.LINKED,
        checked_at__lt=started,
    ).values_list("contact_id", "candidates"):
        if candidates:
            by_link[contact_id] = str(candidates[0])
    # A linked CrmLink was looked for by email only: ask Zoho for its record by id before flagging.
    link_ids = sorted(set(by_link.values()))
    present: set[str] = set()
    for start in range(0, len(link_ids), GET_MANY_MAX):
        found = zoho.crm.get_many(link_ids[start : start + GET_MANY_MAX], ["Email"])
        present.update(str(record.get("id")) for record in found)
    missing = {**zoho_ids, **{c: z for c, z in by_link.items() if z not in present}}
    now = timezone.now()
    for contact_id, zoho_id in sorted(missing.items()):
        _, created = discrepancy_record(
            contact_id=contact_id,
            crm_field="",
            kind=Discrepancy.Kind.RECORD_MISSING,
            zoho_id=zoho_id,
            evidence={
                "zoho_id": zoho_id,
                "linked_by": "zoho_id" if contact_id in zoho_ids else "crm_link",
                "reconciliation_run": run.pk,
                "method": run.method,
                "records_read": counts.records_read,
                "found_at": now.isoformat(),
            },
            hint=HINTS[Discrepancy.Kind.RECORD_MISSING].format(zoho_id=zoho_id),
            retry=False,
            now=now,
        )
        counts.missing += 1
        counts.opened += created


# -- the run -----------------------------------------------------------------------------------


def threshold_alert(*, opened_now: int) -> Alert | None:
    """One alert when open discrepancies exceed the threshold; see the module docstring for 'once'."""
    threshold = int(getattr(settings, "DISCREPANCY_ALERT_THRESHOLD", 10))
    open_count = Discrepancy.objects.filter(status=Discrepancy.Status.OPEN).count()
    if open_count <= threshold:
        return None
    waiting = Alert.objects.filter(kind=Alert.Kind.THRESHOLD, acknowledged_at__isnull=True).exists()
    if waiting and opened_now == 0:
        return None
    recipients = list(getattr(settings, "COMPLIANCE_ALERT_EMAILS", []))
    message = (
        f"{open_count} discrepancies between Zoho CRM and the consent ledger are open "
        f"(threshold {threshold}); reconciliation opened {opened_now} new ones."
    )
    alert = Alert.objects.create(kind=Alert.Kind.THRESHOLD, message=message, emailed_to=recipients)
    if recipients:
        send_mail(
            subject=f"Consent Desk: {open_count} open discrepancies with Zoho CRM",
            message=message,
            from_email=None,
            recipient_list=recipients,
            fail_silently=False,
        )
    return alert


def reconcile(*, client: ZohoClient | None = None, method: str | None = None) -> ReconciliationRun:
    """Compare every CRM contact with the ledger. See the module docstring."""
    owns = client is None
    zoho = client or ZohoClient.from_settings()
    try:
        gate = quota.gate(zoho.config.cache_prefix)
        retry_at = gate.deferral(level=quota.RECONCILE)
        if retry_at is not None:
            raise quota.QuotaDeferred(
                f"reconciliation deferred until {retry_at.isoformat()}: credits below the reserve",
                retry_at=retry_at,
            )
        if method is None:
            threshold = int(getattr(settings, "RECONCILE_BULK_THRESHOLD", 50_000))
            method = BULK if _estimated_size() > threshold else COQL
        chunk_size = int(getattr(settings, "RECONCILE_CHUNK", 2000))
        mappings = active_mappings()
        fields = compared_fields(mappings)
        run = ReconciliationRun.objects.create(method=method)
        counts = _Counts()
        try:
            with quota.urgency(quota.RECONCILE):
                from sync.crm_changes import api_user_id

                api_user = api_user_id(zoho, scope=zoho.config.cache_prefix)
                seen = _Seen()
                comparer = _Comparer(
                    fields=fields, mappings=mappings, zoho=zoho, api_user=api_user, counts=counts, seen=seen
                )
                for chunk in _chunks(_rows(zoho, method, fields), chunk_size):
                    comparer.chunk(chunk)
                comparer.flush()
                # Every page was read: now, and only now, a linked contact not seen is missing.
                if counts.records_read:
                    _missing_flag(run=run, seen=seen, zoho=zoho, counts=counts)
                else:
                    logger.warning("Reconciliation %s read no CRM record: nothing is flagged missing", run.pk)
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            run.finished_at = timezone.now()
            run.records_read = counts.records_read
            run.contacts_compared = counts.compared
            run.opened = counts.opened
            run.resolved = counts.resolved
            run.missing = counts.missing
            run.save()
            logger.info(
                "Reconciliation %s (%s): read %s, compared %s, CRM-only %s, missing from CRM %s, opened %s, "
                "resolved %s, CRM opt-outs recorded %s",
                run.pk,
                method,
                counts.records_read,
                counts.compared,
                counts.crm_only,
                counts.missing,
                counts.opened,
                counts.resolved,
                counts.recorded,
            )
        threshold_alert(opened_now=counts.opened)
        return run
    finally:
        if owns:
            zoho.close()
