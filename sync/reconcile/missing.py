"""Ledger contacts the CRM no longer has: flagged after a run that read every page, and only then.

The ledger contacts linked to a CRM record (``Contact.zoho_id``, or a linked `CrmLink`) that the
run did not see get a ``record_missing`` discrepancy (not retried: an admin links the contact to
its new record). Not flagged: contacts changed or linked since the run started (the run may have
passed their record before it existed), and a `CrmLink` whose record Zoho still returns by id
(the CRM record's email changed, so the email lookup could not see it).
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection
from django.utils import timezone

from compliance.models import Contact
from sync.discrepancies import HINTS, discrepancy_record
from sync.linking import lead_converted_relink
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, ReconciliationRun
from sync.outbox import contacts_requeue
from sync.reconcile.compare import Counts, Seen
from sync.zoho import ZohoClient

# Zoho reads at most this many records by id in one call.
GET_MANY_MAX = 100


def _linked_ids_sql() -> str:
    """Every contact linked to a CRM record: by its Zoho id, or (without one) by a linked CrmLink."""
    contacts, links = Contact._meta.db_table, CrmLink._meta.db_table
    return (
        f"SELECT id FROM {contacts} WHERE zoho_id IS NOT NULL AND zoho_id <> '' "  # noqa: S608
        f"UNION ALL SELECT l.contact_id FROM {links} l JOIN {contacts} c ON c.id = l.contact_id "
        f"WHERE l.state = %s AND (c.zoho_id IS NULL OR c.zoho_id = '')"
    )


def missing_flag(
    *, run: ReconciliationRun, seen: Seen, zoho: ZohoClient, counts: Counts, batch_size: int = 500
) -> None:
    """After a complete run: a ``record_missing`` discrepancy for each linked contact not seen."""
    unseen: list[int] = []
    with connection.chunked_cursor() as cursor:
        cursor.execute(_linked_ids_sql(), [CrmLink.State.LINKED])
        while batch := cursor.fetchmany(10_000):
            unseen.extend(seen.unseen(contact_id for (contact_id,) in batch))
    for start in range(0, len(unseen), batch_size):
        _missing_record(ids=unseen[start : start + batch_size], run=run, zoho=zoho, counts=counts)


def _missing_record(*, ids: list[int], run: ReconciliationRun, zoho: ZohoClient, counts: Counts) -> None:
    started: datetime = run.started_at
    # Changed or linked since the run started: the run may have passed the record before it existed.
    zoho_ids: dict[int, str] = {
        pk: str(zoho_id)
        for pk, zoho_id in Contact.objects.filter(pk__in=ids, updated_at__lt=started)
        .exclude(zoho_id__isnull=True)
        .exclude(zoho_id="")
        .values_list("pk", "zoho_id")
    }
    # A linked contact's records (Contacts, and Leads when configured) are asked for by id, one
    # call per module and 100 ids, before any is flagged; a Lead converted since moves its link.
    linked = CrmLink.objects.filter(
        contact_id__in=[i for i in ids if i not in zoho_ids],
        state=CrmLink.State.LINKED,
        checked_at__lt=started,
    ).values_list("contact_id", flat=True)
    by_link: dict[int, list[tuple[str, str]]] = {}
    for contact_id, module, record_id in CrmLinkRecord.objects.filter(
        contact_id__in=list(linked), role__in=CrmLinkRecord.WRITTEN
    ).values_list("contact_id", "module", "record_id"):
        by_link.setdefault(contact_id, []).append((module, record_id))
    present: set[tuple[str, str]] = set()
    for module in sorted({m for records in by_link.values() for m, _ in records}):
        link_ids = sorted({r for records in by_link.values() for m, r in records if m == module})
        for start in range(0, len(link_ids), GET_MANY_MAX):
            found = zoho.crm.get_many(link_ids[start : start + GET_MANY_MAX], ["Email"], module=module)
            present.update((module, str(record.get("id"))) for record in found)
    missing = dict(zoho_ids)
    for contact_id, records in by_link.items():
        for module, record_id in records:
            if (module, record_id) in present:
                continue
            if lead_converted_relink(contact_id=contact_id, module=module, record_id=record_id, zoho=zoho):
                contacts_requeue(contact_ids=[contact_id])
                continue
            missing.setdefault(contact_id, record_id)
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
