"""Hash version 3's canonical text is PostgreSQL's own: Python writes a row and a jsonb exactly as
the database does, for any values (compliance/canonical.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from compliance import canonical

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
