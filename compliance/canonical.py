"""Hash version 3's canonical text: PostgreSQL's own text output of a row and of a jsonb value,
written by Python exactly as PostgreSQL writes it.

A consent event of hash version 3 hashes `record_text((prev_hash, *values))`, the text
PostgreSQL gives for `ROW(prev_hash, ...)::text` (its composite-literal output, documented in
"Composite Type Input and Output Syntax"), and its personal values' commitment covers
`jsonb_text(values)`, the text of `values::text` for a jsonb. Both are unambiguous (a record's
fields are quoted wherever a delimiter could be misread; a JSON text is JSON), and PostgreSQL
writes them in C as it reads each row, for a third of the CPU the JSON form of versions 1 and 2
costs it (`to_json` of each column, `to_char` of each instant). Python is still the reference:
`verify_ledger` judges by these functions any row whose hash the database does not confirm.

PostgreSQL writes instants by the session's DateStyle and time zone: the verifier's sessions set
ISO and UTC (`SESSION_SQL`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

# The first hash version whose event hash and commitment cover these texts.
RECORD_VERSION = 3

# What a session must have set for the database's text to be this module's.
DATESTYLE_SQL = "SET DateStyle = 'ISO, MDY'"
SESSION_SQL = (DATESTYLE_SQL, "SET TimeZone = 'UTC'")

# record_out quotes a field that is empty or holds one of these (isspace() in the C locale).
_RECORD_SPECIAL = re.compile('["\\\\(), \t\n\r\v\f]')


def record_text(values: Iterable[Any]) -> str:
    """`ROW(values...)::text`: each field's text output, NULL as nothing, quoted where needed."""
    return "(" + ",".join([_record_field(value) for value in values]) + ")"


def _record_field(value: Any) -> str:
    kind = type(value)
    if value is None:
        return ""
    if kind is int:
        return str(value)  # digits and a sign: never quoted
    text: str
    if kind is str:
        text = value
    elif isinstance(value, datetime):
        text = instant_text(value)
    elif isinstance(value, Mapping | list | tuple):
        text = jsonb_text(value)
    elif isinstance(value, bool):
        text = "t" if value else "f"
    else:
        text = str(value)
    if text and _RECORD_SPECIAL.search(text) is None:
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '""') + '"'


def instant_text(value: datetime) -> str:
    """timestamptz's text in UTC with DateStyle ISO: '2025-01-01 00:00:20.32193+00'."""
    if value.tzinfo is None:
        raise ValueError("an instant without a time zone has no canonical text")
    value = value.astimezone(UTC)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d} "
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "+00"


_json_string = json.JSONEncoder(ensure_ascii=False).encode  # escapes what jsonb's escape_json does


def jsonb_text(value: Any) -> str:
    """The text PostgreSQL gives for a jsonb holding `value` (as Django stores it: json.dumps):
    object keys shortest first, then by their bytes; ", " and ": " between items; numbers as
    numeric writes them, without an exponent."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number_text(value)
    if isinstance(value, Mapping):
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return "{" + ", ".join(f"{_json_string(key)}: {jsonb_text(value[key])}" for key in keys) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(jsonb_text(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _number_text(value: float) -> str:
    # json.dumps writes repr(value) ('1e-05'), which jsonb reads as numeric and writes back
    # in plain notation with the digits it was given ('0.00001'); numeric has no negative zero.
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a JSON number")
    number = Decimal(repr(value))
    text = format(number, "f")
    return text.lstrip("-") if number.is_zero() else text
