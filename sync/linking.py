"""Linking: which CRM record is each contact's, found in bulk.

A contact's record is its `Contact.zoho_id`, else the record its `CrmLink` names, else the
one found by its identifiers, 50 contacts per COQL query (Zoho's ``in`` limit), never one
call per contact:

1. by email: ``Email in (…)``, matched without case;
2. still unfound, by phone: ``Phone in (…) or Mobile in (…)``, compared in E.164 (each
   number is asked as stored, ``+4915…``, and without its ``+``);
3. still unfound, by the app user id, when ``ZOHO_FIELD_APP_USER_ID`` names the custom
   field that holds it.

**A large first sync** (at least ``BULK_MIN`` contacts waiting for a link or for their
record's consent record id, in the whole ledger): one pass reads every CRM record with the
reconciliation's Bulk Read (`sync.reconcile.crm_rows`: a job, its polls and one download per
200,000 records) and links every waiting contact at once, so the cost does not grow with the
number of contacts. One worker runs it (a shared lock); the others go on linking their own
batches by COQL meanwhile. `manage.py link_contacts` runs the same pass by hand (before a first
sync, so that no push claim waits for it).

One record: linked (with the record's consent record id, so that a push updates it in place).
Several: a ``duplicate`` discrepancy, and no record is written until an admin picks one.
None: "not in CRM", asked again after ``RECHECK`` or when an identifier changes.

Links persist (`CrmLink`): a linked contact costs no call until the identifier it was found
by changes (a changed email links again, by the new address).
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

from compliance.models import Contact
from sync.discrepancies import HINTS, discrepancy_record
from sync.models import CrmLink, Discrepancy
from sync.projection import CONSENT_OBJECT
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
EMAIL, PHONE, APP_USER_ID, ZOHO_ID = "email", "phone", "app_user_id", "zoho_id"


@dataclass
class LinkReport:
    """What one linking pass found, for push reports and tests."""

    linked: dict[int, str] = field(default_factory=dict)
    not_in_crm: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    calls: int = 0


@dataclass
class _Found:
    ids: list[str]
    consent: dict[str, str]  # record id -> its consent record id ("" when it has none)
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


def _stale(link: CrmLink, contact: Contact, now: datetime) -> bool:
    """Whether the link must be looked for again: its identifier changed, or an unfound
    (or ambiguous) contact's last look is older than `RECHECK`."""
    if link.matched_by and link.matched_value != _identifier(contact, link.matched_by):
        return True
    if link.state == CrmLink.State.LINKED:
        return not link.candidates
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
    """Look the contacts up by one identifier, 50 values per COQL query (25 numbers for phones,
    each asked in two spellings); records their matches in ``found``."""
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
        if by == EMAIL:
            rows = zoho.crm.coql_where(select, any_of={"Email": values})
        elif by == PHONE:
            spellings = sorted(set(values) | {v.lstrip("+") for v in values})
            rows = zoho.crm.coql_where(select, any_of={"Phone": spellings, "Mobile": spellings})
        else:
            rows = zoho.crm.coql_where(select, any_of={settings.ZOHO_FIELD_APP_USER_ID: values})
        report.calls += 1
        by_key: dict[str, dict[str, str]] = {}
        for row in rows:
            if not row.get("id"):
                continue
            for key in keys(row):
                by_key.setdefault(key, {})[str(row["id"])] = _consent_id(row)
        for contact in chunk:
            value = _identifier(contact, by)
            records = by_key.get(value)
            if records:
                found[contact.pk] = _Found(sorted(records), records, by, value)


def _consent_ids_read(ids: list[str], zoho: ZohoClient, report: LinkReport) -> dict[str, str]:
    """The consent record ids of records linked by their zoho_id (100 a call, once per record)."""
    out: dict[str, str] = {}
    for chunk in _chunks(ids, MAX_RECORDS_PER_CALL):
        for row in zoho.crm.get_many(list(chunk), [CONSENT_OBJECT]):
            out[str(row.get("id"))] = _consent_id(row)
        report.calls += 1
    return out


def _waiting() -> tuple[Any, Any]:
    """(contacts never looked up, links whose record's consent record id is unknown)."""
    unlooked = Contact.objects.filter(crm_link__isnull=True, merged_into__isnull=True)
    unknown = CrmLink.objects.filter(state=CrmLink.State.LINKED, consent_id__isnull=True)
    return unlooked, unknown


def _backlog_large() -> bool:
    unlooked, unknown = _waiting()
    found = len(unlooked.values_list("pk", flat=True)[:BULK_MIN])
    return found + len(unknown.values_list("pk", flat=True)[: BULK_MIN - found]) >= BULK_MIN


def _cell_id(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("id") or "")
    return str(value or "")


def crm_links_all(*, zoho: ZohoClient) -> LinkReport:
    """The whole-CRM pass: every CRM record read once (Bulk Read), every waiting contact linked
    (by zoho_id, email, phone or app user id, in that order), every linked record's consent
    record id learnt. Contacts not found are "not in CRM" until `RECHECK`."""
    from sync.reconcile.crm_rows import BULK, crm_rows  # (reconciliation's reader, imported late)

    now = timezone.now()
    report = LinkReport()
    unlooked_qs, unknown_qs = _waiting()
    unlooked = list(unlooked_qs.order_by("pk"))
    unknown = {str(link.candidates[0]): link for link in unknown_qs if link.candidates}
    wanted: dict[str, dict[str, list[int]]] = {ZOHO_ID: {}, EMAIL: {}, PHONE: {}, APP_USER_ID: {}}
    for contact in unlooked:
        for by in (ZOHO_ID, EMAIL, PHONE, APP_USER_ID):
            value = _identifier(contact, by)
            if value:
                wanted[by].setdefault(value, []).append(contact.pk)
    app_field = settings.ZOHO_FIELD_APP_USER_ID
    fields = ["Phone", "Mobile", CONSENT_OBJECT, *([app_field] if app_field else [])]
    matches: dict[int, dict[str, dict[str, str]]] = {}  # contact -> by -> {record id: consent id}
    consent_of: dict[str, str] = {}
    for row in crm_rows(zoho, BULK, fields):
        record_id, email, _, _, phone, mobile, consent, *rest = row
        record_id = str(record_id)
        consent_id = _cell_id(consent)
        if record_id in unknown:
            consent_of[record_id] = consent_id
        keys = {
            ZOHO_ID: {record_id},
            EMAIL: {str(email or "").strip().lower()} - {""},
            PHONE: {n for n in (phone_e164(phone), phone_e164(mobile)) if n},
            APP_USER_ID: {str(rest[0] or "").strip()} - {""} if rest else set(),
        }
        for by, values in keys.items():
            for value in values:
                for contact_id in wanted[by].get(value, ()):
                    matches.setdefault(contact_id, {}).setdefault(by, {})[record_id] = consent_id
    changed: list[CrmLink] = []
    duplicates: list[tuple[Contact, list[str]]] = []
    for contact in unlooked:
        found = matches.get(contact.pk, {})
        by = next((b for b in (ZOHO_ID, EMAIL, PHONE, APP_USER_ID) if b in found), "")
        link = CrmLink(
            contact=contact,
            checked_at=now,
            matched_by=by,
            matched_value=_identifier(contact, by) if by else "",
        )
        records = found.get(by, {})
        if contact.zoho_id:
            link.state, link.candidates = CrmLink.State.LINKED, [contact.zoho_id]
            link.consent_id = records.get(contact.zoho_id)
            link.matched_by, link.matched_value = ZOHO_ID, contact.zoho_id
        elif len(records) == 1:
            (record_id, consent_id), *_ = records.items()
            link.state, link.candidates, link.consent_id = CrmLink.State.LINKED, [record_id], consent_id
        elif records:
            link.state, link.candidates = CrmLink.State.DUPLICATE, sorted(records)
            duplicates.append((contact, sorted(records)))
        else:
            fallback = next((b for b in (EMAIL, PHONE, APP_USER_ID) if _identifier(contact, b)), "")
            link.state, link.candidates = CrmLink.State.NOT_IN_CRM, []
            link.matched_by, link.matched_value = fallback, _identifier(contact, fallback) if fallback else ""
        changed.append(link)
    for record_id, link in unknown.items():
        link.consent_id = consent_of.get(record_id, "")
        changed.append(link)
    with transaction.atomic():
        for start in range(0, len(changed), 5000):
            _links_save(changed[start : start + 5000])
        _duplicates_record(duplicates, now)
    report.linked = {
        link.contact_id: str(link.candidates[0]) for link in changed if link.state == CrmLink.State.LINKED
    }
    report.duplicates = [c.pk for c, _ in duplicates]
    report.not_in_crm = [link.contact_id for link in changed if link.state == CrmLink.State.NOT_IN_CRM]
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


def contacts_link(*, contacts: list[Contact], zoho: ZohoClient) -> tuple[dict[int, CrmLink], LinkReport]:
    """Link these contacts (any number) in bulk; returns every contact's link, saved."""
    now = timezone.now()
    report = LinkReport()
    links = {link.contact_id: link for link in CrmLink.objects.filter(contact__in=contacts)}
    if any(
        c.pk not in links or (links[c.pk].state == CrmLink.State.LINKED and links[c.pk].consent_id is None)
        for c in contacts
    ):
        _whole_pass_if_large(zoho)
        links = {link.contact_id: link for link in CrmLink.objects.filter(contact__in=contacts)}
    changed: dict[int, CrmLink] = {}
    to_find: list[Contact] = []
    consent_unknown: list[CrmLink] = []

    def put(
        contact: Contact, state: str, candidates: list[str], by: str, value: str, consent: str | None
    ) -> None:
        link = links.get(contact.pk) or CrmLink(contact=contact)
        link.state, link.candidates, link.checked_at = state, candidates, now
        link.matched_by, link.matched_value, link.consent_id = by, value, consent
        links[contact.pk] = changed[contact.pk] = link

    for contact in contacts:
        link = links.get(contact.pk)
        if contact.zoho_id:
            if link is None or link.candidates != [contact.zoho_id] or link.state != CrmLink.State.LINKED:
                keep = link.consent_id if link is not None and link.candidates == [contact.zoho_id] else None
                put(contact, CrmLink.State.LINKED, [contact.zoho_id], ZOHO_ID, contact.zoho_id, keep)
            if links[contact.pk].consent_id is None:
                consent_unknown.append(links[contact.pk])
            continue
        if link is not None and not _stale(link, contact, now):
            if link.state == CrmLink.State.LINKED and link.consent_id is None:
                consent_unknown.append(link)
            continue
        to_find.append(contact)

    found: dict[int, _Found] = {}
    for by in (EMAIL, PHONE, APP_USER_ID):
        _lookup(to_find, by=by, zoho=zoho, report=report, found=found)
    duplicates: list[tuple[Contact, list[str]]] = []
    for contact in to_find:
        match = found.get(contact.pk)
        if match is None:
            by = next((b for b in (EMAIL, PHONE, APP_USER_ID) if _identifier(contact, b)), "")
            put(contact, CrmLink.State.NOT_IN_CRM, [], by, _identifier(contact, by) if by else "", None)
        elif len(match.ids) > 1:
            put(contact, CrmLink.State.DUPLICATE, match.ids, match.matched_by, match.matched_value, None)
            duplicates.append((contact, match.ids))
        else:
            record_id = match.ids[0]
            put(
                contact,
                CrmLink.State.LINKED,
                [record_id],
                match.matched_by,
                match.matched_value,
                match.consent[record_id],
            )
    if consent_unknown:
        read = _consent_ids_read(sorted({str(link.candidates[0]) for link in consent_unknown}), zoho, report)
        for link in consent_unknown:
            link.consent_id = read.get(str(link.candidates[0]), "")
            changed[link.contact_id] = link

    with transaction.atomic():
        _links_save(list(changed.values()))
        _duplicates_record(duplicates, now)
    for contact_id, link in links.items():
        if link.state == CrmLink.State.LINKED and link.candidates:
            report.linked[contact_id] = str(link.candidates[0])
        elif link.state == CrmLink.State.DUPLICATE:
            report.duplicates.append(contact_id)
        else:
            report.not_in_crm.append(contact_id)
    return links, report


def _duplicates_record(duplicates: list[tuple[Contact, list[str]]], now: datetime) -> None:
    for contact, ids in duplicates:
        discrepancy_record(
            contact_id=contact.pk,
            crm_field="",
            kind=Discrepancy.Kind.DUPLICATE,
            evidence={"email": contact.email, "phone": contact.phone, "candidates": ids},
            hint=HINTS[Discrepancy.Kind.DUPLICATE].format(email=contact.email or contact.phone or ""),
            retry=False,
            now=now,
        )


def _links_save(links: list[CrmLink]) -> None:
    """Upsert links in one statement."""
    if not links:
        return
    CrmLink.objects.bulk_create(
        links,
        update_conflicts=True,
        unique_fields=["contact"],
        update_fields=["state", "candidates", "checked_at", "matched_by", "matched_value", "consent_id"],
    )


def consent_ids_forget(*, contact_ids: Iterable[int]) -> None:
    """After a write to records that had no consent record, Zoho made one: its id is unknown
    until read (the next push reads it, 100 records a call)."""
    CrmLink.objects.filter(contact_id__in=list(contact_ids), consent_id="").update(consent_id=None)


def contacts_unlinked(*, limit: int | None = None) -> list[Contact]:
    """Contacts with identifiers but no link yet (the bulk first sync; `sync_now --link`)."""
    qs = Contact.objects.filter(zoho_id__isnull=True, crm_link__isnull=True, merged_into__isnull=True)
    return list(qs.order_by("pk")[:limit] if limit else qs.order_by("pk"))
