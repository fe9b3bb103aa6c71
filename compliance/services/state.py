"""Current state: the locked ConsentState rows and how an event advances them (the single
path and the batch path share these)."""

from __future__ import annotations

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
from compliance.services.rows import row_maker, rows_table

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
    concrete = {f.attname: f for f in ConsentState._meta.concrete_fields}
    source, params = rows_table(
        pairs, [concrete[name].db_type(connection) or "" for name in ("contact_id", "purpose_id")]
    )
    # Table and column names come from the model; every value is a parameter. (`WHERE true`:
    # SQLite's parser needs it between a SELECT and ON CONFLICT.)
    sql = (
        f"INSERT INTO {table} (contact_id, purpose_id, status, frequency, version, head_hash, updated_at) "  # noqa: S608
        f"SELECT column1, column2, '', '', 0, %s, %s FROM {source} WHERE true ORDER BY column1, column2 "
        f"ON CONFLICT (contact_id, purpose_id) DO UPDATE SET version = {table}.version "
        f"RETURNING {columns}"
    )
    return {
        (s.contact_id, s.purpose_id): s
        for s in ConsentState.objects.raw(sql, [chain.GENESIS_HASH, updated_at, *params])
    }


# What an event moves in its chain's state row (`advance_state`), written by `states_save`.
STATE_FIELDS = (
    "version",
    "head_hash",
    "status",
    "frequency",
    "event",
    "policy_version",
    "occurred_at",
    "refresh_due_at",
    "updated_at",
)


def states_save(states: list[ConsentState]) -> None:
    """Write moved state rows in one `UPDATE … FROM` a table of their new values (`rows_table`).

    (`bulk_update` would build a CASE per row and field: most of a batch chunk's time.)
    """
    concrete = {f.name: f for f in ConsentState._meta.concrete_fields}
    fields = [concrete[name] for name in ("id", *STATE_FIELDS)]
    event_field = ConsentState.event.field
    row = row_maker(fields, insert=False)
    rows = []
    for state in states:
        if event_field.is_cached(state) and state.event is not None:
            state.event_id = state.event.pk  # the event was inserted after it was assigned
        rows.append(row(state))
    source, params = rows_table(rows, [f.db_type(connection) or "" for f in fields])
    table = ConsentState._meta.db_table
    assignments = ", ".join(f"{f.column} = v.column{n}" for n, f in enumerate(fields, start=1) if n > 1)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM {source} WHERE {table}.id = v.column1",  # noqa: S608
            params,
        )


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
