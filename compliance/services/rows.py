"""Many rows in one statement, from a table of literal rows: the batch path's set-based writes
(`consent_batch`) and the chains' state rows (`state.lock_states`, `state.states_save`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from functools import cache
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import (
    AutoField,
    CharField,
    DateTimeField,
    Field,
    ForeignKey,
    IntegerField,
    Model,
    TextField,
)
from psycopg import Binary
from psycopg.types.json import Jsonb


def rows_table(rows: list[tuple[Any, ...]], db_types: list[str]) -> tuple[str, list[Any]]:
    """Literal rows as a table `v` to select from, its columns named column1, column2, …

    On PostgreSQL: the rows as one JSON array of arrays (`_json_rows`), each column cast from its
    text to its type (`(r->>0)::bigint`): one parameter however many rows. (A VALUES list of 100
    rows of 10 columns took 3 times as long to quote, send and plan as UNNEST of one typed array
    per column; psycopg quotes such arrays element by element in Python, a fifth of a batch's
    Python time, where `json.dumps` is C.) Rows holding a value `_json_value` does not know go as
    those arrays. Elsewhere: a VALUES list.
    """
    if connection.vendor == "postgresql":
        try:
            text = _json_rows(rows)
        except (TypeError, ValueError):
            names = ", ".join(f"column{n}" for n in range(1, len(db_types) + 1))
            arrays = ", ".join(f"%s::{_unsized(db_type)}[]" for db_type in db_types)
            return f"UNNEST({arrays}) AS v({names})", [list(column) for column in zip(*rows, strict=True)]
        columns = ", ".join(
            f"(r->>{n})::{_unsized(db_type)} AS column{n + 1}" for n, db_type in enumerate(db_types)
        )
        # Types come from the model's fields; every value is in the one parameter.
        return f"(SELECT {columns} FROM jsonb_array_elements(%s::jsonb) AS r) AS v", [text]  # noqa: S608
    row = "(" + ", ".join(["%s"] * len(db_types)) + ")"
    return f"(VALUES {', '.join([row] * len(rows))}) AS v", [value for values in rows for value in values]


def _unsized(db_type: str) -> str:
    """`varchar(20)` as `varchar`: a cast to a length cuts a longer value off without a word,
    the column refuses it (as `bulk_create` does, for the same reason)."""
    return db_type.split("(")[0]


def _json_value(value: Any) -> Any:
    """A value psycopg would send, as JSON holding its text form (`json.dumps`'s `default`):
    `->>` gives that text to the column type's input function."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Jsonb):
        return (value.dumps or json.dumps)(value.obj)  # a string: `->>` gives the JSON text
    if isinstance(value, IPv4Address | IPv6Address):
        return str(value)
    if isinstance(value, Binary):  # a BinaryField's value (Contact.secret)
        value = value.obj
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    raise TypeError(f"{type(value).__name__} is not sent as JSON here")


def _json_rows(rows: list[tuple[Any, ...]]) -> str:
    """The rows as a JSON array of arrays: TypeError for a value `_json_value` does not know,
    ValueError for a float JSON has no text for (NaN, infinity)."""
    return json.dumps(rows, default=_json_value, ensure_ascii=False, allow_nan=False)


@cache
def _plain_types(field: Field[Any, Any]) -> tuple[type, ...]:
    """The value types `field.get_db_prep_save` hands to PostgreSQL (psycopg) unchanged: None or
    a str for a text column, None or an aware datetime for a timestamp one, None or an int for a
    foreign key to an id. Only for the field classes whose methods are Django's own: any other
    is prepared the long way."""
    kind = type(field)
    if kind.get_db_prep_save is ForeignKey.get_db_prep_save and kind.pre_save is Field.pre_save:
        # A foreign key to an auto-increment id: the id as it is (`validate_autopk_value` is
        # PostgreSQL's no-op, IntegerField.get_prep_value's int() of an int the same int).
        target = type(field.target_field)  # type: ignore[attr-defined]
        plain_id = (
            target.get_db_prep_save is Field.get_db_prep_save
            and target.get_db_prep_value is AutoField.get_db_prep_value  # AutoFieldMixin's
            and target.get_prep_value is IntegerField.get_prep_value
            and type(connection.ops).validate_autopk_value is BaseDatabaseOperations.validate_autopk_value
        )
        return (type(None), int) if plain_id else ()
    if kind.get_db_prep_save is not Field.get_db_prep_save or kind.pre_save not in (
        Field.pre_save,
        DateTimeField.pre_save,
    ):
        return ()
    methods = (kind.get_prep_value, kind.to_python, kind.get_db_prep_value)
    if methods in (
        (CharField.get_prep_value, CharField.to_python, Field.get_db_prep_value),
        (TextField.get_prep_value, TextField.to_python, Field.get_db_prep_value),
    ):
        return (type(None), str)
    if methods == (DateTimeField.get_prep_value, DateTimeField.to_python, DateTimeField.get_db_prep_value):
        return (type(None), datetime)  # a naive one is made aware the long way (see row_maker)
    return ()


def row_maker(fields: list[Field[Any, Any]], *, insert: bool) -> Callable[[Model], tuple[Any, ...]]:
    """A function giving an instance's values of `fields` as `get_db_prep_save` gives them (of
    `pre_save(obj, add=True)`'s value when `insert`, else of the attribute's), in a fraction of the
    calls on PostgreSQL: a batch chunk prepares some 3,000 values, the long way five calls each.
    The values of `_plain_types` pass as they are."""
    db = connections[DEFAULT_DB_ALIAS]  # `connection` itself, not its proxy: a look-up per use
    prepared = [
        (
            f,
            f.attname,
            _plain_types(f) if db.vendor == "postgresql" else (),
            insert and type(f).pre_save is not Field.pre_save,
        )
        for f in fields
    ]

    def row(obj: Model) -> tuple[Any, ...]:
        values = []
        for field, attname, plain, pre_save in prepared:
            value = field.pre_save(obj, True) if pre_save else getattr(obj, attname)
            if type(value) not in plain or (type(value) is datetime and value.utcoffset() is None):
                value = field.get_db_prep_save(value, connection=db)
            values.append(value)
        return tuple(values)

    return row


def rows_insert(objs: Sequence[Model]) -> None:
    """Insert these new rows of one model in one statement and set the ids the database gave them,
    as `bulk_create` does (auto_now_add and auto_now filled in, a foreign key to a row saved since
    it was assigned taken up). On PostgreSQL from `rows_table`, its values prepared by `row_maker`:
    `bulk_create` prepares each value in five calls and psycopg quotes its arrays in Python (its
    UNNEST is not used at all for a model with a binary column, Contact's secret: 100 new contacts
    took twice as long). Elsewhere `bulk_create` (SQLite does not promise RETURNING's order)."""
    if connection.vendor != "postgresql":
        type(objs[0])._default_manager.bulk_create(objs)
        return
    meta = objs[0]._meta
    fields = [f for f in meta.local_concrete_fields if f is not meta.auto_field]
    row = row_maker(fields, insert=True)
    rows = []
    for obj in objs:
        obj._prepare_related_fields_for_save(operation_name="rows_insert")  # type: ignore[attr-defined]
        rows.append(row(obj))
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
