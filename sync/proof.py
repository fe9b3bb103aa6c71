"""Proof per purpose: whether a contact's consent reached Zoho, read for its page and the API.

`contact_proof` reads, for each purpose the ledger holds a state for, the CRM field(s) that
carry it, the linked record(s), the last push that carried the purpose, the last read-back
that verified it (and what it read), the open discrepancies on its fields, and the contact's
Zoho Campaigns list statuses.

A contact may have several CRM records (`CrmLinkRecord`: a Lead not yet converted as well as a
Contact, or duplicates written to all): each is listed with its module, and each written one
with its own last push and read-back per purpose. A purpose is verified only when every written
record is. Registered with `compliance.panels` from `SyncConfig.ready()`:
the contact page's "Zoho proof" panel and the ``zoho`` status of each purpose in
``GET /api/v1/contacts/{id}/consents``. Reads only, a handful of queries per contact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from compliance.models import ConsentState, Contact
from compliance.panels import Panel
from sync.linking import crm_modules
from sync.models import CampaignsObservation, CrmLink, CrmLinkRecord, Discrepancy, FieldMapping, SyncPush

# The newest pushes of a contact read to find each purpose's last push and last verified one.
PUSHES_READ = 50


@dataclass
class LinkedRecord:
    """One CRM record of the contact, as the proof shows it."""

    module: str
    record_id: str
    role: str = CrmLinkRecord.Role.LINKED
    converted_from: str = ""

    @property
    def written(self) -> bool:
        return self.role in CrmLinkRecord.WRITTEN

    @property
    def role_label(self) -> str:
        return str(CrmLinkRecord.Role(self.role).label)


@dataclass
class RecordProof:
    """A purpose on one written record: its last push there, and its last matching read-back."""

    record: LinkedRecord
    ledger_version: int
    code: str
    last_push: SyncPush | None = None
    last_verified: SyncPush | None = None
    discrepancies: list[Discrepancy] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.discrepancies:
            return "discrepancy"
        return "verified" if _verifies(self.last_verified, self.code, self.ledger_version) else "pending"

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    def api(self) -> dict[str, Any]:
        return {
            "module": self.record.module,
            "record_id": self.record.record_id,
            "status": self.status,
            "verified_at": _iso(self.last_verified.verified_at if self.last_verified else None),
        }


STATUS_LABELS = {
    "not_synced": "Not synced (no CRM field)",
    "discrepancy": "Zoho differs",
    "verified": "Verified in Zoho",
    "pending": "Waiting for Zoho",
}


def _verifies(push: SyncPush | None, code: str, version: int) -> bool:
    return push is not None and int(push.ledger_versions.get(code, 0)) >= version


@dataclass
class PurposeProof:
    code: str
    name: str
    ledger_status: str
    ledger_version: int
    fields: list[str]
    last_push: SyncPush | None = None
    last_verified: SyncPush | None = None
    discrepancies: list[Discrepancy] = field(default_factory=list)
    # Per written record (none before the contact is linked).
    records: list[RecordProof] = field(default_factory=list)
    _last_read: SyncPush | None = None

    @property
    def status(self) -> str:
        """pending, verified, discrepancy or not_synced (no CRM field carries the purpose).
        Verified when every written record is (or, before any is known, the last push is)."""
        if not self.fields:
            return "not_synced"
        if self.discrepancies:
            return "discrepancy"
        if self.records:
            verified = all(r.status == "verified" for r in self.records)
        else:
            verified = _verifies(self.last_verified, self.code, self.ledger_version)
        return "verified" if verified else "pending"

    @property
    def status_label(self) -> str:
        return STATUS_LABELS[self.status]

    @property
    def last_read(self) -> SyncPush | None:
        """The newest read-back of this purpose's fields, matching or not."""
        return self.last_verified if self._last_read is None else self._last_read

    @property
    def readback(self) -> dict[str, Any]:
        pushed = self.last_read
        if pushed is None:
            return {}
        return {name: pushed.readback.get(name) for name in self.fields if name in pushed.readback}

    @property
    def verified_version(self) -> int | None:
        pushed = self.last_verified
        return int(pushed.ledger_versions.get(self.code, 0)) if pushed else None

    @property
    def readback_text(self) -> str:
        return ", ".join(json.dumps(v) for v in self.readback.values())

    @property
    def sent_text(self) -> str:
        return ", ".join(json.dumps(v) for v in self.sent.values())

    @property
    def sent(self) -> dict[str, Any]:
        pushed = self.last_push
        return {name: pushed.sent.get(name) for name in self.fields if name in pushed.sent} if pushed else {}

    def api(self, record_ids: list[str]) -> dict[str, Any]:
        first = self.discrepancies[0] if self.discrepancies else None
        return {
            "status": self.status,
            "verified_at": _iso(self.last_verified.verified_at if self.last_verified else None),
            "pushed_at": _iso(self.last_push.created_at if self.last_push else None),
            "record_ids": record_ids,
            "records": [r.api() for r in self.records],
            "discrepancy": None
            if first is None
            else {
                "id": first.pk,
                "kind": first.kind,
                "crm_field": first.crm_field,
                "opened_at": _iso(first.opened_at),
            },
        }


@dataclass
class ContactProof:
    contact: Contact
    link: CrmLink | None
    records: list[LinkedRecord]
    purposes: list[PurposeProof]
    campaigns: list[dict[str, Any]]

    @property
    def record_ids(self) -> list[str]:
        return [r.record_id for r in self.records]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _linked_records(contact: Contact, link: CrmLink | None) -> list[LinkedRecord]:
    """The contact's CRM records, configured modules first (Contacts, then Leads): its link
    records, else its Zoho id (a Contact), else its link's candidates (older links)."""
    modules = crm_modules()
    rows = sorted(
        CrmLinkRecord.objects.filter(contact=contact),
        key=lambda r: (modules.index(r.module) if r.module in modules else len(modules), r.pk),
    )
    if rows:
        return [LinkedRecord(r.module, r.record_id, r.role, r.converted_from) for r in rows]
    if contact.zoho_id:
        return [LinkedRecord("Contacts", contact.zoho_id)]
    if link is not None:
        return [LinkedRecord("Contacts", str(c)) for c in link.candidates]
    return []


def contact_proof(*, contact: Contact) -> ContactProof:
    link = CrmLink.objects.filter(contact=contact).first()
    records = _linked_records(contact, link)
    fields_of: dict[str, list[str]] = {}
    for mapping in FieldMapping.objects.filter(is_active=True).select_related("purpose"):
        if mapping.pushes:
            fields_of.setdefault(mapping.purpose.code, []).append(mapping.crm_field)
    states = ConsentState.objects.filter(contact=contact, version__gt=0).select_related("purpose")
    pushes = list(SyncPush.objects.filter(contact=contact).order_by("-created_at", "-id")[:PUSHES_READ])
    open_rows = list(
        Discrepancy.objects.filter(contact=contact, status=Discrepancy.Status.OPEN).order_by("opened_at")
    )
    purposes = []
    for state in states.order_by("purpose__code"):
        code = state.purpose.code
        names = sorted(fields_of.get(code, []))
        proof = PurposeProof(
            code=code,
            name=state.purpose.name,
            ledger_status=state.status,
            ledger_version=state.version,
            fields=names,
        )
        carrying = [p for p in pushes if code in (p.ledger_versions or {})]
        proof.last_push = carrying[0] if carrying else None
        proof.last_verified = next((p for p in carrying if _read_back_matching(p, names)), None)
        proof._last_read = next((p for p in carrying if any(n in (p.readback or {}) for n in names)), None)
        if names:
            proof.discrepancies = [d for d in open_rows if d.crm_field in names or not d.crm_field]
        for record in records:
            if not record.written:
                continue
            here = [p for p in carrying if (p.module, p.zoho_id) == (record.module, record.record_id)]
            proof.records.append(
                RecordProof(
                    record=record,
                    ledger_version=state.version,
                    code=code,
                    last_push=here[0] if here else None,
                    last_verified=next((p for p in here if _read_back_matching(p, names)), None),
                    discrepancies=[d for d in proof.discrepancies if d.zoho_id == record.record_id],
                )
            )
        purposes.append(proof)
    return ContactProof(
        contact=contact,
        link=link,
        records=records,
        purposes=purposes,
        campaigns=_campaigns(contact),
    )


def _read_back_matching(push: SyncPush, names: list[str]) -> bool:
    """The push was read back and this purpose's fields held what it sent (another field of the
    same push may differ: the push is then a mismatch, yet this purpose reached Zoho)."""
    if push.verification not in (SyncPush.Verification.VERIFIED, SyncPush.Verification.MISMATCH):
        return False
    sent = [name for name in names if name in push.sent]
    readback = push.readback or {}
    return bool(sent) and all(name in readback and readback[name] == push.sent[name] for name in sent)


def _campaigns(contact: Contact) -> list[dict[str, Any]]:
    """Per Campaigns list the sync writes to: the unsubscribes and bounces seen for the email."""
    if not contact.email:
        return []
    seen: dict[str, list[CampaignsObservation]] = {}
    # Both addresses in their normal form (lower case): the index on the address answers.
    for row in CampaignsObservation.objects.filter(email=contact.email).order_by("first_seen_at"):
        seen.setdefault(row.list_key or "(no list)", []).append(row)
    keys = [str(k) for k in settings.ZOHO_CAMPAIGNS_LIST_KEYS] + sorted(
        k for k in seen if k not in settings.ZOHO_CAMPAIGNS_LIST_KEYS
    )
    return [
        {
            "list_key": key,
            "statuses": [
                {"status": o.get_status_display(), "since": o.first_seen_at} for o in seen.get(key, [])
            ],
        }
        for key in keys
    ]


# -- what compliance.panels calls --------------------------------------------------------------


def proof_panel(request: HttpRequest, contact: Contact) -> Panel | None:
    proof = contact_proof(contact=contact)
    return Panel(template="sync/contact_proof_panel.html", context={"proof": proof}, title="Zoho proof")


def proof_statuses(contact: Contact) -> Mapping[str, Mapping[str, Any]]:
    proof = contact_proof(contact=contact)
    return {p.code: p.api(proof.record_ids) for p in proof.purposes}
