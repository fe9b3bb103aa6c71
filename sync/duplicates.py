"""Duplicates: contacts whose address several CRM records share, and an admin's choice for each.

Linking (`sync.linking`) holds such a contact: its records are ``candidate`` rows, none is
written, and a ``duplicate`` discrepancy says so. An admin chooses on the duplicates page:

- **write to all**: every candidate is written and verified (each its own push);
- **a primary**: that record is written; the other records of its module are left alone (the
  contact's records in other modules, one each, are written too).

`duplicate_decide` records the choice (who, when, why: `DuplicateDecision`), makes the chosen
records the contact's written ones, resolves the duplicate discrepancy, and queues a push of the
contact's current state (the held push goes out once the transaction commits).

`duplicate_groups` is the page's read: each group with its records' key fields, read from Zoho
(one call per module and 100 records, cached briefly) or, when Zoho cannot be read, the ids
linking stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from compliance.models import Contact
from sync.discrepancies import discrepancies_resolve
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, DuplicateDecision
from sync.outbox import contacts_requeue
from sync.zoho import ZohoClient
from sync.zoho.crm import MAX_RECORDS_PER_CALL
from sync.zoho.errors import ZohoError

logger = logging.getLogger(__name__)

# The key fields the page shows for each record.
KEY_FIELDS = (
    "First_Name",
    "Last_Name",
    "Email",
    "Phone",
    "Mobile",
    "Email_Opt_Out",
    "Modified_Time",
    "Created_Time",
)
# Zoho's answers for the page are kept this long (the page may be reloaded often).
RECORDS_CACHE_S = 300
GROUPS_SHOWN = 50


class DecisionRefused(ValueError):
    """The choice cannot be recorded (the contact is not held, a record is not a candidate, no reason)."""


def _when(value: Any) -> str:
    """Zoho's ISO time as the page shows it: date and minute, in Zoho's offset."""
    text = str(value or "")
    return text[:16].replace("T", " ") if len(text) >= 16 else text


@dataclass
class GroupRecord:
    module: str
    record_id: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> str:
        return f"{self.module}:{self.record_id}"

    @property
    def name(self) -> str:
        return " ".join(str(self.fields.get(n) or "") for n in ("First_Name", "Last_Name")).strip()

    @property
    def created(self) -> str:
        return _when(self.fields.get("Created_Time"))

    @property
    def modified(self) -> str:
        return _when(self.fields.get("Modified_Time"))

    @property
    def modified_by(self) -> str:
        user = self.fields.get("Modified_By")
        return str(user.get("name") or user.get("id") or "") if isinstance(user, dict) else ""


@dataclass
class DuplicateGroup:
    contact: Contact
    link: CrmLink
    records: list[GroupRecord]
    discrepancy_id: int | None = None


@dataclass
class Groups:
    groups: list[DuplicateGroup]
    total: int
    # Why Zoho's key fields are missing ("" when they were read).
    read_error: str = ""


def duplicate_record_cache_key(module: str, record_id: str) -> str:
    """Where a record's key fields (the person's email, phone, names) are cached for the page;
    an erasure deletes them (sync/erasure_caches.py)."""
    return f"sync:duplicate-record:{module}:{record_id}"


def _read_records(keys: list[tuple[str, str]], zoho: ZohoClient) -> dict[tuple[str, str], dict[str, Any]]:
    """The key fields of these records, per module and 100 ids a call; cached for the page."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    wanted: list[tuple[str, str]] = []
    for key in keys:
        hit = cache.get(duplicate_record_cache_key(*key))
        if hit is None:
            wanted.append(key)
        else:
            out[key] = hit
    for module in sorted({m for m, _ in wanted}):
        ids = [r for m, r in wanted if m == module]
        for start in range(0, len(ids), MAX_RECORDS_PER_CALL):
            for row in zoho.crm.get_many(
                ids[start : start + MAX_RECORDS_PER_CALL], [*KEY_FIELDS, "Modified_By"], module=module
            ):
                key = (module, str(row.get("id")))
                out[key] = dict(row)
                cache.set(duplicate_record_cache_key(module, key[1]), dict(row), RECORDS_CACHE_S)
    return out


def duplicate_groups(*, zoho: ZohoClient | None, limit: int = GROUPS_SHOWN) -> Groups:
    """The contacts held as duplicates (oldest check first), each with its candidate records."""
    links = CrmLink.objects.filter(state=CrmLink.State.DUPLICATE).select_related("contact")
    total = links.count()
    shown = list(links.order_by("checked_at", "contact_id")[:limit])
    rows: dict[int, list[CrmLinkRecord]] = {}
    for row in CrmLinkRecord.objects.filter(
        contact_id__in=[link.contact_id for link in shown], role=CrmLinkRecord.Role.CANDIDATE
    ).order_by("module", "record_id"):
        rows.setdefault(row.contact_id, []).append(row)
    keys = sorted({(r.module, r.record_id) for contact_rows in rows.values() for r in contact_rows})
    read: dict[tuple[str, str], dict[str, Any]] = {}
    error = ""
    if zoho is not None and keys:
        try:
            read = _read_records(keys, zoho)
        except ZohoError as exc:
            logger.warning("The duplicates page could not read the records from Zoho: %s", exc)
            error = f"Zoho could not be read ({exc}): the records are shown by id only."
    discrepancies = dict(
        Discrepancy.objects.filter(
            contact_id__in=[link.contact_id for link in shown],
            kind=Discrepancy.Kind.DUPLICATE,
            status=Discrepancy.Status.OPEN,
        ).values_list("contact_id", "id")
    )
    groups = [
        DuplicateGroup(
            contact=link.contact,
            link=link,
            records=[
                GroupRecord(r.module, r.record_id, read.get((r.module, r.record_id), {}))
                for r in rows.get(link.contact_id, [])
            ],
            discrepancy_id=discrepancies.get(link.contact_id),
        )
        for link in shown
    ]
    return Groups(groups=groups, total=total, read_error=error)


def decisions_recent(*, limit: int = 20) -> list[DuplicateDecision]:
    return list(DuplicateDecision.objects.select_related("contact").order_by("-decided_at", "-id")[:limit])


def duplicate_decide(
    *,
    contact_id: int,
    choice: str,
    primary: str = "",
    reason: str,
    user: AbstractBaseUser | AnonymousUser,
) -> DuplicateDecision:
    """Record the admin's choice for a held contact and release its push (see the module docstring).

    ``primary``: ``"<module>:<record id>"`` of the chosen record (for ``choice="primary"``).
    Raises `DecisionRefused` when the contact is not held as a duplicate (any more), when the
    primary is not one of its candidates, or without a reason; nothing is written then.
    """
    reason = reason.strip()
    if not reason:
        raise DecisionRefused("Say why: the decision is recorded with its reason.")
    if choice not in DuplicateDecision.Choice.values:
        raise DecisionRefused(f"Unknown choice {choice!r}.")
    now = timezone.now()
    with transaction.atomic():
        link = CrmLink.objects.select_for_update().filter(contact_id=contact_id).first()
        if link is None or link.state != CrmLink.State.DUPLICATE:
            raise DecisionRefused("This contact is not held as a duplicate (any more): reload the page.")
        candidates = list(
            CrmLinkRecord.objects.filter(contact_id=contact_id, role=CrmLinkRecord.Role.CANDIDATE).order_by(
                "module", "record_id"
            )
        )
        if not candidates:
            raise DecisionRefused("This contact has no candidate records: reload the page.")
        chosen: CrmLinkRecord | None = None
        if choice == DuplicateDecision.Choice.PRIMARY:
            chosen = next((r for r in candidates if f"{r.module}:{r.record_id}" == primary), None)
            if chosen is None:
                raise DecisionRefused("Choose the primary among the contact's records.")
        if chosen is None:
            written = candidates
            for row in written:
                row.role = CrmLinkRecord.Role.ALL
        else:
            per_module: dict[str, int] = {}
            for row in candidates:
                per_module[row.module] = per_module.get(row.module, 0) + 1
            # The primary, and the contact's only record of each other module.
            written = [
                r
                for r in candidates
                if r is chosen or (r.module != chosen.module and per_module[r.module] == 1)
            ]
            for row in written:
                row.role = CrmLinkRecord.Role.PRIMARY if row is chosen else CrmLinkRecord.Role.LINKED
            CrmLinkRecord.objects.filter(pk__in=[r.pk for r in candidates if r not in written]).delete()
        CrmLinkRecord.objects.bulk_update(written, ["role"])
        link.state = CrmLink.State.LINKED
        link.candidates = [
            r.record_id for r in sorted(written, key=lambda r: (r is not chosen, r.module != "Contacts"))
        ]
        link.save(update_fields=["state", "candidates"])
        name = user.get_username() if user.is_authenticated else "anonymous"
        decision = DuplicateDecision.objects.create(
            contact_id=contact_id,
            choice=choice,
            primary_module=chosen.module if chosen else "",
            primary_record_id=chosen.record_id if chosen else "",
            candidates=[{"module": r.module, "record_id": r.record_id} for r in candidates],
            reason=reason,
            decided_by=user if user.is_authenticated else None,  # type: ignore[misc]
            decided_by_name=name,
        )
        what = (
            f"primary {chosen.module} {chosen.record_id}"
            if chosen
            else f"write to all {len(written)} records"
        )
        discrepancies_resolve(
            ids=list(
                Discrepancy.objects.filter(
                    contact_id=contact_id, kind=Discrepancy.Kind.DUPLICATE, status=Discrepancy.Status.OPEN
                ).values_list("pk", flat=True)
            ),
            resolution=f"{name} chose {what} (decision {decision.pk}): {reason}",
            now=now,
        )
        # The held push goes out: one outbox row, kicked once this commits.
        contacts_requeue(contact_ids=[contact_id])
    return decision
