"""Many decisions at once: `consent_ingest_batch`, set-based per chunk of items.

A chunk is written in a handful of statements (`_chunk_set_based`) with exactly the outcome
and ledger that recording its items one by one with `consent_ingest` gives
(tests/compliance/test_ingest_batch.py holds the two side by side).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from compliance.models import (
    GENESIS_HASH,
    ApiClient,
    ConsentEvent,
    ConsentState,
    Contact,
    IdentityEvent,
    OutboxEntry,
    Source,
)
from compliance.outbox import outbox_written_on_commit
from compliance.services.consent import (
    Checked,
    ConsentDecision,
    Lookups,
    RecordResult,
    consent_check,
    consent_ingest,
    consent_input_check,
    next_event,
    personal_data_rows,
    request_digest,
)
from compliance.services.contacts import (
    IDENTIFIERS,
    RESOLVE_LIMIT,
    ContactIdentity,
    contact_changes,
    contact_choose,
    contact_new,
    contacts_holding,
    erased_refusal,
    identifiers_lock,
    identifiers_unseen,
    identity_normalise,
)
from compliance.services.erased_identifiers import erased_suppressions_add
from compliance.services.errors import ConsentRejected, IdempotencyConflict
from compliance.services.identity import (
    IdentityContext,
    decision_identity_context,
    identity_event_next,
    identity_events_save,
    identity_heads,
    identity_snapshot,
)
from compliance.services.rows import rows_insert
from compliance.services.state import advance_state, lock_states, states_save

logger = logging.getLogger(__name__)


# A batch commits every this many items: one WAL flush per chunk instead of per
# event, while row locks are held only briefly.
BATCH_COMMIT_EVERY = 100
# How often a chunk's set-based write is started over after a concurrent writer
# took one of its keys, identifiers or chains first, before it goes item by item.
BATCH_SET_BASED_ATTEMPTS = 3

Outcome = RecordResult | ConsentRejected | IdempotencyConflict


def consent_ingest_batch(
    *,
    items: list[tuple[ContactIdentity, ConsentDecision]],
    api_client: ApiClient | None,
    lookups: Lookups | None = None,
) -> list[Outcome]:
    """Record many decisions; each item stands alone, so one bad item blocks no other.

    Every chunk of `BATCH_COMMIT_EVERY` items is one transaction. Where the database
    can return inserted rows (PostgreSQL, SQLite 3.35+), a chunk is written set-based
    (`_chunk_set_based`: a handful of statements for the whole chunk) with exactly the
    outcome, versions, hashes and states the item-by-item path would give. A chunk that
    path cannot mirror, or that meets a concurrent writer too often, runs item by item.
    """
    # Input no event may hold fails alone, before any chunk reads the database.
    refused: dict[int, ConsentRejected] = {}
    for index, (identity, decision) in enumerate(items):
        try:
            consent_input_check(identity=identity, decision=decision)
        except ConsentRejected as exc:
            refused[index] = exc
    acceptable = [item for index, item in enumerate(items) if index not in refused]
    lookups = lookups or Lookups()
    set_based = connection.features.can_return_rows_from_bulk_insert
    results: list[Outcome] = []
    for start in range(0, len(acceptable), BATCH_COMMIT_EVERY):
        chunk = acceptable[start : start + BATCH_COMMIT_EVERY]
        outcomes = _chunk_set_based_with_retries(chunk, api_client, lookups) if set_based else None
        if outcomes is None:
            outcomes = _chunk_item_by_item(chunk, api_client, lookups)
        results.extend(outcomes)
    if not refused:
        return results
    recorded = iter(results)
    return [refused[index] if index in refused else next(recorded) for index in range(len(items))]


def _chunk_item_by_item(
    chunk: list[tuple[ContactIdentity, ConsentDecision]], api_client: ApiClient | None, lookups: Lookups
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
    chunk: list[tuple[ContactIdentity, ConsentDecision]], api_client: ApiClient | None, lookups: Lookups
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


class _ContactIndex:
    """The chunk's contacts by identifier, kept as contact_resolve would find them in the database."""

    def __init__(self, contacts: list[Contact]) -> None:
        self.by: dict[str, dict[str, list[Contact]]] = {name: {} for name in IDENTIFIERS}
        for contact in contacts:
            self.add(contact)

    def add(self, contact: Contact) -> None:
        for name in IDENTIFIERS:
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

    def resolve(self, identity: ContactIdentity, *, may_update: bool) -> tuple[Contact, dict[str, str], str]:
        """contact_resolve in memory, by its rules: the contact (unsaved if new), the fields
        to fill in or change and the kind of identity event that records them.

        Raises ConsentRejected where contact_resolve would, and _ItemByItem where the
        database could answer differently (more matches than contact_resolve reads).
        """
        found: list[Contact] = []
        for name in IDENTIFIERS:
            value = getattr(identity, name)
            for contact in self.by[name].get(value, ()) if value else ():
                if not any(contact is other for other in found):
                    found.append(contact)
        if len(found) > RESOLVE_LIMIT:
            raise _ItemByItem
        chosen = contact_choose(found=found, identity=identity)
        if chosen is None:
            return contact_new(identity), {}, IdentityEvent.Kind.CREATED
        changes, kind = contact_changes(contact=chosen, identity=identity, may_update=may_update)
        for name in ("email", "app_user_id"):  # unique: contact_resolve's save would fail
            if name in changes and self.by[name].get(changes[name]):
                raise _ItemByItem
        return chosen, changes, kind


@dataclass
class _IdentityChange:
    """An identity event the chunk appends: the contact's identifiers after one item."""

    contact: Contact
    kind: str
    snapshot: dict[str, str | None]
    decision: ConsentDecision
    version: int = 0


@dataclass
class _Planned:
    """An item of the chunk that appends an event."""

    index: int
    contact: Contact
    checked: Checked
    digest: str | None  # the request digest, known already when the contact exists
    event: ConsentEvent | None = None


def _chunk_set_based(
    chunk: list[tuple[ContactIdentity, ConsentDecision]], *, api_client: ApiClient | None, lookups: Lookups
) -> list[Outcome]:
    """One chunk of a batch in a few statements, with the item-by-item path's outcome.

    First, without writing, every item is taken through contact_resolve's and
    consent_record's steps in item order, against the chunk's contacts and earlier events
    read in one query each: an identifier error, then a rule error, then a replay or an
    idempotency conflict, else an event to append (a later item sees the contacts an
    earlier one created or filled in, and the events it appends). Then: new contacts in
    one INSERT, filled-in ones in one UPDATE, every affected chain's state row created or
    locked by one `lock_states`, the events computed in item order (several may fall in
    one chain) and inserted in one INSERT, their outbox rows in one, the states in one
    UPDATE. A unique index refusing a row means a concurrent writer came first: the
    caller rolls back and starts again.
    """
    now = timezone.now()
    outcomes: list[Outcome | None] = [None] * len(chunk)
    identities: list[ContactIdentity | None] = []
    for index, (given, _decision) in enumerate(chunk):
        try:
            identities.append(identity_normalise(given))
        except ConsentRejected as exc:
            outcomes[index] = exc
            identities.append(None)

    wanted: dict[str, set[str]] = {name: set() for name in IDENTIFIERS}
    for known in identities:
        for name in IDENTIFIERS:
            value = getattr(known, name, None)
            if value:
                wanted[name].add(value)
    found = list(contacts_holding(wanted))
    # Identifiers nobody has yet, which this chunk may give a new contact or fill in: another
    # writer that gives them too waits for this one's commit, then reads what it wrote.
    unseen = identifiers_unseen(wanted, found)
    if identifiers_lock(unseen):
        read = {contact.pk for contact in found}
        found += [contact for contact in contacts_holding(unseen) if contact.pk not in read]
    contacts = _ContactIndex(found)
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
    identity_changes: list[_IdentityChange] = []  # in item order, as contact_resolve appends them
    may_update = IdentityContext(api_client=api_client).may_update()
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
            contact, changes, kind = contacts.resolve(normalised, may_update=may_update)
            if contact.erased_at is not None:  # found by the Zoho id an erased contact keeps
                raise ConsentRejected("contact", erased_refusal(contact))
            checked = consent_check(
                decision, api_client=api_client, actor_user=None, lookups=lookups, now=now
            )
        except ConsentRejected as exc:
            outcomes[index] = exc
            continue
        key = decision.idempotency_key
        keep_contact = True
        if key in appended:
            position, digest = appended[key]
            replay = request_digest(reference(contact), decision, contact.secret) == digest
            answered_by_chunk.append((index, position, replay))
            keep_contact = replay
        elif key in earlier:
            existing = earlier[key]
            if (
                contact.pk is not None
                and request_digest(contact.pk, decision, contact.secret) == existing.request_digest
            ):
                outcomes[index] = RecordResult(event=existing, created=False)
            else:
                outcomes[index] = IdempotencyConflict(existing)
                keep_contact = False
        else:
            digest = request_digest(reference(contact), decision, contact.secret)
            appended[key] = (len(planned), digest)
            final = digest if contact.pk is not None else None
            planned.append(_Planned(index=index, contact=contact, checked=checked, digest=final))
        if not keep_contact:
            continue  # contact_resolve's work is rolled back with the refused item
        if contact.pk is None and not any(contact is other for other in new_contacts):
            new_contacts.append(contact)
            contacts.add(contact)
            identity_changes.append(
                _IdentityChange(contact, IdentityEvent.Kind.CREATED, identity_snapshot(contact), decision)
            )
        if changes:
            contacts.change(contact, changes)
            identity_changes.append(_IdentityChange(contact, kind, identity_snapshot(contact), decision))
            if contact.pk is not None:
                filled_in.setdefault(contact.pk, (contact, {"identity_version"}))[1].update(changes)

    # Each contact's identity events take the versions after the one it was read with
    # (a new contact's from 1), and the contact row the last of them.
    for change in identity_changes:
        if change.kind == IdentityEvent.Kind.CREATED:
            change.contact.identity_version = 0
        change.contact.identity_version += 1
        change.version = change.contact.identity_version
    if new_contacts:
        rows_insert(new_contacts)
        # An erased person's address or number: held by "do not contact" (one query).
        erased_suppressions_add(new_contacts, source=Source.SYSTEM)
    # Like contact_resolve, write only the fields filled in (another writer may be changing
    # the others): one UPDATE per set of fields, in id order.
    by_fields: dict[tuple[str, ...], list[Contact]] = {}
    for pk in sorted(filled_in):
        contact, names = filled_in[pk]
        contact.updated_at = now
        by_fields.setdefault(tuple(sorted(names)), []).append(contact)
    for names_filled, changed in by_fields.items():
        Contact.objects.bulk_update(changed, [*names_filled, "updated_at"])
    # A contact that took an erased person's address or number is held too (as identity_append does).
    taking = [contact for contact, names in filled_in.values() if names & {"email", "phone"}]
    if taking:
        erased_suppressions_add(taking, source=Source.SYSTEM)
    if identity_changes:
        _identity_events_insert(identity_changes, api_client=api_client, now=now)

    if planned:
        states = lock_states([(p.contact.pk, p.checked.purpose.pk) for p in planned])
        outbox: list[OutboxEntry] = []
        moved: dict[int, ConsentState] = {}
        for plan in planned:
            state = states[plan.contact.pk, plan.checked.purpose.pk]
            digest = plan.digest or request_digest(
                plan.contact.pk, plan.checked.decision, plan.contact.secret
            )
            plan.event = next_event(state, plan.contact, plan.checked, digest=digest, now=now)
            _fields, entry = advance_state(state, plan.event, plan.checked.purpose)
            if entry is not None:
                outbox.append(entry)
            moved[state.pk] = state
        inserted = [plan.event for plan in planned if plan.event is not None]
        rows_insert(inserted)
        personal_rows = personal_data_rows(inserted)
        if personal_rows:
            rows_insert(personal_rows)
        if outbox:
            rows_insert(outbox)
            outbox_written_on_commit()
        for state in moved.values():
            state.updated_at = now
        states_save([moved[pk] for pk in sorted(moved)])
        for plan in planned:
            assert plan.event is not None
            outcomes[plan.index] = RecordResult(event=plan.event, created=True)
    for index, position, replay in answered_by_chunk:
        event = planned[position].event
        assert event is not None
        outcomes[index] = RecordResult(event=event, created=False) if replay else IdempotencyConflict(event)

    assert all(outcome is not None for outcome in outcomes)
    return [outcome for outcome in outcomes if outcome is not None]


def _identity_events_insert(
    changes: list[_IdentityChange], *, api_client: ApiClient | None, now: datetime
) -> None:
    """The chunk's identity events, chained per contact after its newest stored one, in one INSERT.
    A concurrent change of one of these contacts makes a (contact, version) collide:
    IntegrityError, and the chunk starts again."""
    heads = identity_heads(c.contact.pk for c in changes if c.version > 1)
    events = []
    for change in changes:
        prev_hash = GENESIS_HASH if change.version == 1 else heads[change.contact.pk]
        event = identity_event_next(
            change.contact,
            kind=change.kind,
            version=change.version,
            prev_hash=prev_hash,
            context=decision_identity_context(change.decision, api_client=api_client, actor_user=None),
            now=now,
            snapshot=change.snapshot,
        )
        heads[change.contact.pk] = event.hash
        events.append(event)
    identity_events_save(events)
