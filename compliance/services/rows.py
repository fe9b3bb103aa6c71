"""Many rows in one statement, from a table of literal rows: the batch path's set-based writes
(`consent_batch`) and the chains' state rows (`state.lock_states`, `state.states_save`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import connection
from django.db.models import Model


def rows_table(rows: list[tuple[Any, ...]], db_types: list[str]) -> tuple[str, list[Any]]:
    """Literal rows as a table `v` to select from, its columns named column1, column2, …

    On PostgreSQL: UNNEST of one typed array per column, a handful of parameters however many
    rows (a VALUES list of 100 rows of 10 columns took 3 times as long to quote, send and plan).
    Elsewhere: a VALUES list.
    """
    if connection.vendor == "postgresql":
        names = ", ".join(f"column{n}" for n in range(1, len(db_types) + 1))
        arrays = ", ".join(f"%s::{db_type}[]" for db_type in db_types)
        return f"UNNEST({arrays}) AS v({names})", [list(column) for column in zip(*rows, strict=True)]
    row = "(" + ", ".join(["%s"] * len(db_types)) + ")"
    return f"(VALUES {', '.join([row] * len(rows))}) AS v", [value for values in rows for value in values]


def rows_insert(objs: Sequence[Model]) -> None:
    """Insert these new rows of one model in one statement and set the ids the database gave them,
    as `bulk_create` does (auto_now_add and auto_now filled in, a foreign key to a row saved since
    it was assigned taken up). On PostgreSQL from UNNEST (`rows_table`), which `bulk_create` does
    not use for a model with a binary column (Contact's secret): 100 new contacts took half the
    time. Elsewhere `bulk_create` (SQLite does not promise RETURNING's order)."""
    if connection.vendor != "postgresql":
        type(objs[0])._default_manager.bulk_create(objs)
        return
    meta = objs[0]._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    rows = []
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="rows_insert")  # type: ignore[attr-defined]
        rows.append(
            tuple(f.get_db_prep_save(f.pre_save(obj, add=True), connection=connection) for f in fields)
        )
    source, params = rows_table(rows, [f.db_type(connection) or "" for f in fields])
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    values = ", ".join(f"column{n}" for n in range(1, len(fields) + 1))
    pk = connection.ops.quote_name(meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {meta.db_table} ({columns}) SELECT {values} FROM {source} RETURNING {pk}",  # noqa: S608
            params,
        )
        ids = [row[0] for row in cursor.fetchall()]
    for obj, obj_id in zip(objs, ids, strict=True):
        obj.pk = obj_id
        obj._state.adding = False
        obj._state.db = connection.alias
