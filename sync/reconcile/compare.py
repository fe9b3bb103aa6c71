"""Comparing chunks of CRM rows with the ledger's projections, and recording what differs.

A record of a contact that holds nothing and has no open discrepancy is compared with the one
blank projection, once per distinct set of CRM values; the others wait in batches of
``SLOW_BATCH`` for their projections and open discrepancies. CRM-side opt-outs go through the
rule of direction (`sync.crm_changes`); any other differing field opens a ``drift`` discrepancy
naming the record and its module, and open discrepancies whose field now matches are resolved.

Each record of a contact is compared on its own (a Lead and a Contact of one person, or
duplicates written to all): a record that matches resolves only the discrepancies found on it,
never those of the contact's other records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from sync.crm_changes import CrmRecord, coerce, crm_changes_apply, crm_record
from sync.discrepancies import discrepancies_resolve, discrepancy_record
from sync.models import CrmLinkRecord, Discrepancy, FieldMapping
from sync.projection import Projection, project
from sync.reconcile.crm_rows import HEAD, Row
from sync.reconcile.ledger_match import CONTACT, HOLDING, LINK_RECORD, OPEN, Linked, ledger_match
from sync.zoho import ZohoClient

# Records that need more than the lookup (a projection, open discrepancies, a write) are compared
# this many at a time, whatever the chunk size.
SLOW_BATCH = 1000


@dataclass
class Counts:
    records_read: int = 0
    compared: int = 0
    opened: int = 0
    resolved: int = 0
    crm_only: int = 0
    recorded: int = 0
    missing: int = 0


class Bits:
    """A set of ids as one bit each (125 kB per million)."""

    def __init__(self) -> None:
        self.bits = bytearray()

    def add(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        if not ids:
            return
        size = (max(ids) >> 3) + 1
        bits = self.bits
        if size > len(bits):
            bits.extend(bytes(max(size - len(bits), len(bits) // 2)))
        for one in ids:
            bits[one >> 3] |= 1 << (one & 7)

    def unseen(self, ids: Iterable[int]) -> list[int]:
        bits, size = self.bits, len(self.bits) << 3
        return [i for i in ids if i >= size or not bits[i >> 3] & (1 << (i & 7))]


class Seen(Bits):
    """What a run found in CRM: the ledger contacts (these bits), and the `CrmLinkRecord` rows
    whose records it read (``records``), so that a contact's Lead gone while its Contact is
    still there is noticed."""

    def __init__(self) -> None:
        super().__init__()
        self.records = Bits()


class Comparer:
    """Compares chunks of CRM rows with the ledger; holds what every chunk shares."""

    def __init__(
        self,
        *,
        fields: list[str],
        mappings: list[FieldMapping],
        zoho: ZohoClient,
        api_user: str,
        counts: Counts,
        seen: Seen,
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
        self._pending: list[tuple[Row, Linked, str]] = []

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

    def chunk(self, chunk: list[Row], module: str = "Contacts") -> None:
        """Compare a chunk of `module`'s records. A record of a contact that holds nothing, has
        no open discrepancy and matches the blank projection (nearly all of them) is done here,
        with no query but the lookup; the others wait in a batch of ``SLOW_BATCH`` (`flush`), so
        that the queries they need (projections, open discrepancies, writes) do not run once per
        chunk."""
        counts = self.counts
        counts.records_read += len(chunk)
        matched = ledger_match(chunk, module)
        counts.crm_only += len(chunk) - len(matched)
        if not matched:
            return
        counts.compared += len(matched)
        self.seen.add([linked[CONTACT] for linked in matched.values()])
        self.seen.records.add([linked[LINK_RECORD] for linked in matched.values() if linked[LINK_RECORD]])
        width = self.width
        by_key = self._blank_differences
        pending = self._pending
        blank = self.blank
        for row in chunk:
            linked = matched.get(row[0])
            if linked is None:
                continue
            if linked[HOLDING] or linked[OPEN]:
                pending.append((row, linked, module))
                continue
            if blank is None:
                blank = self._blank_projection(linked[CONTACT])
            key = row[width:]
            try:
                differences = by_key[key]
            except (KeyError, TypeError):
                differences = self._differences_from_blank(key, blank)
            if differences:
                pending.append((row, linked, module))
        if len(pending) >= SLOW_BATCH:
            self.flush()

    def flush(self) -> None:
        """Compare the records waiting for projections or open discrepancies, and record what differs."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        holding = [linked[CONTACT] for _, linked, _ in rows if linked[HOLDING]]
        projections = project(holding, self.mappings) if holding else {}
        with_open = [linked[CONTACT] for _, linked, _ in rows if linked[OPEN]]
        open_rows: dict[tuple[int, str], tuple[int, str]] = {}
        open_by_contact: dict[int, list[tuple[str, int, str, str]]] = {}
        # Each contact's written records: a discrepancy found on one of them is left to that one.
        records_of: dict[int, set[str]] = {}
        if with_open:
            for pk, contact_id, crm_field, kind, zoho_id in Discrepancy.objects.filter(
                status=Discrepancy.Status.OPEN, contact_id__in=with_open
            ).values_list("pk", "contact_id", "crm_field", "kind", "zoho_id"):
                open_rows[(contact_id, crm_field)] = (pk, kind)
                open_by_contact.setdefault(contact_id, []).append((crm_field, pk, kind, zoho_id))
            for contact_id, record_id in CrmLinkRecord.objects.filter(
                contact_id__in=list(open_by_contact), role__in=CrmLinkRecord.WRITTEN
            ).values_list("contact_id", "record_id"):
                records_of.setdefault(contact_id, set()).add(record_id)
        differing: list[tuple[Row, str, int, Projection, dict[str, tuple[Any, Any]]]] = []
        matching_open: list[int] = []
        found_again: list[int] = []
        for row, linked, module in rows:
            contact_id = linked[CONTACT]
            key = row[self.width :]
            if linked[HOLDING]:
                projection = projections[contact_id]
                differences = projection.differences(self._coerced(key))
            else:
                projection = self._blank_projection(contact_id)
                differences = self._differences_from_blank(key, projection)
            if differences:
                differing.append((row, module, contact_id, projection, differences))
            for crm_field, pk, kind, zoho_id in open_by_contact.get(contact_id, ()):
                if zoho_id and zoho_id != row[0] and zoho_id in records_of.get(contact_id, ()):
                    continue  # found on another record of the contact: that record's to resolve
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
        differing: list[tuple[Row, str, int, Projection, dict[str, tuple[Any, Any]]]],
        open_rows: Mapping[tuple[int, str], Any],
    ) -> None:
        counts = self.counts
        records: list[tuple[CrmRecord, dict[str, tuple[Any, Any]]]] = []
        projections: dict[int, Projection] = {}
        for row, module, contact_id, projection, differences in differing:
            record = crm_record(
                contact_id, dict(zip(self.columns, row, strict=True)), self.fields, module=module
            )
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
                            "crm_module": record.module,
                            "crm_value": actual,
                            "expected": expected,
                            "modified_by": {"id": record.modified_by_id, "name": record.modified_by_name},
                            "modified_time": record.modified_time.isoformat()
                            if record.modified_time
                            else None,
                            "found_at": now,
                        },
                        hint=f"Reconciliation found the CRM record ({record.module} {record.zoho_id}) different from the ledger's projection; the next push of this contact writes the ledger's value.",
                    )
                    counts.opened += created
