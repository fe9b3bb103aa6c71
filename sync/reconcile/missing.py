"""Ledger records the CRM no longer has: flagged after a run that read every page, and only then.

Two kinds of link are checked. A contact linked by ``Contact.zoho_id`` whose record the run did
not see gets a ``record_missing`` discrepancy. A written `CrmLinkRecord` of a contact without a
Zoho id (a Lead, a Contact found by email, duplicates written to all) whose record the run did not
read is asked of Zoho by id first (one call per module and 100 ids): a record Zoho still returns
is not missing (its email changed, so the email lookup could not see it); a Lead gone because it
was converted moves its link to the Contact it became, with no discrepancy (the contact is pushed
again); anything else is missing, on that record. So a person's Lead that is gone is noticed
although their Contact is still there. Not flagged: contacts changed or linked since the run
started (the run may have passed their record before it existed), and erased contacts (with
`ERASURE_ZOHO_ACTION=delete` their records are gone on purpose, and nobody is left to push to).
Missing records are not retried: an admin links the contact to its new record.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from compliance.models import Contact
from sync.discrepancies import HINTS, discrepancy_record
from sync.linking import lead_converted_relink
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, ReconciliationRun
from sync.outbox import contacts_requeue
from sync.reconcile.compare import Bits, Counts, Seen
from sync.reconcile.ledger_match import written_roles_sql
from sync.zoho import ZohoClient
from sync.zoho.crm import MAX_RECORDS_PER_CALL


def _zoho_ids_sql() -> str:
    contacts = Contact._meta.db_table
    return f"SELECT id FROM {contacts} WHERE zoho_id IS NOT NULL AND zoho_id <> '' AND erased_at IS NULL"  # noqa: S608


def _link_records_sql() -> str:
    """The written link records of the linked contacts without a Zoho id."""
    contacts, links, records = Contact._meta.db_table, CrmLink._meta.db_table, CrmLinkRecord._meta.db_table
    written = written_roles_sql()
    return (
        f"SELECT r.id FROM {records} r JOIN {links} l ON l.contact_id = r.contact_id "  # noqa: S608
        f"JOIN {contacts} c ON c.id = r.contact_id WHERE r.role IN ({written}) AND l.state = %s "
        "AND (c.zoho_id IS NULL OR c.zoho_id = '') AND c.erased_at IS NULL"
    )


def _unseen(sql: str, params: list[str], bits: Bits) -> list[int]:
    unseen: list[int] = []
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while batch := cursor.fetchmany(10_000):
            unseen.extend(bits.unseen(pk for (pk,) in batch))
    return unseen


def missing_flag(
    *, run: ReconciliationRun, seen: Seen, zoho: ZohoClient, counts: Counts, batch_size: int = 500
) -> None:
    """After a complete run: a ``record_missing`` discrepancy for each linked record not seen."""
    contacts = _unseen(_zoho_ids_sql(), [], seen)
    records = _unseen(_link_records_sql(), [CrmLink.State.LINKED], seen.records)
    for start in range(0, len(contacts), batch_size):
        ids = contacts[start : start + batch_size]
        # Changed or linked since the run started: the run may have passed the record before it existed.
        gone = (
            Contact.objects.filter(pk__in=ids, updated_at__lt=run.started_at)
            .exclude(zoho_id__isnull=True)
            .exclude(zoho_id="")
            .values_list("pk", "zoho_id")
        )
        _flag([(pk, "Contacts", str(zoho_id), "zoho_id") for pk, zoho_id in gone], run=run, counts=counts)
    for start in range(0, len(records), batch_size):
        _link_records_check(records[start : start + batch_size], run=run, zoho=zoho, counts=counts)


def _link_records_check(pks: list[int], *, run: ReconciliationRun, zoho: ZohoClient, counts: Counts) -> None:
    """Ask Zoho for these unseen link records by id (one call per module and 100 ids), move the
    links of converted Leads, and flag the rest."""
    rows = list(
        CrmLinkRecord.objects.filter(
            pk__in=pks,
            contact__crm_link__state=CrmLink.State.LINKED,
            contact__crm_link__checked_at__lt=run.started_at,
        ).values_list("contact_id", "module", "record_id")
    )
    present: set[tuple[str, str]] = set()
    for module in sorted({m for _, m, _ in rows}):
        ids = sorted({r for _, m, r in rows if m == module})
        for start in range(0, len(ids), MAX_RECORDS_PER_CALL):
            found = zoho.crm.get_many(ids[start : start + MAX_RECORDS_PER_CALL], ["Email"], module=module)
            present.update((module, str(record.get("id"))) for record in found)
    gone: list[tuple[int, str, str, str]] = []
    moved: list[int] = []
    for contact_id, module, record_id in rows:
        if (module, record_id) in present:
            continue
        if lead_converted_relink(contact_id=contact_id, module=module, record_id=record_id, zoho=zoho):
            moved.append(contact_id)
        else:
            gone.append((contact_id, module, record_id, "crm_link"))
    contacts_requeue(contact_ids=moved)
    _flag(gone, run=run, counts=counts)


def _flag(gone: list[tuple[int, str, str, str]], *, run: ReconciliationRun, counts: Counts) -> None:
    """A ``record_missing`` discrepancy per (contact, module, record id, how it was linked)."""
    now = timezone.now()
    for contact_id, module, zoho_id, linked_by in sorted(gone):
        _, created = discrepancy_record(
            contact_id=contact_id,
            crm_field="",
            kind=Discrepancy.Kind.RECORD_MISSING,
            zoho_id=zoho_id,
            evidence={
                "zoho_id": zoho_id,
                "crm_module": module,
                "linked_by": linked_by,
                "reconciliation_run": run.pk,
                "method": run.method,
                "records_read": counts.records_read,
                "found_at": now.isoformat(),
            },
            hint=HINTS[Discrepancy.Kind.RECORD_MISSING].format(zoho_id=f"{module} {zoho_id}"),
            retry=False,
            now=now,
        )
        counts.missing += 1
        counts.opened += created
