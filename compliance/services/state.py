"""Current state: the locked ConsentState rows and how an event advances them (the single
path and the batch path share these)."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.utils import timezone

from compliance import chain
from compliance.models import (
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    OutboxEntry,
    Purpose,
)

WITHDRAWN = frozenset({ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED})


def lock_state(contact: Contact, purpose: Purpose) -> ConsentState:
    if connection.features.can_return_columns_from_insert:
        return lock_states([(contact.pk, purpose.pk)])[contact.pk, purpose.pk]
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


def lock_states(pairs: list[tuple[int, int]]) -> dict[tuple[int, int], ConsentState]:
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


def advance_state(
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
        state.policy_version = event.policy_version
        state.occurred_at = event.occurred_at
        state.refresh_due_at = (
            purpose.refresh_due_at(event.occurred_at) if event.status == ConsentStatus.OPTED_IN else None
        )
        fields += ["status", "frequency", "event", "policy_version", "occurred_at", "refresh_due_at"]
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
