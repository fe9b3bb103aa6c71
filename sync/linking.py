"""Linking: which CRM records are each contact's, found in bulk.

A contact's records are its `Contact.zoho_id` (a Contact), else the records its `CrmLink` holds
(`CrmLinkRecord` rows), else those found by its identifiers in every module of ``ZOHO_MODULES``
(Contacts by default; ``Contacts,Leads`` for Leads not yet converted), 50 contacts per COQL query
and module (Zoho's ``in`` limit), never one call per contact:

1. by email: ``Email in (…)``, matched without case;
2. still unfound, by phone: ``Phone in (…) or Mobile in (…)``, compared in E.164 (each
   number is asked as stored, ``+4915…``, and without its ``+``);
3. still unfound, by the app user id, when ``ZOHO_FIELD_APP_USER_ID`` names the custom
   field that holds it.

**A large first sync** (at least ``BULK_MIN`` contacts waiting for a link or for their
records' consent record ids, in the whole ledger): one pass reads every CRM record with the
reconciliation's Bulk Read (`sync.reconcile.crm_rows`: a job, its polls and one download per
200,000 records, per module) and links every waiting contact at once, so the cost does not grow
with the number of contacts. One worker runs it (a shared lock); the others go on linking their
own batches by COQL meanwhile. `manage.py link_contacts` runs the same pass by hand (before a
first sync, so that no push claim waits for it).

One record per module: linked, each written and verified (a person who is a Lead and a Contact
has both), with the record's consent record id, so that a push updates it in place. Several in
one module: a ``duplicate`` discrepancy, the records are ``candidate`` rows, and none of the
contact's records is written until an admin chooses "write to all" or a primary
(`sync.duplicates`). None: "not in CRM", asked again after ``RECHECK`` or when an identifier
changes.

A batch that Zoho stops halfway (a 500, a 429) is retried whole; the look-ups Zoho answered for it
are kept for its retries (``LOOKUP_REMEMBERED_S``, in the shared cache, as keyed digests: no
address, number or id in the clear) and not asked again, so its linking progresses however often
Zoho fails.

Links persist: a linked contact costs no call until the identifier it was found by changes (a
changed email links again, by the new address). A Lead converted to a Contact is gone from Leads;
the push or read-back that misses it asks Zoho where it went (`lead_converted_relink`) and moves
the link to the Contact: the ledger is the contact's, so the history stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import phonenumbers
from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from compliance.models import Contact
from sync.discrepancies import HINTS, discrepancy_record
from sync.models import CrmLink, CrmLinkRecord, Discrepancy
from sync.projection import CONSENT_OBJECT
from sync.taken import answer, answer_keep
from sync.zoho import ZohoClient
from sync.zoho.crm import COQL_MAX_IN, MAX_RECORDS_PER_CALL
from sync.zoho.locks import cache_lock

logger = logging.getLogger(__name__)

# A contact not found (or found twice) is looked for again after this long.
RECHECK = timedelta(hours=1)
# From this many contacts waiting (for a link or a consent record id), one whole-CRM pass.
BULK_MIN = 500
# A whole-CRM pass may take this long (a Bulk Read job of 200,000 rows takes minutes).
BULK_LOCK_S = 1800
# A look-up Zoho answered serves the retries of its batch for this long (Celery's backoff between
# attempts stays within minutes); a record made in CRM meanwhile is found by the next look-up.
LOOKUP_REMEMBERED_S = 900
EMAIL, PHONE, APP_USER_ID, ZOHO_ID = "email", "phone", "app_user_id", "zoho_id"


# A record: (module, record id).
Key = tuple[str, str]


def crm_modules() -> list[str]:
    """The CRM modules whose records hold people (``ZOHO_MODULES``), Contacts first."""
    modules = [str(m) for m in settings.ZOHO_MODULES] or ["Contacts"]
    return sorted(set(modules), key=lambda m: (m != "Contacts", modules.index(m)))


@dataclass
class LinkReport:
    """What one linking pass found, for push reports and tests. ``linked``: each linked
    contact's written records (a Contact, a Lead, or duplicates an admin chose to write)."""

    linked: dict[int, list[CrmLinkRecord]] = field(default_factory=dict)
    not_in_crm: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    calls: int = 0


@dataclass
class _Found:
    records: dict[Key, str]  # (module, record id) -> its consent record id ("" when it has none)
    matched_by: str
    matched_value: str


def phone_e164(value: Any) -> str | None:
    """A CRM phone value in E.164, or None when it cannot be read as an international number
    (a number stored without its country code cannot be compared without guessing a region)."""
    text = str(value or "").strip()
    if not text:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    for candidate in (text, f"+{digits}"):
        try:
            number = phonenumbers.parse(candidate, None)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _identifier(contact: Contact, by: str) -> str:
    if by == EMAIL:
        return (contact.email or "").strip().lower()
    if by == PHONE:
        return contact.phone or ""
    if by == APP_USER_ID:
        return contact.app_user_id or "" if settings.ZOHO_FIELD_APP_USER_ID else ""
    return contact.zoho_id or ""


def _stale(link: CrmLink, contact: Contact, now: datetime, records: list[CrmLinkRecord]) -> bool:
    """Whether the link must be looked for again: its identifier changed, or an unfound
    (or ambiguous) contact's last look is older than `RECHECK`."""
    if link.matched_by and link.matched_value != _identifier(contact, link.matched_by):
        return True
    if link.state == CrmLink.State.LINKED:
        return not any(r.written for r in records)
    return link.checked_at < now - RECHECK


def _consent_id(row: dict[str, Any]) -> str:
    value = row.get(CONSENT_OBJECT)
    if isinstance(value, dict) and value.get("id"):
        return str(value["id"])
    return ""


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _lookup(
    contacts: list[Contact],
    *,
    by: str,
    zoho: ZohoClient,
    report: LinkReport,
    found: dict[int, _Found],
) -> None:
    """Look the contacts up by one identifier in every configured module, 50 values per COQL
    query (25 numbers for phones, each asked in two spellings); records their matches in ``found``."""
    wanted = [c for c in contacts if c.pk not in found and _identifier(c, by)]
    if not wanted:
        return
    select = ["Email", CONSENT_OBJECT]
    keys: Callable[[dict[str, Any]], set[str]]
    if by == EMAIL:
        per_query = COQL_MAX_IN
        keys = lambda row: {str(row.get("Email") or "").strip().lower()} - {""}  # noqa: E731
    elif by == PHONE:
        per_query = COQL_MAX_IN // 2
        select += ["Phone", "Mobile"]
        keys = lambda row: {n for n in (phone_e164(row.get("Phone")), phone_e164(row.get("Mobile"))) if n}  # noqa: E731
    else:
        per_query = COQL_MAX_IN
        name = settings.ZOHO_FIELD_APP_USER_ID
        select.append(name)
        keys = lambda row: {str(row.get(name) or "").strip()} - {""}  # noqa: E731
    for chunk in _chunks(wanted, per_query):
        values = sorted({_identifier(c, by) for c in chunk})
        by_key: dict[str, dict[Key, str]] = {}
        if by == EMAIL:
            any_of = {"Email": values}
        elif by == PHONE:
            spellings = sorted(set(values) | {v.lstrip("+") for v in values})
            any_of = {"Phone": spellings, "Mobile": spellings}
        else:
            any_of = {settings.ZOHO_FIELD_APP_USER_ID: values}
        for module in crm_modules():
            # A query Zoho answered for an earlier attempt of this batch is not asked again.
            remembered = f"{zoho.config.cache_prefix}:link-lookup:{_sealed(module, by, *values)}"
            matches = answer(remembered)
            if matches is None:
                report.calls += 1
                matches = {}
                for row in zoho.crm.coql_where(select, any_of=any_of, module=module):
                    if not row.get("id"):
                        continue
                    for key in keys(row):
                        matches.setdefault(_sealed(key), {})[str(row["id"])] = _consent_id(row)
                answer_keep(remembered, matches, LOOKUP_REMEMBERED_S)
            for sealed, records in matches.items():
                for record_id, consent_id in records.items():
                    by_key.setdefault(sealed, {})[(module, record_id)] = consent_id
        for contact in chunk:
            value = _identifier(contact, by)
            found_records = by_key.get(_sealed(value))
            if found_records:
                found[contact.pk] = _Found(found_records, by, value)


def _sealed(*parts: str) -> str:
    """An identifier (or a query's) as the cache may hold it: a keyed digest, no personal data."""
    return salted_hmac("sync.linking.lookup", "\n".join(parts)).hexdigest()


def _consent_ids_read(keys: list[Key], zoho: ZohoClient, report: LinkReport) -> dict[Key, str]:
    """The consent record ids of linked records whose id is unknown (100 a call per module)."""
    out: dict[Key, str] = {}
    for module in sorted({m for m, _ in keys}):
        ids = sorted({rid for m, rid in keys if m == module})
        for chunk in _chunks(ids, MAX_RECORDS_PER_CALL):
            for row in zoho.crm.get_many(list(chunk), [CONSENT_OBJECT], module=module):
                out[(module, str(row.get("id")))] = _consent_id(row)
            report.calls += 1
    return out


def _waiting() -> tuple[Any, Any]:
    """(contacts never looked up, written records whose consent record id is unknown)."""
    unlooked = Contact.objects.filter(crm_link__isnull=True, merged_into__isnull=True)
    unknown = CrmLinkRecord.objects.filter(role__in=CrmLinkRecord.WRITTEN, consent_id__isnull=True)
    return unlooked, unknown


def _backlog_large() -> bool:
    unlooked, unknown = _waiting()
    found = len(unlooked.values_list("pk", flat=True)[:BULK_MIN])
    return found + len(unknown.values_list("pk", flat=True)[: BULK_MIN - found]) >= BULK_MIN


def _cell_id(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def _records_by_contact(contact_ids: Iterable[int]) -> dict[int, list[CrmLinkRecord]]:
    out: dict[int, list[CrmLinkRecord]] = {}
    for record in CrmLinkRecord.objects.filter(contact_id__in=list(contact_ids)).order_by("pk"):
        out.setdefault(record.contact_id, []).append(record)
    return out


def _decide(
    contact: Contact, found: dict[Key, str], old: list[CrmLinkRecord]
) -> tuple[str, list[CrmLinkRecord]]:
    """The link's state and records for what a lookup found: one record per module is linked
    (a Contact and a Lead of one person are both written); several in one module are candidates
    (a duplicate: none of the contact's records is written until an admin chooses)."""
    if not found:
        return CrmLink.State.NOT_IN_CRM, []
    per_module: dict[str, int] = {}
    for module, _ in found:
        per_module[module] = per_module.get(module, 0) + 1
    duplicate = any(n > 1 for n in per_module.values())
    role = CrmLinkRecord.Role.CANDIDATE if duplicate else CrmLinkRecord.Role.LINKED
    kept = {(r.module, r.record_id): r for r in old}
    modules = crm_modules()
    records = []
    for (module, record_id), consent in sorted(
        found.items(), key=lambda item: (modules.index(item[0][0]) if item[0][0] in modules else 99, item[0])
    ):
        previous = kept.get((module, record_id))
        records.append(
            CrmLinkRecord(
                contact=contact,
                module=module,
                record_id=record_id,
                role=role,
                consent_id=consent if consent is not None else (previous.consent_id if previous else None),
                converted_from=previous.converted_from if previous else "",
            )
        )
    return (CrmLink.State.DUPLICATE if duplicate else CrmLink.State.LINKED), records


def crm_links_all(*, zoho: ZohoClient) -> LinkReport:
    """The whole-CRM pass: every record of every configured module read once (Bulk Read), every
    waiting contact linked (by zoho_id, email, phone or app user id, in that order), every
    written record's consent record id learnt. Contacts not found are "not in CRM" until `RECHECK`."""
    from sync.reconcile.crm_rows import BULK, crm_rows  # (reconciliation's reader, imported late)

    now = timezone.now()
    report = LinkReport()
    unlooked_qs, unknown_qs = _waiting()
    unlooked = list(unlooked_qs.order_by("pk"))
    unknown = {(r.module, r.record_id): r for r in unknown_qs}
    wanted: dict[str, dict[str, list[int]]] = {ZOHO_ID: {}, EMAIL: {}, PHONE: {}, APP_USER_ID: {}}
    for contact in unlooked:
        for by in (ZOHO_ID, EMAIL, PHONE, APP_USER_ID):
            value = _identifier(contact, by)
            if value:
                wanted[by].setdefault(value, []).append(contact.pk)
    app_field = settings.ZOHO_FIELD_APP_USER_ID
    fields = ["Phone", "Mobile", CONSENT_OBJECT, *([app_field] if app_field else [])]
    matches: dict[int, dict[str, dict[Key, str]]] = {}  # contact -> by -> {record: consent id}
    consent_of: dict[Key, str] = {}
    for module in crm_modules():
        for row in crm_rows(zoho, BULK, fields, module=module):
            record_id, email, _, _, phone, mobile, consent, *rest = row
            key = (module, str(record_id))
            consent_id = _cell_id(consent)
            if key in unknown:
                consent_of[key] = consent_id
            keys = {
                ZOHO_ID: {key[1]} if module == "Contacts" else set(),
                EMAIL: {str(email or "").strip().lower()} - {""},
                PHONE: {n for n in (phone_e164(phone), phone_e164(mobile)) if n},
                APP_USER_ID: {str(rest[0] or "").strip()} - {""} if rest else set(),
            }
            for by, values in keys.items():
                for value in values:
                    for contact_id in wanted[by].get(value, ()):
                        matches.setdefault(contact_id, {}).setdefault(by, {})[key] = consent_id
    links: list[CrmLink] = []
    records: dict[int, list[CrmLinkRecord]] = {}
    duplicates: list[tuple[Contact, list[CrmLinkRecord]]] = []
    for contact in unlooked:
        found = matches.get(contact.pk, {})
        by = next((b for b in (ZOHO_ID, EMAIL, PHONE, APP_USER_ID) if b in found), "")
        if contact.zoho_id:
            by = ZOHO_ID
            consent = found.get(ZOHO_ID, {}).get(("Contacts", contact.zoho_id))
            chosen: dict[Key, str | None] = {("Contacts", contact.zoho_id): consent}
        else:
            chosen = dict(found.get(by, {}))
        if not by or not chosen:
            by = next((b for b in (EMAIL, PHONE, APP_USER_ID) if _identifier(contact, b)), "")
        state, rows = _decide(contact, chosen, [])  # type: ignore[arg-type]
        links.append(
            CrmLink(
                contact=contact,
                state=state,
                candidates=[r.record_id for r in rows],
                checked_at=now,
                matched_by=by,
                matched_value=_identifier(contact, by) if by else "",
            )
        )
        records[contact.pk] = rows
        if state == CrmLink.State.DUPLICATE:
            duplicates.append((contact, rows))
    for key, record in unknown.items():
        record.consent_id = consent_of.get(key, "")
    with transaction.atomic():
        for start in range(0, len(links), 5000):
            part = links[start : start + 5000]
            _links_save(part, {link.contact.pk: records[link.contact.pk] for link in part})
        CrmLinkRecord.objects.bulk_update(list(unknown.values()), ["consent_id"], batch_size=5000)
        _duplicates_record(duplicates, now)
    report.linked = {
        link.contact.pk: records[link.contact.pk] for link in links if link.state == CrmLink.State.LINKED
    }
    report.duplicates = [c.pk for c, _ in duplicates]
    report.not_in_crm = [link.contact.pk for link in links if link.state == CrmLink.State.NOT_IN_CRM]
    logger.info(
        "Linked in one CRM pass: %d linked, %d not in CRM, %d duplicates, %d consent ids learnt",
        len(report.linked),
        len(report.not_in_crm),
        len(report.duplicates),
        len(unknown),
    )
    return report


def _whole_pass_if_large(zoho: ZohoClient) -> None:
    """Run `crm_links_all` when the backlog is large; one worker at a time, the others go on."""
    if not _backlog_large():
        return
    lock = cache_lock(caches["default"], f"{zoho.config.cache_prefix}:link-all", expire_s=BULK_LOCK_S)
    if not lock.acquire(blocking=False):
        # Another worker is reading the CRM: this batch links its own contacts meanwhile (COQL)
        # rather than hold its claim for minutes.
        return
    try:
        if _backlog_large():  # (another worker may have just done it)
            crm_links_all(zoho=zoho)
    finally:
        lock.release()


def _consent_unknown(records: list[CrmLinkRecord]) -> bool:
    return any(r.written and r.consent_id is None for r in records)


def contacts_link(*, contacts: list[Contact], zoho: ZohoClient) -> tuple[dict[int, CrmLink], LinkReport]:
    """Link these contacts (any number) in bulk; returns every contact's link, saved, and in the
    report each linked contact's written records."""
    now = timezone.now()
    report = LinkReport()
    links = {link.contact_id: link for link in CrmLink.objects.filter(contact__in=contacts)}
    records = _records_by_contact(links)
    if any(c.pk not in links or _consent_unknown(records.get(c.pk, [])) for c in contacts):
        _whole_pass_if_large(zoho)
        links = {link.contact_id: link for link in CrmLink.objects.filter(contact__in=contacts)}
        records = _records_by_contact(links)
    changed: set[int] = set()
    to_find: list[Contact] = []
    duplicates: list[tuple[Contact, list[CrmLinkRecord]]] = []

    def put(contact: Contact, state: str, rows: list[CrmLinkRecord], by: str, value: str) -> None:
        link = links.get(contact.pk) or CrmLink(contact=contact)
        link.state, link.candidates, link.checked_at = state, [r.record_id for r in rows], now
        link.matched_by, link.matched_value = by, value
        links[contact.pk], records[contact.pk] = link, rows
        changed.add(contact.pk)

    for contact in contacts:
        link = links.get(contact.pk)
        old = records.get(contact.pk, [])
        if contact.zoho_id:
            mine = [r for r in old if r.written and (r.module, r.record_id) == ("Contacts", contact.zoho_id)]
            if link is None or link.state != CrmLink.State.LINKED or not mine or len(old) != 1:
                _, rows = _decide(contact, {("Contacts", contact.zoho_id): None}, old)  # type: ignore[dict-item]
                put(contact, CrmLink.State.LINKED, rows, ZOHO_ID, contact.zoho_id)
            continue
        if link is not None and not _stale(link, contact, now, old):
            continue
        to_find.append(contact)

    found: dict[int, _Found] = {}
    for by in (EMAIL, PHONE, APP_USER_ID):
        _lookup(to_find, by=by, zoho=zoho, report=report, found=found)
    for contact in to_find:
        match = found.get(contact.pk)
        if match is None:
            by = next((b for b in (EMAIL, PHONE, APP_USER_ID) if _identifier(contact, b)), "")
            put(contact, CrmLink.State.NOT_IN_CRM, [], by, _identifier(contact, by) if by else "")
            continue
        state, rows = _decide(contact, match.records, records.get(contact.pk, []))
        put(contact, state, rows, match.matched_by, match.matched_value)
        if state == CrmLink.State.DUPLICATE:
            duplicates.append((contact, rows))
    unknown = [
        r
        for cid, rows in records.items()
        if links[cid].state == CrmLink.State.LINKED
        for r in rows
        if r.written and r.consent_id is None
    ]
    if unknown:
        read = _consent_ids_read(sorted({(r.module, r.record_id) for r in unknown}), zoho, report)
        for record in unknown:
            record.consent_id = read.get((record.module, record.record_id), "")
        stored = [r for r in unknown if r.pk is not None and r.contact_id not in changed]
        unsaved = {r.contact_id for r in unknown if r.pk is None}
        changed |= unsaved
    else:
        stored = []

    with transaction.atomic():
        _links_save([links[c] for c in sorted(changed)], {c: records[c] for c in changed})
        CrmLinkRecord.objects.bulk_update(stored, ["consent_id"])
        _duplicates_record(duplicates, now)
    for contact_id, link in links.items():
        if link.state == CrmLink.State.LINKED and any(r.written for r in records.get(contact_id, [])):
            report.linked[contact_id] = [r for r in records[contact_id] if r.written]
        elif link.state == CrmLink.State.DUPLICATE:
            report.duplicates.append(contact_id)
        else:
            report.not_in_crm.append(contact_id)
    return links, report


def _duplicates_record(duplicates: list[tuple[Contact, list[CrmLinkRecord]]], now: datetime) -> None:
    for contact, rows in duplicates:
        discrepancy_record(
            contact_id=contact.pk,
            crm_field="",
            kind=Discrepancy.Kind.DUPLICATE,
            evidence={
                "email": contact.email,
                "phone": contact.phone,
                "candidates": [r.record_id for r in rows],
                "modules": {r.record_id: r.module for r in rows},
            },
            hint=HINTS[Discrepancy.Kind.DUPLICATE].format(email=contact.email or contact.phone or ""),
            retry=False,
            now=now,
        )


def _links_save(links: list[CrmLink], records: dict[int, list[CrmLinkRecord]]) -> None:
    """Upsert links in one statement, and replace their contacts' records with ``records``."""
    if not links:
        return
    CrmLink.objects.bulk_create(
        links,
        update_conflicts=True,
        unique_fields=["contact"],
        update_fields=["state", "candidates", "checked_at", "matched_by", "matched_value"],
    )
    CrmLinkRecord.objects.filter(contact_id__in=list(records)).delete()
    rows = [r for contact_rows in records.values() for r in contact_rows]
    for row in rows:
        row.pk = None
    CrmLinkRecord.objects.bulk_create(rows, batch_size=5000)


def consent_ids_forget(*, records: Iterable[CrmLinkRecord]) -> None:
    """After a write to records that had no consent record, Zoho made one: its id is unknown
    until read (the next push reads it, 100 records a call)."""
    ids = [r.pk for r in records if r.pk is not None and r.consent_id == ""]
    CrmLinkRecord.objects.filter(pk__in=ids, consent_id="").update(consent_id=None)


def contacts_unlinked(*, limit: int | None = None) -> list[Contact]:
    """Contacts with identifiers but no link yet (the bulk first sync; `sync_now --link`)."""
    qs = Contact.objects.filter(zoho_id__isnull=True, crm_link__isnull=True, merged_into__isnull=True)
    return list(qs.order_by("pk")[:limit] if limit else qs.order_by("pk"))


def record_relink(
    *, record: CrmLinkRecord, module: str, record_id: str, converted_from: str = ""
) -> CrmLinkRecord:
    """Move a contact's link from one record to another (a Lead converted to a Contact): the
    ledger is the contact's, so its history stays; only the record written changes. Returns the
    new row (or the contact's existing row for that record)."""
    with transaction.atomic():
        existing = CrmLinkRecord.objects.filter(
            contact_id=record.contact_id, module=module, record_id=record_id
        ).first()
        CrmLinkRecord.objects.filter(pk=record.pk).delete()
        if existing is None:
            existing = CrmLinkRecord.objects.create(
                contact_id=record.contact_id,
                module=module,
                record_id=record_id,
                role=record.role,
                consent_id=None,
                converted_from=converted_from,
            )
        ids = list(
            CrmLinkRecord.objects.filter(contact_id=record.contact_id, role__in=CrmLinkRecord.WRITTEN)
            .order_by("pk")
            .values_list("record_id", flat=True)
        )
        CrmLink.objects.filter(contact_id=record.contact_id).update(candidates=ids)
    return existing


def lead_converted_relink(*, contact_id: int, module: str, record_id: str, zoho: ZohoClient) -> str | None:
    """A contact's Lead record that is gone: the Contact it was converted to (Zoho's
    ``$converted_detail``, one call), the contact's link moved to it. The ledger is the
    contact's, so its history stays; its next push writes the Contact. None when the record is
    not a Lead or was not converted (deleted: a ``record_missing`` discrepancy for the caller)."""
    if module != "Leads":
        return None
    contact_record = zoho.crm.lead_conversion(record_id)
    if contact_record is None:
        return None
    lead_converted_move(contact_id=contact_id, record_id=record_id, contact_record=contact_record)
    return contact_record


def lead_converted_move(*, contact_id: int, record_id: str, contact_record: str) -> None:
    """Move the contact's link from its Lead `record_id` to the Contact `contact_record` the Lead
    was converted to (what Zoho's ``$converted_detail`` said: `lead_converted_relink`)."""
    row = CrmLinkRecord.objects.filter(contact_id=contact_id, module="Leads", record_id=record_id).first()
    if row is not None:
        record_relink(record=row, module="Contacts", record_id=contact_record, converted_from=record_id)
    logger.info(
        "Lead %s of contact %s was converted to Contact %s: the link moved",
        record_id,
        contact_id,
        contact_record,
    )
