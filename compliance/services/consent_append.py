"""One event's append in ONE statement on PostgreSQL.

The single write path (`consent_record`, `consent_ingest`) writes four rows per event: the event,
its personal values (`EventPersonalData`), its outbox row and its chain's moved state row. Saved
one by one that is four round trips, and on a busy machine each waits its turn in the database
(a one-click unsubscribe spent most of its time so). Here they go as data-modifying CTEs,
`WITH e AS (INSERT … RETURNING id), p AS (INSERT …), o AS (INSERT …), s AS (UPDATE …) SELECT …`,
each part compiled by Django from the model as `save()` writes it, the event's id taken from
`e` by the rows that point at it. SQLite cannot modify data in a CTE: there each row is saved
on its own (`consent._append`).
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import Model, Q
from django.db.models.expressions import RawSQL
from django.db.models.sql import InsertQuery, UpdateQuery

from compliance.models import ConsentEvent, ConsentState, EventPersonalData, OutboxEntry


def _insert(obj: Model, *, returning: bool) -> tuple[str, tuple[Any, ...]]:
    """The INSERT of one new row as its save() writes it (the auto id left to the database)."""
    meta = obj._meta
    query = InsertQuery(type(obj))
    query.insert_values([f for f in meta.local_concrete_fields if f is not meta.auto_field], [obj])
    compiler = query.get_compiler(connection=connection)
    if returning:
        compiler.returning_fields = [meta.pk]
    [(sql, params)] = compiler.as_sql()
    return sql, tuple(params)


def _update(state: ConsentState, fields: list[str], event_id: RawSQL) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE of the state's `fields` as save(update_fields=…) writes it, its event the new one."""
    query = UpdateQuery(ConsentState)
    values: dict[str, Any] = {}
    for name in fields:
        field = ConsentState._meta.get_field(name)
        values[name] = event_id if name == "event" else field.pre_save(state, add=False)  # type: ignore[union-attr]
    query.add_update_values(values)
    query.add_q(Q(pk=state.pk))
    sql, params = query.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


def event_append(
    event: ConsentEvent, *, outbox: OutboxEntry | None, state: ConsentState, fields: list[str]
) -> None:
    """Insert `event`, its personal values (`event.plain_values`, when it has any) and `outbox`,
    and write the (locked) state's `fields`, in one statement (PostgreSQL only); sets their ids.
    A repeated idempotency key raises IntegrityError, as the event's own save would."""
    # Only names from the models go into the SQL text; every value is a parameter.
    event_pk_column, outbox_pk_column = ConsentEvent._meta.pk.column, OutboxEntry._meta.pk.column
    event_id = RawSQL(f"(SELECT {event_pk_column} FROM e)", ())  # noqa: S608, S611
    parts = {"e": _insert(event, returning=True)}
    personal = None
    plain = getattr(event, "plain_values", None)
    if plain:
        personal = EventPersonalData(event_id=event_id, values=plain)
        parts["p"] = _insert(personal, returning=False)
    if outbox is not None:
        outbox.event_id = event_id
        parts["o"] = _insert(outbox, returning=True)
    parts["s"] = _update(state, fields, event_id)
    returned = f"(SELECT {outbox_pk_column} FROM o)" if outbox is not None else "NULL"  # noqa: S608
    sql = "WITH " + ", ".join(f"{name} AS ({part})" for name, (part, _params) in parts.items())
    params = [param for _sql, part_params in parts.values() for param in part_params]
    with connection.cursor() as cursor:
        cursor.execute(f"{sql} SELECT {event_pk_column}, {returned} FROM e", params)  # noqa: S608
        event_pk, outbox_pk = cursor.fetchone()
    event.pk = event_pk
    saved: list[Model] = [event]
    if personal is not None:
        personal.event_id = event_pk
        saved.append(personal)
    if outbox is not None:
        outbox.pk, outbox.event_id = outbox_pk, event_pk
        saved.append(outbox)
    for row in saved:
        row._state.adding = False
        row._state.db = connection.alias
    if "event" in fields:
        state.event_id = event_pk
