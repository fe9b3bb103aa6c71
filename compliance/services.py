"""Every write to the ledger. Nothing else inserts consent events.

`consent_record` is the one write path: in one transaction it replays or
refuses a duplicate idempotency key, locks the chain's current state, appends
the event with its version, previous status and hash, updates the state and
writes the outbox row the sync consumes. `consent_ingest` first finds or makes
the contact. `consent_ingest_batch` takes the same steps for a chunk of items at
once (`_chunk_set_based`), with the outcome and ledger the one-by-one path gives
(tests/compliance/test_ingest_batch.py holds the two side by side).
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from compliance import chain
from compliance.identifiers import normalise_email, normalise_ip, normalise_phone
from compliance.models import (
    ApiClient,
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    OutboxEntry,
    PolicyVersion,
    Purpose,
    Seal,
    Source,
    Suppression,
)
from compliance.outbox import outbox_written_on_commit

logger = logging.getLogger(__name__)


class ConsentRejected(Exception):
    """The request breaks a rule of the ledger; nothing was written. `field` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


class ConsentForbidden(ConsentRejected):
    """The caller may not write this (for example an API client writing a source it was not given)."""


class IdempotencyConflict(Exception):
    """The idempotency key was used before for different content."""

    def __init__(self, event: ConsentEvent) -> None:
        super().__init__(f"Idempotency key {event.idempotency_key!r} was already used for other content.")
        self.event = event


@dataclass(frozen=True)
class ContactIdentity:
    email: str | None = None
    phone: str | None = None
    app_user_id: str | None = None
    zoho_id: str | None = None
    first_name: str = ""
    last_name: str = ""


@dataclass(frozen=True)
class ConsentDecision:
    purpose: str
    status: str
    source: str
    occurred_at: datetime
    idempotency_key: str
    frequency: str | None = None
    ip_address: str | None = None
    user_agent: str = ""
    policy_version: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class RecordResult:
    event: ConsentEvent
    created: bool


# Sources that speak for the person themselves: only these may record an opt-in.
PERSON_SOURCES = frozenset(
    {
        Source.MOBILE_APP,
        Source.WEB_PORTAL,
        Source.CUSTOMER_SERVICE,
        Source.EMAIL_LINK,
        Source.IMPORT,
        Source.ADMIN,
    }
)
WITHDRAWN = frozenset({ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED})


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _clean_identifier(field_name: str, value: str | None, normalise: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(normalise(value))
    except ValidationError as exc:
        raise ConsentRejected(f"contact.{field_name}", exc.messages[0]) from exc


def _normalised_identity(identity: ContactIdentity) -> ContactIdentity:
    result = ContactIdentity(
        email=_clean_identifier("email", identity.email, normalise_email),
        phone=_clean_identifier("phone", identity.phone, normalise_phone),
        app_user_id=(identity.app_user_id or "").strip() or None,
        zoho_id=(identity.zoho_id or "").strip() or None,
        first_name=identity.first_name.strip(),
        last_name=identity.last_name.strip(),
    )
    if not (result.email or result.phone or result.app_user_id or result.zoho_id):
        raise ConsentRejected("contact", "Give at least one of email, phone, app_user_id or zoho_id.")
    return result


def contact_resolve(*, identity: ContactIdentity) -> Contact:
    """Find the one contact these identifiers name, creating it if none does.

    Identifiers that point at two different people are refused rather than
    guessed at. Missing identifiers and names are filled in on the contact.
    """
    identity = _normalised_identity(identity)
    lookups = [
        ("app_user_id", identity.app_user_id),
        ("email", identity.email),
        ("zoho_id", identity.zoho_id),
        ("phone", identity.phone),
    ]
    condition = Q()
    for name, value in lookups:
        if value:
            condition |= Q(**{name: value})
    found = list(Contact.objects.filter(condition)[:10])
    strong = {c.pk for c in found for name, value in lookups[:3] if value and getattr(c, name) == value}
    if len(strong) > 1:
        raise ConsentRejected(
            "contact",
            "These identifiers belong to different contacts; correct them or ask an admin to merge.",
        )
    if strong:
        contact = next(c for c in found if c.pk in strong)
    elif len(found) > 1:
        raise ConsentRejected(
            "contact.phone", "This phone number belongs to several contacts; add email or app_user_id."
        )
    elif found:
        contact = found[0]
    else:
        try:
            with transaction.atomic():
                return Contact.objects.create(
                    email=identity.email,
                    phone=identity.phone,
                    app_user_id=identity.app_user_id,
                    zoho_id=identity.zoho_id,
                    first_name=identity.first_name,
                    last_name=identity.last_name,
                )
        except IntegrityError:
            # Another request created this person a moment ago: find them again.
            return contact_resolve(identity=identity)

    changed = []
    for name in ("email", "phone", "app_user_id", "zoho_id", "first_name", "last_name"):
        value = getattr(identity, name)
        if value and getattr(contact, name) != value:
            setattr(contact, name, value)
            changed.append(name)
    if changed:
        try:
            with transaction.atomic():
                contact.save(update_fields=[*changed, "updated_at"])
        except IntegrityError as exc:
            raise ConsentRejected(
                "contact", "An identifier given here already belongs to another contact."
            ) from exc
    return contact


def _request_digest(contact_ref: int | str | None, decision: ConsentDecision) -> str:
    """Tells a replay from a conflict. `contact_ref` is the contact's id (the batch path also
    compares requests for contacts it has not inserted yet, under a stand-in reference)."""
    content = {
        "contact": contact_ref,
        "purpose": decision.purpose,
        "status": decision.status,
        "frequency": decision.frequency or "",
        "source": decision.source,
        "ip_address": decision.ip_address or "",
        "user_agent": decision.user_agent,
        "policy_version": decision.policy_version or "",
        "occurred_at": decision.occurred_at.isoformat(),
        "evidence": decision.evidence,
        "reason": decision.reason,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _replay(key: str, digest: str) -> RecordResult | None:
    existing = (
        ConsentEvent.objects.select_related("contact", "purpose", "policy_version")
        .filter(idempotency_key=key)
        .first()
    )
    if existing is None:
        return None
    if existing.request_digest != digest:
        raise IdempotencyConflict(existing)
    return RecordResult(event=existing, created=False)


class _Lookups:
    """Purposes and policy versions rarely change; a batch resolves each once."""

    def __init__(self) -> None:
        self.purposes: dict[str, Purpose] = {}
        self.policies: dict[str, PolicyVersion] = {}

    def purpose(self, code: str) -> Purpose:
        if code not in self.purposes:
            try:
                self.purposes[code] = Purpose.objects.get(code=code)
            except Purpose.DoesNotExist:
                known = ", ".join(Purpose.objects.values_list("code", flat=True))
                raise ConsentRejected("purpose", f"Unknown purpose {code!r}; known: {known}.") from None
        return self.purposes[code]

    def policy(self, label: str) -> PolicyVersion:
        if label not in self.policies:
            try:
                self.policies[label] = PolicyVersion.objects.get(label=label, published_at__isnull=False)
            except PolicyVersion.DoesNotExist:
                raise ConsentRejected(
                    "policy_version", f"Unknown or unpublished policy version {label!r}."
                ) from None
        return self.policies[label]


def _check_rules(
    decision: ConsentDecision,
    purpose: Purpose,
    *,
    api_client: ApiClient | None,
    actor_user: AbstractBaseUser | None,
    now: datetime,
) -> None:
    if decision.status not in ConsentStatus.values:
        raise ConsentRejected("status", f"Unknown status {decision.status!r}.")
    if decision.source not in Source.values:
        raise ConsentRejected("source", f"Unknown source {decision.source!r}.")
    if api_client is not None and not api_client.may_write(decision.source):
        raise ConsentForbidden(
            "source", f"API client {api_client.name!r} may not write source {decision.source!r}."
        )
    if not decision.idempotency_key.strip():
        raise ConsentRejected("idempotency_key", "An idempotency key is required.")
    if decision.occurred_at > now + timedelta(seconds=settings.CONSENT_OCCURRED_AT_SKEW_S):
        raise ConsentRejected("occurred_at", "occurred_at lies in the future.")
    if decision.frequency and decision.status != ConsentStatus.OPTED_IN:
        raise ConsentRejected("frequency", "A frequency goes only with status opted_in.")
    if decision.status == ConsentStatus.OPTED_IN:
        if decision.source not in PERSON_SOURCES:
            raise ConsentRejected(
                "source",
                f"An opt-in needs the person's own action; source {decision.source!r} cannot give one.",
            )
        if not decision.policy_version:
            raise ConsentRejected("policy_version", "An opt-in must name the policy version the person saw.")
        if (
            purpose.double_opt_in_required
            and decision.source != Source.ADMIN
            and not decision.evidence.get("double_opt_in_confirmed_at")
        ):
            raise ConsentRejected(
                "evidence",
                f"{purpose.code} requires double opt-in: record status pending first, then opted_in with "
                "evidence.double_opt_in_confirmed_at.",
            )
    if decision.status == ConsentStatus.PENDING and not purpose.double_opt_in_required:
        raise ConsentRejected("status", f"{purpose.code} has no double opt-in, so nothing can be pending.")
    if decision.status == ConsentStatus.EXPIRED and decision.source != Source.SYSTEM:
        raise ConsentRejected("status", "Only the system expires consent.")
    if decision.source == Source.ADMIN:
        if actor_user is None:
            raise ConsentRejected("source", "Admin corrections are made by a signed-in admin.")
        if not decision.reason.strip():
            raise ConsentRejected("reason", "An admin correction needs a reason.")


@dataclass(frozen=True)
class _Checked:
    """A decision that passed the rules, with what its event needs from the database."""

    decision: ConsentDecision
    purpose: Purpose
    policy: PolicyVersion | None
    ip_address: str | None
    api_client: ApiClient | None
    actor_user: AbstractBaseUser | None
    actor: str


def _check(
    decision: ConsentDecision,
    *,
    api_client: ApiClient | None,
    actor_user: AbstractBaseUser | None,
    lookups: _Lookups,
    now: datetime,
) -> _Checked:
    """The ledger's rules for one decision, in the order their errors are reported."""
    purpose = lookups.purpose(decision.purpose)
    _check_rules(decision, purpose, api_client=api_client, actor_user=actor_user, now=now)
    policy = lookups.policy(decision.policy_version) if decision.policy_version else None
    ip_address = None
    if decision.ip_address:
        try:
            ip_address = normalise_ip(decision.ip_address)
        except ValidationError as exc:
            raise ConsentRejected("ip_address", exc.messages[0]) from exc
    if api_client is not None:
        actor = f"api:{api_client.name}"
    elif actor_user is not None:
        actor = f"user:{actor_user.get_username()}"
    else:
        actor = "system"
    return _Checked(decision, purpose, policy, ip_address, api_client, actor_user, actor)


def _next_event(
    state: ConsentState, contact: Contact, checked: _Checked, *, digest: str, now: datetime
) -> ConsentEvent:
    """The chain's next event after `state` (not saved): version, previous status and hash."""
    decision = checked.decision
    event = ConsentEvent(
        contact=contact,
        purpose=checked.purpose,
        version=state.version + 1,
        previous_status=state.status,
        status=decision.status,
        frequency=decision.frequency or "",
        source=decision.source,
        ip_address=checked.ip_address,
        user_agent=decision.user_agent[:500],
        policy_version=checked.policy,
        occurred_at=decision.occurred_at,
        recorded_at=now,
        api_client=checked.api_client,
        actor_user=checked.actor_user,  # type: ignore[misc]
        actor=checked.actor,
        evidence=dict(decision.evidence),
        reason=decision.reason,
        idempotency_key=decision.idempotency_key,
        request_digest=digest,
        prev_hash=state.head_hash,
    )
    event.hash = chain.event_hash(
        state.head_hash, tuple(getattr(event, name) for name in chain.EVENT_HASHED_FIELDS)
    )
    return event


def consent_record(
    *,
    contact: Contact,
    decision: ConsentDecision,
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    lookups: _Lookups | None = None,
) -> RecordResult:
    """Append one consent event for a known contact. See the module docstring."""
    now = timezone.now()
    checked = _check(
        decision, api_client=api_client, actor_user=actor_user, lookups=lookups or _Lookups(), now=now
    )
    digest = _request_digest(contact.pk, decision)
    try:
        with transaction.atomic():
            state = _lock_state(contact, checked.purpose)
            replay = _replay(decision.idempotency_key, digest)
            if replay is not None:
                return replay
            event = _append(state, contact, checked, digest=digest, now=now)
    except IntegrityError:
        # The same key was recorded concurrently (under another chain's lock).
        replay = _replay(decision.idempotency_key, digest)
        if replay is None:
            raise
        return replay
    return RecordResult(event=event, created=True)


def _append(
    state: ConsentState, contact: Contact, checked: _Checked, *, digest: str, now: datetime
) -> ConsentEvent:
    """Insert the chain's next event and move the (locked) state; a repeated key raises IntegrityError."""
    event = _next_event(state, contact, checked, digest=digest, now=now)
    event.save(force_insert=True)
    fields, outbox = _advance_state(state, event, checked.purpose)
    if outbox is not None:
        outbox.save(force_insert=True)
        outbox_written_on_commit()
    state.save(update_fields=fields)
    return event


def _lock_state(contact: Contact, purpose: Purpose) -> ConsentState:
    if connection.features.can_return_columns_from_insert:
        return _lock_states([(contact.pk, purpose.pk)])[contact.pk, purpose.pk]
    # Databases that cannot return rows from an upsert (SQLite before 3.35).
    query = ConsentState.objects.select_for_update().filter(contact=contact, purpose=purpose)
    state = query.first()
    if state is None:
        # The chain's first event: make the row to lock. A concurrent first
        # writer's insert is ignored and both then queue on the same row lock.
        ConsentState.objects.bulk_create(
            [ConsentState(contact=contact, purpose=purpose)], ignore_conflicts=True
        )
        state = query.get()
    return state


def _lock_states(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], ConsentState]:
    """Lock the current-state rows of these (contact id, purpose id) chains, making missing ones.

    One statement: `INSERT … ON CONFLICT … DO UPDATE … RETURNING` inserts a chain's first
    row or locks the existing one (as `SELECT … FOR UPDATE` would) and returns it. Rows are
    taken in (contact, purpose) order, so writers that lock several chains queue behind
    each other instead of deadlocking. (On SQLite the whole database is locked anyway.)
    """
    pairs = sorted(set(pairs))
    table = ConsentState._meta.db_table
    columns = ", ".join(f.column for f in ConsentState._meta.concrete_fields)
    updated_at = ConsentState._meta.get_field("updated_at").get_db_prep_value(
        timezone.now(), connection=connection
    )
    rows = ", ".join(["(%s, %s, '', '', 0, %s, %s)"] * len(pairs))
    params: list[Any] = []
    for contact_id, purpose_id in pairs:
        params += [contact_id, purpose_id, chain.GENESIS_HASH, updated_at]
    # Table and column names come from the model; every value is a parameter.
    sql = (
        f"INSERT INTO {table} (contact_id, purpose_id, status, frequency, version, head_hash, updated_at) "  # noqa: S608
        f"VALUES {rows} ON CONFLICT (contact_id, purpose_id) DO UPDATE SET version = {table}.version "
        f"RETURNING {columns}"
    )
    return {(s.contact_id, s.purpose_id): s for s in ConsentState.objects.raw(sql, params)}


def _advance_state(
    state: ConsentState, event: ConsentEvent, purpose: Purpose
) -> tuple[list[str], OutboxEntry | None]:
    """Move the chain head; the current status follows the latest *occurred* decision.

    Changes `state` in memory and returns the fields changed and, when the current
    status or frequency changed, the outbox row to write (the caller saves both).
    """
    state.version = event.version
    state.head_hash = event.hash
    fields = ["version", "head_hash", "updated_at"]
    outbox = None
    is_newest = state.occurred_at is None or event.occurred_at >= state.occurred_at
    if is_newest:
        changed = (state.status, state.frequency) != (event.status, event.frequency)
        state.status = event.status
        state.frequency = event.frequency
        state.event = event
        state.occurred_at = event.occurred_at
        state.refresh_due_at = (
            add_months(event.occurred_at, purpose.validity_months)
            if event.status == ConsentStatus.OPTED_IN and purpose.validity_months
            else None
        )
        fields += ["status", "frequency", "event", "occurred_at", "refresh_due_at"]
        if changed:
            outbox = OutboxEntry(
                contact_id=state.contact_id,
                purpose=purpose,
                event=event,
                priority=(
                    OutboxEntry.Priority.WITHDRAWAL
                    if event.status in WITHDRAWN
                    else OutboxEntry.Priority.OPT_IN
                    if event.status == ConsentStatus.OPTED_IN
                    else OutboxEntry.Priority.OTHER
                ),
            )
    return fields, outbox


def consent_ingest(
    *,
    identity: ContactIdentity,
    decision: ConsentDecision,
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    lookups: _Lookups | None = None,
) -> RecordResult:
    """Resolve the contact and record the decision, all or nothing."""
    lookups = lookups or _Lookups()
    try:
        # The common case, a key never seen: no look-up of the key and no savepoint
        # of its own. The key's unique index refuses a repeat, which lands below.
        with transaction.atomic():
            contact = contact_resolve(identity=identity)
            now = timezone.now()
            checked = _check(decision, api_client=api_client, actor_user=actor_user, lookups=lookups, now=now)
            state = _lock_state(contact, checked.purpose)
            digest = _request_digest(contact.pk, decision)
            return RecordResult(event=_append(state, contact, checked, digest=digest, now=now), created=True)
    except IntegrityError:
        # The key was used before (a replay or a conflict), or concurrently: everything above
        # was rolled back; do it again the careful way, which looks the key up under the lock.
        with transaction.atomic():
            contact = contact_resolve(identity=identity)
            return consent_record(
                contact=contact,
                decision=decision,
                api_client=api_client,
                actor_user=actor_user,
                lookups=lookups,
            )


# A batch commits every this many items: one WAL flush per chunk instead of per
# event, while row locks are held only briefly.
BATCH_COMMIT_EVERY = 100
# How often a chunk's set-based write is started over after a concurrent writer
# took one of its keys, identifiers or chains first, before it goes item by item.
BATCH_SET_BASED_ATTEMPTS = 3

Outcome = RecordResult | ConsentRejected | IdempotencyConflict


def consent_ingest_batch(
    *, items: list[tuple[ContactIdentity, ConsentDecision]], api_client: ApiClient | None
) -> list[Outcome]:
    """Record many decisions; each item stands alone, so one bad item blocks no other.

    Every chunk of `BATCH_COMMIT_EVERY` items is one transaction. Where the database
    can return inserted rows (PostgreSQL, SQLite 3.35+), a chunk is written set-based
    (`_chunk_set_based`: a handful of statements for the whole chunk) with exactly the
    outcome, versions, hashes and states the item-by-item path would give. A chunk that
    path cannot mirror, or that meets a concurrent writer too often, runs item by item.
    """
    lookups = _Lookups()
    set_based = connection.features.can_return_rows_from_bulk_insert
    results: list[Outcome] = []
    for start in range(0, len(items), BATCH_COMMIT_EVERY):
        chunk = items[start : start + BATCH_COMMIT_EVERY]
        outcomes = _chunk_set_based_with_retries(chunk, api_client, lookups) if set_based else None
        if outcomes is None:
            outcomes = _chunk_item_by_item(chunk, api_client, lookups)
        results.extend(outcomes)
    return results


def _chunk_item_by_item(
    chunk: list[tuple[ContactIdentity, ConsentDecision]], api_client: ApiClient | None, lookups: _Lookups
) -> list[Outcome]:
    """Each item in its own savepoint, in one transaction. Should the chunk hit a deadlock
    with a concurrent writer, it rolls back whole and its items run again one transaction
    each (they carry idempotency keys, so nothing doubles)."""

    def one(item: tuple[ContactIdentity, ConsentDecision]) -> Outcome:
        identity, decision = item
        try:
            return consent_ingest(
                identity=identity, decision=decision, api_client=api_client, lookups=lookups
            )
        except (ConsentRejected, IdempotencyConflict) as exc:
            return exc

    try:
        with transaction.atomic():
            return [one(item) for item in chunk]
    except OperationalError:
        return [one(item) for item in chunk]


def _chunk_set_based_with_retries(
    chunk: list[tuple[ContactIdentity, ConsentDecision]], api_client: ApiClient | None, lookups: _Lookups
) -> list[Outcome] | None:
    """The chunk written set-based, or None when it must go item by item."""
    for _attempt in range(BATCH_SET_BASED_ATTEMPTS):
        try:
            with transaction.atomic():
                return _chunk_set_based(chunk, api_client=api_client, lookups=lookups)
        except _ItemByItem:
            return None
        except (IntegrityError, OperationalError) as exc:
            # A concurrent writer inserted one of the chunk's keys or identifiers first (we
            # waited for it to commit), or a deadlock: all rolled back; read again and redo.
            logger.info("Batch chunk met a concurrent writer, starting it again: %s", exc)
            continue
    return None


class _ItemByItem(Exception):
    """The set-based path cannot mirror the item-by-item path exactly for this chunk."""


# contact_resolve's look-ups, strong identifiers first (the order it tries them in).
_STRONG_IDENTIFIERS = ("app_user_id", "email", "zoho_id")
_IDENTIFIERS = (*_STRONG_IDENTIFIERS, "phone")
_CONTACT_FIELDS = ("email", "phone", "app_user_id", "zoho_id", "first_name", "last_name")
# contact_resolve considers at most this many matching contacts.
_RESOLVE_LIMIT = 10


class _ContactIndex:
    """The chunk's contacts by identifier, kept as contact_resolve would find them in the database."""

    def __init__(self, contacts: list[Contact]) -> None:
        self.by: dict[str, dict[str, list[Contact]]] = {name: {} for name in _IDENTIFIERS}
        for contact in contacts:
            self.add(contact)

    def add(self, contact: Contact) -> None:
        for name in _IDENTIFIERS:
            value = getattr(contact, name)
            if value:
                self.by[name].setdefault(value, []).append(contact)

    def change(self, contact: Contact, changes: dict[str, str]) -> None:
        for name, value in changes.items():
            old = getattr(contact, name)
            if name in self.by:
                if old:
                    self.by[name][old].remove(contact)
                self.by[name].setdefault(value, []).append(contact)
            setattr(contact, name, value)

    def resolve(self, identity: ContactIdentity) -> tuple[Contact, dict[str, str]]:
        """contact_resolve in memory: the contact (unsaved if new) and the fields to fill in.

        Raises ConsentRejected where contact_resolve would, and _ItemByItem where the
        database could answer differently (more matches than contact_resolve reads).
        """
        found: list[Contact] = []
        for name in _IDENTIFIERS:
            value = getattr(identity, name)
            for contact in self.by[name].get(value, ()) if value else ():
                if not any(contact is other for other in found):
                    found.append(contact)
        if len(found) > _RESOLVE_LIMIT:
            raise _ItemByItem
        strong = [
            contact
            for contact in found
            if any(
                getattr(identity, name) and getattr(contact, name) == getattr(identity, name)
                for name in _STRONG_IDENTIFIERS
            )
        ]
        if len(strong) > 1:
            raise ConsentRejected(
                "contact",
                "These identifiers belong to different contacts; correct them or ask an admin to merge.",
            )
        if strong:
            contact = strong[0]
        elif len(found) > 1:
            raise ConsentRejected(
                "contact.phone", "This phone number belongs to several contacts; add email or app_user_id."
            )
        elif found:
            contact = found[0]
        else:
            return Contact(**{name: getattr(identity, name) for name in _CONTACT_FIELDS}), {}
        changes = {}
        for name in _CONTACT_FIELDS:
            value = getattr(identity, name)
            if value and getattr(contact, name) != value:
                changes[name] = value
        for name in ("email", "app_user_id"):  # unique: contact_resolve's save would fail
            if name in changes and self.by[name].get(changes[name]):
                raise _ItemByItem
        return contact, changes


@dataclass
class _Planned:
    """An item of the chunk that appends an event."""

    index: int
    contact: Contact
    checked: _Checked
    digest: str | None  # the request digest, known already when the contact exists
    event: ConsentEvent | None = None


def _chunk_set_based(
    chunk: list[tuple[ContactIdentity, ConsentDecision]], *, api_client: ApiClient | None, lookups: _Lookups
) -> list[Outcome]:
    """One chunk of a batch in a few statements, with the item-by-item path's outcome.

    First, without writing, every item is taken through contact_resolve's and
    consent_record's steps in item order, against the chunk's contacts and earlier events
    read in one query each: an identifier error, then a rule error, then a replay or an
    idempotency conflict, else an event to append (a later item sees the contacts an
    earlier one created or filled in, and the events it appends). Then: new contacts in
    one INSERT, filled-in ones in one UPDATE, every affected chain's state row created or
    locked by one `_lock_states`, the events computed in item order (several may fall in
    one chain) and inserted in one INSERT, their outbox rows in one, the states in one
    UPDATE. A unique index refusing a row means a concurrent writer came first: the
    caller rolls back and starts again.
    """
    now = timezone.now()
    outcomes: list[Outcome | None] = [None] * len(chunk)
    identities: list[ContactIdentity | None] = []
    for index, (given, _decision) in enumerate(chunk):
        try:
            identities.append(_normalised_identity(given))
        except ConsentRejected as exc:
            outcomes[index] = exc
            identities.append(None)

    wanted: dict[str, set[str]] = {name: set() for name in _IDENTIFIERS}
    for known in identities:
        for name in _IDENTIFIERS:
            value = getattr(known, name, None)
            if value:
                wanted[name].add(value)
    condition = Q()
    for name, values in wanted.items():
        if values:
            condition |= Q(**{f"{name}__in": values})
    contacts = _ContactIndex(list(Contact.objects.filter(condition)) if condition else [])
    keys = {
        decision.idempotency_key
        for (_, decision), identity in zip(chunk, identities, strict=True)
        if identity
    }
    earlier = {
        event.idempotency_key: event
        for event in ConsentEvent.objects.select_related("contact", "purpose", "policy_version").filter(
            idempotency_key__in=keys
        )
    }

    new_contacts: list[Contact] = []
    filled_in: dict[int, tuple[Contact, set[str]]] = {}  # contact id -> (contact, fields filled in)
    planned: list[_Planned] = []
    # key -> (position in `planned`, request digest with the contact's stand-in reference)
    appended: dict[str, tuple[int, str]] = {}
    # (item index, position in `planned`, replay?) for items answered by an event of this chunk
    answered_by_chunk: list[tuple[int, int, bool]] = []
    stand_ins: dict[int, str] = {}

    def reference(contact: Contact) -> int | str:
        if contact.pk is not None:
            return int(contact.pk)
        return stand_ins.setdefault(id(contact), f"new-{len(stand_ins)}")

    for index, ((_given, decision), normalised) in enumerate(zip(chunk, identities, strict=True)):
        if normalised is None:
            continue
        try:
            contact, changes = contacts.resolve(normalised)
            checked = _check(decision, api_client=api_client, actor_user=None, lookups=lookups, now=now)
        except ConsentRejected as exc:
            outcomes[index] = exc
            continue
        key = decision.idempotency_key
        keep_contact = True
        if key in appended:
            position, digest = appended[key]
            replay = _request_digest(reference(contact), decision) == digest
            answered_by_chunk.append((index, position, replay))
            keep_contact = replay
        elif key in earlier:
            existing = earlier[key]
            if contact.pk is not None and _request_digest(contact.pk, decision) == existing.request_digest:
                outcomes[index] = RecordResult(event=existing, created=False)
            else:
                outcomes[index] = IdempotencyConflict(existing)
                keep_contact = False
        else:
            digest = _request_digest(reference(contact), decision)
            appended[key] = (len(planned), digest)
            final = digest if contact.pk is not None else None
            planned.append(_Planned(index=index, contact=contact, checked=checked, digest=final))
        if not keep_contact:
            continue  # contact_resolve's work is rolled back with the refused item
        if contact.pk is None and not any(contact is other for other in new_contacts):
            new_contacts.append(contact)
            contacts.add(contact)
        if changes:
            contacts.change(contact, changes)
            if contact.pk is not None:
                filled_in.setdefault(contact.pk, (contact, set()))[1].update(changes)

    if new_contacts:
        Contact.objects.bulk_create(new_contacts)
    # Like contact_resolve, write only the fields filled in (another writer may be changing
    # the others): one UPDATE per set of fields, in id order.
    by_fields: dict[tuple[str, ...], list[Contact]] = {}
    for pk in sorted(filled_in):
        contact, names = filled_in[pk]
        contact.updated_at = now
        by_fields.setdefault(tuple(sorted(names)), []).append(contact)
    for names_filled, changed in by_fields.items():
        Contact.objects.bulk_update(changed, [*names_filled, "updated_at"])

    if planned:
        states = _lock_states([(p.contact.pk, p.checked.purpose.pk) for p in planned])
        outbox: list[OutboxEntry] = []
        moved: dict[int, ConsentState] = {}
        for plan in planned:
            state = states[plan.contact.pk, plan.checked.purpose.pk]
            digest = plan.digest or _request_digest(plan.contact.pk, plan.checked.decision)
            plan.event = _next_event(state, plan.contact, plan.checked, digest=digest, now=now)
            _fields, entry = _advance_state(state, plan.event, plan.checked.purpose)
            if entry is not None:
                outbox.append(entry)
            moved[state.pk] = state
        ConsentEvent.objects.bulk_create([plan.event for plan in planned if plan.event is not None])
        if outbox:
            OutboxEntry.objects.bulk_create(outbox)
            outbox_written_on_commit()
        for state in moved.values():
            state.updated_at = now
        _states_save([moved[pk] for pk in sorted(moved)])
        for plan in planned:
            assert plan.event is not None
            outcomes[plan.index] = RecordResult(event=plan.event, created=True)
    for index, position, replay in answered_by_chunk:
        event = planned[position].event
        assert event is not None
        outcomes[index] = RecordResult(event=event, created=False) if replay else IdempotencyConflict(event)

    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


_STATE_FIELDS = (
    "version",
    "head_hash",
    "status",
    "frequency",
    "event",
    "occurred_at",
    "refresh_due_at",
    "updated_at",
)


def _states_save(states: list[ConsentState]) -> None:
    """Write the chains' moved state rows in one `UPDATE … FROM (VALUES …)`.

    (`bulk_update` would build a CASE per row and field: most of the chunk's time.)
    """
    concrete = {f.name: f for f in ConsentState._meta.concrete_fields}
    fields = [concrete[name] for name in ("id", *_STATE_FIELDS)]
    event_field = ConsentState.event.field
    # PostgreSQL types a VALUES column from its literals; say what each one is.
    casts = [f"::{f.db_type(connection)}" if connection.vendor == "postgresql" else "" for f in fields]
    row = "(" + ", ".join(f"%s{cast}" for cast in casts) + ")"
    params: list[Any] = []
    for state in states:
        if event_field.is_cached(state) and state.event is not None:
            state.event_id = state.event.pk  # the event was inserted after it was assigned
        params += [f.get_db_prep_save(getattr(state, f.attname), connection=connection) for f in fields]
    table = ConsentState._meta.db_table
    assignments = ", ".join(f"{f.column} = v.column{n}" for n, f in enumerate(fields, start=1) if n > 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row] * len(states))}) AS v "  # noqa: S608
            f"WHERE {table}.id = v.column1",
            params,
        )


def consent_expire_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Record `expired` for opt-ins whose validity ran out; returns how many.

    Each expiry is an ordinary event from source `system`, keyed on the opt-in it
    ends, so running the job twice expires nothing twice.
    """
    now = now or timezone.now()
    due = (
        ConsentState.objects.filter(status=ConsentStatus.OPTED_IN, refresh_due_at__lte=now)
        .select_related("contact", "purpose")
        .order_by("refresh_due_at")[:limit]
    )
    lookups = _Lookups()
    expired = 0
    for state in due:
        decision = ConsentDecision(
            purpose=state.purpose.code,
            status=ConsentStatus.EXPIRED,
            source=Source.SYSTEM,
            occurred_at=state.refresh_due_at or now,
            idempotency_key=f"expire:{state.event_id}",
            evidence={"opt_in_event": state.event_id, "validity_months": state.purpose.validity_months},
            reason="Consent not refreshed within the purpose's validity.",
        )
        if consent_record(contact=state.contact, decision=decision, lookups=lookups).created:
            expired += 1
    return expired


def suppression_add(
    *, contact: Contact, kind: str, source: str, detail: str = "", evidence: Mapping[str, Any] | None = None
) -> tuple[Suppression, bool]:
    """Record a reason not to mail that is not consent. Returns (suppression, created)."""
    with transaction.atomic():
        existing = Suppression.objects.filter(
            contact=contact, channel=Purpose.Channel.EMAIL, kind=kind, lifted_at__isnull=True
        ).first()
        if existing is not None:
            return existing, False
        suppression = Suppression.objects.create(
            contact=contact, kind=kind, source=source, detail=detail, evidence=dict(evidence or {})
        )
        OutboxEntry.objects.create(contact=contact, priority=OutboxEntry.Priority.WITHDRAWAL)
        outbox_written_on_commit()
        return suppression, True


def api_client_create(*, name: str, sources: list[str]) -> tuple[ApiClient, str]:
    """Create an API client; returns it with its key, which is shown once and stored hashed."""
    unknown = sorted(set(sources) - set(Source.values))
    if unknown:
        raise ConsentRejected("source", f"Unknown source(s): {', '.join(unknown)}.")
    if not sources:
        raise ConsentRejected("source", "Give at least one source the client may write.")
    prefix = secrets.token_hex(4)
    key = f"cd_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(
        name=name, key_prefix=prefix, key_hash=api_key_hash(key), sources=sorted(set(sources))
    )
    return client, key


def api_key_hash(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no guessing to slow down).
    return hashlib.sha256(key.encode()).hexdigest()


def policy_version_publish(*, label: str, effective_at: Any, text: str = "", url: str = "") -> PolicyVersion:
    policy = PolicyVersion(
        label=label, effective_at=effective_at, text=text, url=url, published_at=timezone.now()
    )
    policy.full_clean()
    policy.save()
    return policy


def _safe_high_water_mark() -> int:
    """The highest event id below which every insert has committed.

    Ids are handed out when a row is inserted, not when it commits, so a writer
    that took id 100 may commit after one that took 101. On PostgreSQL a SHARE
    lock waits for every open writer of the table and holds new ones back for
    the one query; on SQLite writers are serialised already.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {ConsentEvent._meta.db_table} IN SHARE MODE")
        last = ConsentEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


def ledger_seal() -> Seal | None:
    """Seal every event since the previous seal, chained to it. None when there is nothing new."""
    high = _safe_high_water_mark()
    with transaction.atomic():
        previous = Seal.objects.select_for_update().order_by("-sequence").first()
        start = previous.last_event_id if previous else 0
        if high <= start:
            return None
        hashes = (
            ConsentEvent.objects.filter(id__gt=start, id__lte=high)
            .order_by("id")
            .values_list("id", "hash")
            .iterator(chunk_size=20000)
        )
        first_id: int | None = None
        count = 0
        digest = hashlib.sha256()
        for event_id, event_hash in hashes:
            if first_id is None:
                first_id = event_id
            count += 1
            digest.update(event_hash.encode())
        created_at = timezone.now()
        prev_hash = previous.hash if previous else chain.GENESIS_HASH
        sequence = (previous.sequence + 1) if previous else 1
        seal = Seal(
            sequence=sequence,
            created_at=created_at,
            first_event_id=first_id,
            last_event_id=high,
            event_count=count,
            events_digest=digest.hexdigest(),
            prev_hash=prev_hash,
        )
        seal.hash = chain.seal_hash(
            sequence=sequence,
            created_at=created_at,
            first_event_id=first_id,
            last_event_id=high,
            event_count=count,
            events_digest=seal.events_digest,
            prev_hash=prev_hash,
        )
        seal.save(force_insert=True)
        transaction.on_commit(lambda: _seal_log_append(seal))
    return seal


def _seal_log_append(seal: Seal) -> None:
    """Copy the seal's hash out of the database (write-once storage in production)."""
    path = settings.LEDGER_SEAL_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{seal.sequence} {seal.hash} {seal.last_event_id} {seal.created_at.isoformat()}\n")
