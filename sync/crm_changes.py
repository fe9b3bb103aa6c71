"""CRM-side changes: what a CRM record read back says that the ledger does not.

DESIGN.md's rule of direction, applied to the mapped fields that flow back
(`FieldMapping.pulls`):

* **An opt-out a person made in CRM** is recorded as a ledger event (source
  ``crm``, ``opted_out``, evidence: the CRM user, ``Modified_Time``, field and
  value), because the least permissive state wins. It counts as a person's
  when ``Modified_By`` is neither our API user nor a workflow, the change came
  after our last verified write, not within ``CRM_AFTERMATH_WINDOW_S`` of our
  last push (that is our write's aftermath), and after the ledger's own latest
  decision for the purpose (an older CRM value is a pending push, not news).
* **Any other opt-out value** (a workflow, our own API user, right after our
  write) is a discrepancy (``overwritten``), never a decision.
* **An opt-in found in CRM** that the ledger does not hold is never recorded:
  an ``unevidenced_opt_in`` discrepancy asks an admin to look.

Who is a workflow: ``ZOHO_WORKFLOW_USER_IDS`` (ids), or a user whose full name
(from the users API, by id: COQL shows only last names) starts with one of
``ZOHO_WORKFLOW_USER_NAME_PREFIXES`` (default ``Workflow``, as zohosim names its
workflow user). Real Zoho often shows the
user whose action triggered the rule, which is why the aftermath window exists.
The API user is `CrmClient.api_user_id()` (``ZOHO_API_USER_ID``, else asked of Zoho).

`crm_changes_apply(records=…)` is called by reconciliation and by Zoho's
notification callbacks (`sync.crm_watch`); it returns the fields it dealt with
so the caller does not also report them as plain drift. A record is of any
module of ``ZOHO_MODULES`` (a Lead as well as a Contact): its discrepancies and
events name it and its module. With a client it re-reads records known only
from a Bulk Read file before deciding who changed them, and asks Zoho who our
API user is when not told.

Discrepancies go through `sync.discrepancies.discrepancy_record`: an
``overwritten`` one is retried (the ledger's value is pushed again, with backoff
and one alert after the last failed retry); an ``unevidenced_opt_in`` waits for
an admin.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Max
from django.utils import timezone

from compliance import services
from compliance.models import ConsentState, ConsentStatus, Contact, Source
from sync.discrepancies import discrepancy_record
from sync.models import Discrepancy, FieldMapping, SyncPush
from sync.projection import Projection, active_mappings, project, read_fields
from sync.zoho import ZohoClient

logger = logging.getLogger("sync.crm_changes")


@dataclass(frozen=True)
class CrmRecord:
    """One CRM record as read back, flattened to the projection's field names."""

    contact_id: int
    zoho_id: str
    values: Mapping[str, Any]
    modified_by_id: str = ""
    modified_by_name: str = ""
    modified_time: datetime | None = None
    module: str = "Contacts"


@dataclass
class CrmChangesResult:
    recorded: int = 0
    overwritten: int = 0
    unevidenced: int = 0
    # (contact_id, crm_field) pairs this module opened a discrepancy for or recorded an event about.
    handled: set[tuple[int, str]] = field(default_factory=set)
    events: list[int] = field(default_factory=list)


# Reading CRM values ---------------------------------------------------------------


def coerce(value: Any) -> Any:
    """A Bulk Read CSV cell (strings) as the JSON API gives it: booleans, None for empty."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
        if lowered == "":
            return None
    return value


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def crm_record(
    contact_id: int, row: Mapping[str, Any], fields: Iterable[str], *, module: str = "Contacts"
) -> CrmRecord:
    """Flatten a record of `module` from `get_many` (nested consent object), COQL (dotted keys)
    or Bulk Read (CSV strings)."""
    values: dict[str, Any] = {}
    for name in fields:
        if name in row:
            values[name] = coerce(row[name])
            continue
        top, _, key = name.partition(".")
        value = row.get(top)
        if key:
            value = value.get(key) if isinstance(value, Mapping) else None
        values[name] = coerce(value)
    who = row.get("Modified_By")
    if isinstance(who, Mapping):
        by_id, by_name = str(who.get("id") or ""), str(who.get("name") or "")
    else:
        by_id, by_name = str(who or ""), ""
    return CrmRecord(
        contact_id=contact_id,
        zoho_id=str(row.get("id") or ""),
        values=values,
        modified_by_id=by_id,
        modified_by_name=by_name,
        modified_time=parse_time(row.get("Modified_Time")),
        module=module,
    )


# Who changed it -------------------------------------------------------------------


# Resolved workflow user ids are kept this long (users are renamed rarely).
WORKFLOW_USERS_TTL_S = 3600


def crm_user_names(client: ZohoClient) -> dict[str, str]:
    """Every org user's full name by id, from the users API (one call an hour, shared). COQL
    shows a user lookup by its last name only, so its rows are named from here, by id."""
    key = f"sync:crm-users:{client.config.cache_prefix}"
    cached = cache.get(key)
    if cached is None:
        cached = {u.id: u.full_name for u in client.crm.users()}
        cache.set(key, cached, WORKFLOW_USERS_TTL_S)
    return dict(cached)


def workflow_user_ids(client: ZohoClient) -> set[str]:
    """Ids of the workflow users: ``ZOHO_WORKFLOW_USER_IDS`` and every org user whose *full*
    name starts with a ``ZOHO_WORKFLOW_USER_NAME_PREFIXES`` prefix (`crm_user_names`)."""
    prefixes = [str(p).lower() for p in settings.ZOHO_WORKFLOW_USER_NAME_PREFIXES if p]
    named = {
        user_id
        for user_id, name in crm_user_names(client).items()
        if any(name.strip().lower().startswith(p) for p in prefixes)
    }
    return {str(i) for i in settings.ZOHO_WORKFLOW_USER_IDS} | named


def is_workflow(user_id: str, user_name: str, *, ids: set[str] | None = None) -> bool:
    """Whether a workflow made the change. With ``ids`` (`workflow_user_ids`), by id only;
    without (no client to ask), by the configured ids, then by a full name's prefix."""
    if ids is not None:
        return bool(user_id) and user_id in ids
    configured = {str(i) for i in settings.ZOHO_WORKFLOW_USER_IDS}
    if user_id and user_id in configured:
        return True
    prefixes = settings.ZOHO_WORKFLOW_USER_NAME_PREFIXES
    lowered = user_name.strip().lower()
    return bool(lowered) and any(lowered.startswith(str(p).lower()) for p in prefixes if p)


# The rules ------------------------------------------------------------------------


def _evidence(record: CrmRecord, name: str, expected: Any) -> dict[str, Any]:
    return {
        "zoho_id": record.zoho_id,
        "crm_module": record.module,
        "crm_field": name,
        "crm_value": record.values.get(name),
        "expected": expected,
        "modified_by": {"id": record.modified_by_id, "name": record.modified_by_name},
        "modified_time": record.modified_time.isoformat() if record.modified_time else None,
    }


def _event_key(record: CrmRecord, name: str) -> str:
    moment = record.modified_time.isoformat() if record.modified_time else ""
    raw = f"crm:{record.zoho_id}:{name}:{moment}"
    return raw if len(raw) <= 200 else "crm:" + hashlib.sha256(raw.encode()).hexdigest()


def _confirm(
    candidates: list[tuple[CrmRecord, FieldMapping, Any, Any]], client: ZohoClient
) -> list[tuple[CrmRecord, FieldMapping, Any, Any]]:
    """Re-read records known only from a Bulk Read file (no user name, maybe minutes old) before
    deciding who changed them: 100 ids a call and module, only for the few that differ."""
    stale = {r.zoho_id: r for r, m, _, actual in candidates if not r.modified_by_name and r.zoho_id}
    if not stale:
        return candidates
    names = sorted({m.crm_field for _, m, _, _ in candidates})
    fresh: dict[str, CrmRecord] = {}
    for module in sorted({r.module for r in stale.values()}):
        ids = [rid for rid, r in stale.items() if r.module == module]
        for start in range(0, len(ids), 100):
            for row in client.crm.get_many(ids[start : start + 100], read_fields(names), module=module):
                old = stale.get(str(row.get("id")))
                if old is not None:
                    fresh[old.zoho_id] = crm_record(old.contact_id, row, names, module=module)
    out = []
    for record, mapping, expected, _ in candidates:
        record = fresh.get(record.zoho_id, record)
        actual = record.values.get(mapping.crm_field)
        if actual is not None and actual != expected:
            out.append((record, mapping, expected, actual))
    return out


def crm_changes_apply(
    *,
    records: Sequence[CrmRecord],
    projections: Mapping[int, Projection] | None = None,
    mappings: list[FieldMapping] | None = None,
    client: ZohoClient | None = None,
    api_user: str | None = None,
    now: datetime | None = None,
) -> CrmChangesResult:
    """Apply the rule of direction to CRM records read back. See the module docstring."""
    result = CrmChangesResult()
    mappings = active_mappings() if mappings is None else mappings
    pulled = [m for m in mappings if m.pulls]
    if not records or not pulled:
        return result
    ids = [r.contact_id for r in records]
    projections = projections if projections is not None else project(ids, mappings)
    now = now or timezone.now()
    window = timedelta(seconds=settings.CRM_AFTERMATH_WINDOW_S)

    # Pick out the fields that differ in a way this module decides, before any query per contact.
    candidates: list[tuple[CrmRecord, FieldMapping, Any, Any]] = []
    for record in records:
        projection = projections.get(record.contact_id)
        if projection is None:
            continue
        for mapping in pulled:
            name = mapping.crm_field
            actual = record.values.get(name)
            expected = projection.values.get(name)
            if actual is None or actual == expected:
                continue
            candidates.append((record, mapping, expected, actual))
    if not candidates:
        return result
    if client is not None:
        candidates = _confirm(candidates, client)

    touched = {r.contact_id for r, *_ in candidates}
    pushes = {
        row["contact_id"]: row
        for row in SyncPush.objects.filter(contact_id__in=touched)
        .values("contact_id")
        .annotate(last_push=Max("created_at"), last_verified=Max("verified_at"))
    }
    states = {
        (s.contact_id, s.purpose.code): s
        for s in ConsentState.objects.filter(contact_id__in=touched, version__gt=0).select_related("purpose")
    }
    if api_user is None:
        # Without a client nobody can say who our API user is: then no value counts as ours.
        api_user = client.crm.api_user_id() if client is not None else ""
    our_user = api_user
    workflow_ids = workflow_user_ids(client) if client is not None else None

    for record, mapping, expected, actual in candidates:
        name = mapping.crm_field
        key = (record.contact_id, name)
        evidence = _evidence(record, name, expected)
        crm_says_opted_in = actual == mapping.value_for(True)
        if crm_says_opted_in:
            # Never inferred from a CRM field: an admin must look.
            discrepancy_record(
                contact_id=record.contact_id,
                zoho_id=record.zoho_id,
                crm_field=name,
                kind=Discrepancy.Kind.UNEVIDENCED_OPT_IN,
                retry=False,
                expected=expected,
                actual=actual,
                evidence=evidence,
                hint=(
                    "CRM shows consent that the ledger does not hold. An opt-in is recorded only with the "
                    "person's own evidence (app, web, phone agent, confirmed double opt-in), never from a "
                    "CRM field; the next push writes the ledger's value back."
                ),
            )
            result.unevidenced += 1
            result.handled.add(key)
            continue
        if actual != mapping.value_for(False):
            continue  # neither value of the mapping (e.g. a string in a boolean field): plain drift
        push = pushes.get(record.contact_id) or {}
        last_push: datetime | None = push.get("last_push")
        last_verified: datetime | None = push.get("last_verified")
        state = states.get((record.contact_id, mapping.purpose.code))
        modified = record.modified_time
        reason = ""
        if record.modified_by_id and record.modified_by_id == our_user:
            reason = "our API user made this value (a failed or stale write of ours)"
        elif is_workflow(record.modified_by_id, record.modified_by_name, ids=workflow_ids):
            reason = f"a workflow rule ({record.modified_by_name or record.modified_by_id}) reset the field"
        elif modified is None:
            reason = "the record carries no Modified_Time, so the change cannot be dated"
        elif last_push is not None and last_push.replace(microsecond=0) <= modified <= last_push + window:
            # (Zoho renders Modified_Time in whole seconds.)
            reason = (
                f"the field changed {(modified - last_push).total_seconds():.0f} s after our write: "
                "the aftermath of our own write (a workflow rule or an automation), not a decision"
            )
        elif last_verified is not None and modified <= last_verified:
            reason = "the change is not newer than our last verified write"
        elif state is not None and state.occurred_at is not None and modified <= state.occurred_at:
            reason = "the ledger holds a newer decision of the person; the push will write it"
        if reason:
            discrepancy_record(
                contact_id=record.contact_id,
                zoho_id=record.zoho_id,
                crm_field=name,
                kind=Discrepancy.Kind.OVERWRITTEN,
                expected=expected,
                actual=actual,
                evidence={**evidence, "last_push": last_push.isoformat() if last_push else None},
                hint=f"CRM shows an opt-out the ledger does not: {reason}.",
            )
            result.overwritten += 1
            result.handled.add(key)
            continue
        if state is None or state.status != ConsentStatus.OPTED_IN:
            # The ledger holds no opt-in (e.g. a suppression makes the value differ): nothing to withdraw.
            continue
        assert modified is not None
        occurred = min(modified, now)
        try:
            outcome = services.consent_record(
                contact=Contact.objects.get(pk=record.contact_id),
                decision=services.ConsentDecision(
                    purpose=mapping.purpose.code,
                    status=ConsentStatus.OPTED_OUT,
                    source=Source.CRM,
                    occurred_at=occurred,
                    idempotency_key=_event_key(record, name),
                    evidence={
                        **evidence,
                        "crm_user": {"id": record.modified_by_id, "name": record.modified_by_name},
                    },
                    reason=f"Opt-out set in Zoho CRM by {record.modified_by_name or record.modified_by_id}",
                ),
            )
        except (services.ConsentRejected, services.IdempotencyConflict) as exc:
            logger.warning("CRM opt-out of contact %s not recorded: %s", record.contact_id, exc)
            continue
        result.handled.add(key)
        if outcome.created:
            result.recorded += 1
            result.events.append(outcome.event.pk)
    return result
