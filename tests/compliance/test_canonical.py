"""The hash versions' canonical forms are PostgreSQL's own: Python writes a row and a jsonb exactly
as the database does, as text (version 3) and in binary (version 4), for any values
(compliance/canonical.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection, transaction
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from compliance import canonical, chain, personal
from compliance.models import ConsentEvent, IdentityEvent, IdentityPersonalData

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.ledger]

# What PostgreSQL's text and jsonb can hold: no NUL character, no lone surrogate.
texts = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)
instants = st.datetimes(
    min_value=datetime(1000, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9998, 12, 30)).map(
    lambda value: value.replace(tzinfo=timezone(timedelta(hours=5, minutes=30)))
)


def database_text(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        for statement in canonical.SESSION_SQL:
            cursor.execute(statement)
        cursor.execute(sql, params)
        (text,) = cursor.fetchone()
    return text


@hypothesis_settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_a_jsonb_is_written_as_postgresql_writes_it(value):
    assert canonical.jsonb_text(value) == database_text("SELECT (%s::jsonb)::text", [json.dumps(value)])


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    text=texts,
    number=st.integers(min_value=-(2**62), max_value=2**62),
    instant=instants,
    evidence=st.dictionaries(texts, json_values, max_size=3),
    missing=st.none(),
)
def test_a_row_is_written_as_postgresql_writes_it(text, number, instant, evidence, missing):
    values = (text, number, instant, evidence, missing, "")
    expected = database_text(
        "SELECT ROW(%s::text, %s::bigint, %s::timestamptz, %s::jsonb, %s::text, %s::text)::text",
        [text, number, instant, json.dumps(evidence), missing, ""],
    )
    assert canonical.record_text(values) == expected


def test_the_texts_it_writes_tell_different_values_apart():
    # A field's quoting keeps a comma, a quote or a parenthesis inside one field, and tells an
    # empty text from no value.
    assert canonical.record_text(["a,b"]) != canonical.record_text(["a", "b"])
    assert canonical.record_text([""]) == '("")' and canonical.record_text([None]) == "()"
    assert canonical.record_text(['say "x" (y)\\']) == '("say ""x"" (y)\\\\")'
    assert (
        canonical.jsonb_text({"bb": 1, "a": [1.5e-7, -0.0, 10**20]})
        == '{"a": [0.00000015, 0.0, 100000000000000000000], "bb": 1}'
    )
    assert canonical.instant_text(
        datetime(2026, 3, 1, 11, 0, 0, 120000, tzinfo=timezone(timedelta(hours=1)))
    ) == ("2026-03-01 10:00:00.12+00")
    with pytest.raises(ValueError):
        canonical.instant_text(datetime(2026, 3, 1))  # no time zone: no canonical text


def database_bytes(sql: str, params: list) -> bytes:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        (data,) = cursor.fetchone()
    return bytes(data)


addresses = st.ip_addresses().map(str) | st.builds(
    lambda address, bits: f"{address}/{bits}", st.ip_addresses(v=4), st.integers(min_value=0, max_value=32)
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    text=texts,
    small=st.integers(min_value=-(2**15), max_value=2**15 - 1),
    number=st.integers(min_value=-(2**31), max_value=2**31 - 1),
    big=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    instant=instants,
    # None is SQL's NULL here, as a field's value (Django reads a JSON null as None too; the
    # events' evidence is NOT NULL and always an object).
    value=json_values.filter(lambda value: value is not None),
    address=addresses,
    missing=st.none(),
)
def test_a_rows_binary_form_is_written_as_postgresql_sends_it(
    text, small, number, big, instant, value, address, missing
):
    # Django reads an inet as inet_out writes it: the address as PostgreSQL stores it.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT inet_out(%s::inet)::text", [address])
        (address,) = cursor.fetchone()
    fields = [
        ("varchar", text),
        ("int2", small),
        ("int4", number),
        ("int8", big),
        ("timestamptz", instant),
        ("jsonb", value),
        ("inet", address),
        ("text", missing),
        ("varchar", ""),
    ]
    expected = database_bytes(
        # The integers in parentheses: a negative literal's minus would apply after the cast.
        "SELECT record_send(ROW(%s::varchar, (%s)::int2, (%s)::int4, (%s)::int8, %s::timestamptz, %s::jsonb,"
        " %s::inet, %s::text, %s::varchar))",
        [text, small, number, big, instant, json.dumps(value), address, missing, ""],
    )
    assert canonical.record_bytes(fields) == expected
    assert canonical.jsonb_bytes(value) == database_bytes("SELECT jsonb_send(%s::jsonb)", [json.dumps(value)])


@pytest.mark.parametrize(
    ("model", "fields", "types"),
    [
        (ConsentEvent, ("prev_hash", *chain.EVENT_HASHED_FIELDS_V4), chain.EVENT_FIELD_TYPES_V4),
        (IdentityEvent, ("prev_hash", *chain.IDENTITY_HASHED_FIELDS_V4), chain.IDENTITY_FIELD_TYPES_V4),
        (IdentityPersonalData, personal.IDENTITY_PERSONAL_FIELDS, personal.IDENTITY_PERSONAL_TYPES),
    ],
)
def test_version_4_names_each_field_by_its_columns_type(model, fields, types):
    names = [model._meta.get_field(name).column for name in fields]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [model._meta.db_table],
        )
        oids = dict(cursor.fetchall())
    assert [oids[name] for name in names] == [canonical.TYPE_OIDS[kind] for kind in types]


def test_the_binary_form_tells_values_apart_and_refuses_what_it_cannot_write():
    assert canonical.record_bytes([("text", "ab"), ("text", "")]) != canonical.record_bytes(
        [("text", "a"), ("text", "b")]
    )
    assert canonical.record_bytes([("text", "")]) != canonical.record_bytes([("text", None)])
    # 2000-01-01 UTC is zero; an hour later, 3.6e9 microseconds.
    assert canonical.instant_microseconds(datetime(2000, 1, 1, 1, tzinfo=UTC)) == 3_600_000_000
    with pytest.raises(ValueError):
        canonical.field_bytes("timestamptz", datetime(2026, 3, 1))  # no time zone
    with pytest.raises(ValueError):
        canonical.field_bytes("inet", "not an address")
    with pytest.raises(ValueError):
        canonical.field_bytes("int4", "7")
