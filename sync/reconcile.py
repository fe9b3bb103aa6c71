"""Reconciliation: every CRM contact's mapped fields compared with the ledger's projection.

`reconcile()` (daily task ``sync.reconcile``, ``python manage.py reconcile``):

1. Asks the quota gate first: reconciliation is low priority, so when the
   credits left are below the reserve outside the off-peak window it raises
   `QuotaDeferred` (the task looks again later). Every CRM call it makes runs
   under ``quota.urgency(RECONCILE)``.
2. Streams the CRM's contacts: COQL keyset pages of 2,000 (``where id > '…'
   order by id``), or Bulk Read (200,000 rows per job page, a zipped CSV
   spooled to disk) when the CRM is larger than ``RECONCILE_BULK_THRESHOLD``
   (estimated from the previous run, or the ledger's linked contacts).
3. Per chunk of ``RECONCILE_CHUNK`` rows (memory stays bounded whatever the
   size): finds the ledger contacts by Zoho id (and by email for contacts not
   yet linked), projects them (`sync.projection.project`), lets
   `sync.crm_changes` apply the rule of direction (a person's CRM opt-out
   becomes an event; a workflow's or our own is ``overwritten``; a CRM opt-in
   is ``unevidenced_opt_in``), opens a ``drift`` discrepancy for every other
   mapped field that differs, and resolves open discrepancies whose field now
   matches.
4. Writes a `ReconciliationRun` and, when more discrepancies are open than
   ``DISCREPANCY_ALERT_THRESHOLD``, one ``threshold`` alert (emailed to
   ``COMPLIANCE_ALERT_EMAILS``). Not again for the same state: a run alerts only
   if it opened new discrepancies or no threshold alert is waiting
   unacknowledged.

CRM records without a ledger contact are counted, not compared (the ledger
holds no decision for them). Ledger contacts missing from CRM are the push's
concern (``record_missing``), not reconciliation's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.utils import timezone

from compliance.models import ConsentState, Contact, Suppression
from sync import quota
from sync.crm_changes import CrmRecord, crm_changes_apply, crm_record
from sync.discrepancies import discrepancies_resolve, discrepancy_record
from sync.models import Alert, Discrepancy, FieldMapping, ReconciliationRun
from sync.projection import Projection, active_mappings, bounce_field, project
from sync.zoho import ZohoClient

logger = logging.getLogger("sync.reconcile")

COQL = "coql"
BULK = "bulk"
SYSTEM_FIELDS = ("Email", "Modified_By", "Modified_Time")


@dataclass
class _Counts:
    records_read: int = 0
    compared: int = 0
    opened: int = 0
    resolved: int = 0
    crm_only: int = 0
    recorded: int = 0


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


def _rows(zoho: ZohoClient, method: str, fields: list[str]) -> Iterator[Mapping[str, Any]]:
    select = [*fields, *SYSTEM_FIELDS]
    if method == COQL:
        yield from zoho.crm.coql_iter(select)
        return
    poll_s = float(getattr(settings, "RECONCILE_BULK_POLL_S", 5.0))
    page = 1
    while True:
        job = zoho.crm.bulk.create(select, page=page)
        job = zoho.crm.bulk.wait(job.id, poll_s=poll_s)
        yield from zoho.crm.bulk.rows(job.id)
        if not job.more_records:
            return
        page += 1


def _chunks(rows: Iterator[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    chunk: list[Mapping[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _ids_query(sql_any: str, sql_in: str, values: list[Any]) -> list[tuple[Any, ...]]:
    """Run a lookup by many values: one array parameter on PostgreSQL (cheap to build and send for
    thousands of values), an IN list elsewhere (the embedded SQLite demo is small)."""
    if not values:
        return []
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(sql_any, {"ids": values})
        else:
            placeholders = ", ".join(["%s"] * len(values))
            cursor.execute(sql_in.replace("{in}", placeholders), values)
        return list(cursor.fetchall())


def _match(chunk: list[Mapping[str, Any]]) -> dict[str, int]:
    """CRM id -> ledger contact id, by Zoho id, then by email for contacts not linked yet."""
    ids = [str(r.get("id")) for r in chunk]
    table = Contact._meta.db_table
    matched: dict[str, int] = dict(
        _ids_query(  # type: ignore[arg-type]
            f"SELECT zoho_id, id FROM {table} WHERE zoho_id = ANY(%(ids)s)",  # noqa: S608
            f"SELECT zoho_id, id FROM {table} WHERE zoho_id IN ({{in}})",  # noqa: S608
            ids,
        )
    )
    missing = {
        str(r.get("Email") or "").strip().lower(): str(r.get("id"))
        for r in chunk
        if str(r.get("id")) not in matched
    }
    missing.pop("", None)
    if missing:
        by_email = Contact.objects.filter(zoho_id__isnull=True, email__in=list(missing)).values_list(
            "email", "id"
        )
        emails_seen: dict[str, int] = {}
        for r in chunk:
            email = str(r.get("Email") or "").strip().lower()
            emails_seen[email] = emails_seen.get(email, 0) + 1
        for found_email, contact_id in by_email:
            if found_email and emails_seen.get(found_email, 0) == 1:  # two CRM records, one email: duplicates
                matched[missing[found_email]] = contact_id
    return matched


def _with_state(contact_ids: list[int]) -> set[int]:
    """The contacts whose projection is not the blank one: any consent state, or an active suppression."""
    states, suppressions = ConsentState._meta.db_table, Suppression._meta.db_table
    rows = (
        _ids_query(
            f"SELECT contact_id FROM {states} WHERE version > 0 AND contact_id = ANY(%(ids)s) "  # noqa: S608
            f"UNION SELECT contact_id FROM {suppressions} WHERE lifted_at IS NULL AND contact_id = ANY(%(ids)s)",
            f"SELECT contact_id FROM {states} WHERE version > 0 AND contact_id IN ({{in}})",  # noqa: S608
            contact_ids,
        )
        if connection.vendor == "postgresql"
        else None
    )
    if rows is None:
        found = set(
            ConsentState.objects.filter(contact_id__in=contact_ids, version__gt=0).values_list(
                "contact_id", flat=True
            )
        )
        found |= set(
            Suppression.objects.filter(contact_id__in=contact_ids, lifted_at__isnull=True).values_list(
                "contact_id", flat=True
            )
        )
        return found
    return {row[0] for row in rows}


class _Projector:
    """`project()` for the contacts that hold something; one shared blank projection for the rest
    (a contact without any consent state or suppression projects the same values as any other)."""

    def __init__(self, mappings: list[FieldMapping]) -> None:
        self.mappings = mappings
        self.blank: Projection | None = None

    def __call__(self, contact_ids: list[int]) -> dict[int, Projection]:
        holding = _with_state(contact_ids)
        result = project([c for c in contact_ids if c in holding], self.mappings) if holding else {}
        blank_ids = [c for c in contact_ids if c not in holding]
        if blank_ids:
            if self.blank is None:
                self.blank = project(blank_ids[:1], self.mappings)[blank_ids[0]]
            for contact_id in blank_ids:
                result[contact_id] = self.blank
        return result


def _compare_chunk(
    chunk: list[Mapping[str, Any]],
    fields: list[str],
    mappings: list[FieldMapping],
    zoho: ZohoClient,
    api_user: str,
    counts: _Counts,
    projector: _Projector,
) -> None:
    counts.records_read += len(chunk)
    matched = _match(chunk)
    counts.crm_only += len(chunk) - len(matched)
    if not matched:
        return
    contact_ids = list(matched.values())
    projections = projector(contact_ids)
    table = Discrepancy._meta.db_table
    open_ids = [
        row[0]
        for row in _ids_query(
            f"SELECT id FROM {table} WHERE status = 'open' AND crm_field <> '' AND contact_id = ANY(%(ids)s)",  # noqa: S608
            f"SELECT id FROM {table} WHERE status = 'open' AND crm_field <> '' AND contact_id IN ({{in}})",  # noqa: S608
            contact_ids,
        )
    ]
    open_rows: dict[tuple[int, str], Discrepancy] = (
        {(d.contact_id, d.crm_field): d for d in Discrepancy.objects.filter(id__in=open_ids)}
        if open_ids
        else {}
    )
    differing: list[tuple[CrmRecord, dict[str, tuple[Any, Any]]]] = []
    matching_open: list[int] = []
    for row in chunk:
        contact_id = matched.get(str(row.get("id")))
        if contact_id is None:
            continue
        counts.compared += 1
        record = crm_record(contact_id, row, fields)
        differences = projections[contact_id].differences(record.values)
        if differences:
            differing.append((record, differences))
        for name in fields:
            if name in differences:
                continue
            found = open_rows.get((contact_id, name))
            if found is not None:
                matching_open.append(found.pk)
    if matching_open:
        counts.resolved += discrepancies_resolve(
            ids=matching_open, resolution="Reconciliation found CRM matching the ledger."
        )
    if not differing:
        return
    with transaction.atomic():
        changes = crm_changes_apply(
            records=[record for record, _ in differing],
            projections=projections,
            mappings=mappings,
            client=zoho,
            api_user=api_user,
        )
        counts.recorded += changes.recorded
        counts.opened += changes.overwritten + changes.unevidenced
        now = timezone.now().isoformat()
        for record, differences in differing:
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
                        "modified_time": record.modified_time.isoformat() if record.modified_time else None,
                        "found_at": now,
                    },
                    hint="Reconciliation found CRM different from the ledger's projection; the next push of this contact writes the ledger's value.",
                )
                counts.opened += created


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
                projector = _Projector(mappings)
                for chunk in _chunks(_rows(zoho, method, fields), chunk_size):
                    _compare_chunk(chunk, fields, mappings, zoho, api_user, counts, projector)
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            run.finished_at = timezone.now()
            run.records_read = counts.records_read
            run.contacts_compared = counts.compared
            run.opened = counts.opened
            run.resolved = counts.resolved
            run.save()
            logger.info(
                "Reconciliation %s (%s): read %s, compared %s, CRM-only %s, opened %s, resolved %s, "
                "CRM opt-outs recorded %s",
                run.pk,
                method,
                counts.records_read,
                counts.compared,
                counts.crm_only,
                counts.opened,
                counts.resolved,
                counts.recorded,
            )
        threshold_alert(opened_now=counts.opened)
        return run
    finally:
        if owns:
            zoho.close()
