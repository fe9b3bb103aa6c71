"""The canonical forms the event hashes cover, written by Python exactly as PostgreSQL writes them.

Hash version 4 (the current rule) hashes `record_bytes(...)`, the bytes PostgreSQL's
`record_send(ROW(prev_hash, ...))` gives: a row's binary form, documented in the protocol's
"Binary Format" sections. Each field is its type's own binary form (an integer's bytes, an
instant as microseconds since 2000, a jsonb as its text), so PostgreSQL writes it for about half
the CPU the text form costs, and no session setting (DateStyle, time zone) enters it. Its
personal values' commitment covers `jsonb_bytes(values)`, `jsonb_send`'s form.

Hash version 3: PostgreSQL's own text output of a row and of a jsonb value.

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

import ipaddress
import json
import re
import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

# The first hash version whose event hash and commitment cover these texts.
RECORD_VERSION = 3
# The first hash version whose event hash and commitment cover the binary forms.
SEND_VERSION = 4

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


# --- Hash version 4: the binary forms (record_send, jsonb_send) ---------------------------------

# The types a hashed field can have, by their PostgreSQL names: each one's type OID (fixed for
# the built-in types, pg_type.dat) and its binary form.
TYPE_OIDS = {
    "int2": 21,
    "int4": 23,
    "int8": 20,
    "text": 25,
    "varchar": 1043,
    "inet": 869,
    "timestamptz": 1184,
    "jsonb": 3802,
}
_INT_FORMATS = {"int2": ">h", "int4": ">i", "int8": ">q"}
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# inet_send's address families (PGSQL_AF_INET, PGSQL_AF_INET6).
_INET_FAMILIES = {4: 2, 6: 3}


def record_bytes(fields: Iterable[tuple[str, Any]]) -> bytes:
    """`record_send(ROW(values...))` of (type name, value) pairs: the number of fields, then per
    field its type's OID, its length (-1 for NULL) and its binary form."""
    fields = list(fields)
    parts = [struct.pack(">i", len(fields))]
    for kind, value in fields:
        if value is None:
            parts.append(struct.pack(">Ii", TYPE_OIDS[kind], -1))
            continue
        data = field_bytes(kind, value)
        parts.append(struct.pack(">Ii", TYPE_OIDS[kind], len(data)))
        parts.append(data)
    return b"".join(parts)


def field_bytes(kind: str, value: Any) -> bytes:
    """One value's binary form as its type's send function writes it."""
    if kind in ("text", "varchar"):
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a text")
        return value.encode()
    if kind in _INT_FORMATS:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{value!r} is not an integer")
        return struct.pack(_INT_FORMATS[kind], value)
    if kind == "timestamptz":
        return struct.pack(">q", instant_microseconds(value))
    if kind == "jsonb":
        return jsonb_bytes(value)
    if kind == "inet":
        return inet_bytes(value)
    raise ValueError(f"no binary form for {kind}")


def instant_microseconds(value: datetime) -> int:
    """timestamptz's binary form: microseconds since 2000-01-01 00:00 UTC."""
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError("an instant without a time zone has no canonical form")
    return (value - _POSTGRES_EPOCH) // _MICROSECOND


# jsonb_send's first byte: the format's version.
JSONB_FORMAT = b"\x01"


def jsonb_bytes(value: Any) -> bytes:
    """jsonb_send: the format's version (1), then the jsonb's text."""
    return JSONB_FORMAT + jsonb_text(value).encode()


def inet_bytes(value: str) -> bytes:
    """inet_send of an address as Django reads an inet ('192.0.2.1', '2001:db8::1', or with a
    netmask: '10.1.2.3/8'): family, netmask bits, 0 (not cidr), the address's length and bytes."""
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an inet") from None
    packed = interface.ip.packed
    family = _INET_FAMILIES[interface.version]
    return struct.pack(">BBBB", family, interface.network.prefixlen, 0, len(packed)) + packed
