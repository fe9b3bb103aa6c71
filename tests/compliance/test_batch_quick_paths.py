"""The batch endpoint's quicker ways to the same answers: its input checked without DRF's calls per
field (QuickInput), its events shown likewise (QuickOutput), its rows sent to PostgreSQL as one
JSON text (`rows_table`), their values prepared without Django's calls per field (`row_maker`)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from django.db import connection
from psycopg import Binary
from rest_framework.exceptions import ValidationError

from compliance.api.serializers import (
    ConsentEventInputSerializer,
    ConsentEventSerializer,
    QuickInput,
    QuickOutput,
)
from compliance.models import (
    ConsentEvent,
    ConsentState,
    Contact,
    EventPersonalData,
    IdentityEvent,
    IdentityPersonalData,
    OutboxEntry,
)
from compliance.services.rows import row_maker, rows_table

BATCH_URL = "/api/v1/consent-events/batch"


def _outcome(validate: Callable[[Any], Any], data: Any) -> tuple[str, Any]:
    try:
        return "valid", validate(data)
    except ValidationError as exc:
        return "invalid", exc.detail


def _bodies(event_body: Callable[..., dict[str, Any]]) -> list[Any]:
    """Plain bodies and each way a field can be odd: missing, null, blank, padded, a number, too
    long, NUL and surrogate characters, non-ASCII text, wrong shapes."""
    plain = event_body(
        status="opted_in", frequency="weekly", evidence={"double_opt_in_confirmed_at": "x"}, reason="r"
    )
    bodies: list[Any] = [plain, event_body(), {**plain, "unknown": 1}, [], None, "text", {}]
    for name, value in plain.items():
        if name == "contact":
            continue
        for odd in (None, "", "   ", f"  {value}  ", 7, 7.5, True, [], {}, "x" * 2001, "a\x00b", "\ud800"):
            bodies.append({**plain, name: odd})
        bodies.append({k: v for k, v in plain.items() if k != name})
    for name in ("email", "phone", "app_user_id", "zoho_id", "first_name", "last_name"):
        for odd in (None, "", "  ", "Zoë Ünal", 42, "y" * 300, "\x00", "\udfff", [], False):
            bodies.append({**plain, "contact": {**plain["contact"], name: odd}})
        bodies.append({**plain, "contact": {k: v for k, v in plain["contact"].items() if k != name}})
    for contact in (None, "ana@example.com", [], {}, {"email": "ana@example.com"}):
        bodies.append({**plain, "contact": contact})
    bodies += [
        {**plain, "occurred_at": "2026-11-20T09:14:03"},  # no time zone
        {**plain, "occurred_at": "2026-11-20T09:14:03+01:00"},
        {**plain, "update_identity": "true", "send_confirmation": 0},
        {**plain, "send_confirmation": False, "update_identity": True},
        {**plain, "evidence": {"nested": {"deep": [1, 2.5, None, "ü"]}}},
    ]
    return bodies


def test_quick_input_gives_what_the_serializer_gives_for_every_body(event_body):
    serializer = ConsentEventInputSerializer()
    quick = QuickInput(serializer)
    assert quick.plan is not None
    for body in _bodies(event_body):
        assert _outcome(quick.run_validation, body) == _outcome(serializer.run_validation, body), body


def test_quick_input_checks_plain_bodies_itself(event_body, monkeypatch):
    serializer = ConsentEventInputSerializer()
    quick = QuickInput(serializer)
    body = event_body(contact={"email": " Ana@Example.com ", "last_name": "Ünal"}, frequency=None)
    expected = serializer.run_validation(body)
    monkeypatch.setattr(serializer, "run_validation", lambda data: pytest.fail("took the long way"))
    assert quick.run_validation(body) == expected


def test_quick_input_leaves_a_serializer_with_rules_of_its_own_to_drf():
    class Checked(ConsentEventInputSerializer):
        def validate_purpose(self, value: str) -> str:
            return value

    assert QuickInput(Checked()).plan is None


def test_a_batch_shows_each_event_as_the_serializer_does(api, event_body):
    first = event_body(idempotency_key="q-1")
    bodies = [
        first,
        event_body(idempotency_key="q-2", ip_address=None, policy_version=None, purpose="profiling"),
        event_body(idempotency_key="q-3", contact={"email": "eve@example.com"}, user_agent=""),
        first,  # a replay
    ]
    response = api.post(BATCH_URL, {"events": bodies}, format="json")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 201, 200]
    serializer = ConsentEventSerializer()
    for result in results:
        event = ConsentEvent.objects.get(pk=result["event"]["id"])
        assert result["event"] == serializer.to_representation(event)


def test_quick_output_shows_what_the_serializer_shows(api, event_body):
    api.post(BATCH_URL, {"events": [event_body(), event_body(ip_address=None)]}, format="json")
    serializer = ConsentEventSerializer()
    quick = QuickOutput(serializer)
    assert quick.plan is not None
    for event in ConsentEvent.objects.all():
        assert quick.to_representation(event) == serializer.to_representation(event)


@pytest.mark.postgres  # the JSON form is PostgreSQL's
@pytest.mark.django_db
def test_rows_table_carries_every_value_exactly():
    rows = [
        (
            1,
            'quote " back \\ slash, comma {brace} ü \u2028',
            datetime(2026, 11, 20, 9, 14, 3, 123456, tzinfo=UTC),
            '{"a": [1, 2.5, null, "\\u00fc"]}',
            ipaddress.ip_address("2001:db8::7"),
            b"\x00\xff\\x",
            True,
            0.1,
        ),
        (
            2**62,
            "",
            datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            "null",
            ipaddress.ip_address("203.0.113.7"),
            Binary(b"\x01\x02"),  # as a BinaryField gives it
            False,
            -1e300,
        ),
        (None, None, None, None, None, None, None, None),
    ]
    types = ["bigint", "varchar(50)", "timestamp with time zone", "jsonb", "inet", "bytea", "boolean"]
    types.append("double precision")
    source, params = rows_table(rows, types)
    assert len(params) == 1  # the JSON text, not an array per column
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT column1, column2, column3, column4::text, column5::text, column6, column7, column8 "
            f"FROM {source}",
            params,
        )
        got = cursor.fetchall()
    assert got[0][:3] == rows[0][:3]
    assert got[0][3] == '{"a": [1, 2.5, null, "ü"]}'
    assert got[0][4] == "2001:db8::7/128"
    assert bytes(got[0][5]) == rows[0][5]
    assert got[0][6:] == (True, 0.1)
    assert got[1][:3] == rows[1][:3]
    assert got[1][3] == "null"  # JSON null, not SQL NULL
    assert got[1][4] == "203.0.113.7/32"
    assert (bytes(got[1][5]), got[1][6], got[1][7]) == (b"\x01\x02", False, -1e300)
    assert got[2] == (None,) * 8


@pytest.mark.postgres  # the JSON form is PostgreSQL's
@pytest.mark.django_db
def test_rows_table_refuses_a_value_longer_than_its_column_instead_of_cutting_it():
    from django.db import DataError

    contact = Contact.objects.create(email="ana@example.com")
    source, params = rows_table([(contact.pk, "+49" + "1" * 30)], ["bigint", "varchar(20)"])
    with pytest.raises(DataError), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE compliance_contact SET phone = v.column2 FROM {source} WHERE id = v.column1",
            params,
        )


@pytest.mark.django_db
def test_row_maker_prepares_values_as_django_does(api, event_body):
    api.post(
        BATCH_URL,
        {"events": [event_body(), event_body(ip_address=None, status="opted_in", evidence={"a": 1})]},
        format="json",
    )
    models = (ConsentEvent, EventPersonalData, Contact, IdentityEvent, IdentityPersonalData)
    for model in (*models, ConsentState, OutboxEntry):
        fields = [f for f in model._meta.local_concrete_fields if f is not model._meta.auto_field]
        row = row_maker(fields, insert=False)
        objs = list(model.objects.all())
        assert objs, model
        for obj in objs:
            expected = tuple(
                f.get_db_prep_save(getattr(obj, f.attname), connection=connection) for f in fields
            )
            assert [_comparable(v) for v in row(obj)] == [_comparable(v) for v in expected]
        if connection.vendor == "postgresql":
            # Every value of the batch path's rows goes in the JSON text, none in arrays.
            _source, params = rows_table(
                [row(o) for o in objs], [f.db_type(connection) or "" for f in fields]
            )
            assert len(params) == 1, model


def _comparable(value: Any) -> Any:
    """Adapters (Jsonb, psycopg's Int8, Inet) compare by what they wrap."""
    return (type(value).__name__, getattr(value, "obj", value))
