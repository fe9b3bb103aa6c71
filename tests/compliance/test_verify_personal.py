"""verify_ledger checks the personal values kept apart (hash version 2) against the keyed
commitments in the chained rows: a changed value is tampering; an erased contact verifies."""

from __future__ import annotations

import hmac
import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models.expressions import RawSQL
from django.utils import timezone

from compliance import canonical, ledger_guard, personal, services
from compliance.hmac_sql import hmac_hex_sql, padded_key_sql
from compliance.models import Contact, EventPersonalData, IdentityEvent, IdentityPersonalData
from compliance.personal_verification import (
    _IDENTITY_FIELDS,
    ShareCommitments,
    _event_text_sql,
    _identity_text_sql,
    identity_side_commitment_sql,
    side_commitment_sql,
)
from compliance.services import ConsentDecision, ContactIdentity
from compliance.verification import ledger_verify

pytestmark = [pytest.mark.ledger, pytest.mark.django_db(transaction=True)]

EMAIL = "ingeborg.halvorsen@example.net"


def behind_the_triggers(sql: str, params: list[Any]) -> None:
    ledger_guard.drop(connection)
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        ledger_guard.install(connection)


def _decision(key: str, **values: Any) -> ConsentDecision:
    return ConsentDecision(
        **{
            "purpose": "sms_marketing",
            "status": "opted_in",
            "source": "web_portal",
            "occurred_at": timezone.now() - timedelta(minutes=5),
            "idempotency_key": key,
            "policy_version": "2026-03",
            **values,
        }
    )


@pytest.fixture
def people(db: None) -> Contact:
    """One person with every kind of personal value (an IPv6 address, non-ASCII text, nested
    evidence), an email change, and others around them so the workers share the ledger."""
    services.policy_version_publish(label="2026-03", effective_at="2026-03-01", text="notice")
    identity = ContactIdentity(email=EMAIL, first_name="Ingeborg", last_name="Hålvorsen", app_user_id="u-ih")
    services.consent_ingest(
        identity=identity,
        decision=_decision(
            "ih-1",
            ip_address="2001:DB8:0:0::7",
            user_agent="Browser “Ø” 1.0",
            evidence={"signed_as": EMAIL, "signature": {"page": "signup", "strokes": [1, 2.5]}},
        ),
    )
    services.consent_ingest(
        identity=ContactIdentity(app_user_id="u-ih", email="ingeborg.new@example.net", update_identity=True),
        decision=_decision("ih-2", purpose="profiling", ip_address="198.51.100.23", user_agent="App/1"),
    )
    for n in range(6):
        services.consent_ingest(
            identity=ContactIdentity(email=f"other{n}@example.org"),
            decision=_decision(f"other-{n}", ip_address=f"203.0.113.{n + 1}", evidence={"note": f"n{n}"}),
        )
    return Contact.objects.get(app_user_id="u-ih")


def verdicts() -> tuple[Any, Any]:
    return ledger_verify(workers=1), ledger_verify(workers=2)


def test_an_intact_ledger_with_personal_data_apart_verifies(people):
    serial, parallel = verdicts()
    assert serial.ok, serial.problem
    assert parallel == serial


@pytest.mark.postgres  # (jsonb)
def test_a_changed_email_in_an_events_personal_data_is_tampering(people):
    row = EventPersonalData.objects.get(event__idempotency_key="ih-1")
    values = {**row.values, "evidence": {**row.values["evidence"], "signed_as": "someone.else@example.net"}}
    behind_the_triggers(
        "UPDATE compliance_eventpersonaldata SET values = %s::jsonb WHERE event_id = %s",
        [json.dumps(values), row.event_id],
    )
    serial, parallel = verdicts()
    assert not serial.ok
    assert serial.problem == (
        f"event {row.event_id}: its personal data kept apart was tampered with "
        "(the values do not match the commitment in the event)"
    )
    assert parallel == serial


@pytest.mark.postgres  # (jsonb)
def test_a_changed_ip_address_is_tampering_too(people):
    row = EventPersonalData.objects.get(event__idempotency_key="ih-2")
    behind_the_triggers(
        "UPDATE compliance_eventpersonaldata SET values = jsonb_set(values, '{ip_address}', '\"198.51.100.99\"')"
        " WHERE event_id = %s",
        [row.event_id],
    )
    serial, parallel = verdicts()
    assert f"event {row.event_id}: its personal data kept apart was tampered with" in serial.problem
    assert parallel == serial


def test_a_changed_email_in_the_identity_history_is_tampering(people):
    first = IdentityEvent.objects.filter(contact=people).order_by("version").first()
    assert first is not None
    behind_the_triggers(
        "UPDATE compliance_identitypersonaldata SET email = %s WHERE identity_event_id = %s",
        ["someone.else@example.net", first.pk],
    )
    serial, parallel = verdicts()
    assert serial.problem == (
        f"identity event {first.pk}: its personal data kept apart was tampered with "
        "(the identifiers do not match the commitment in the identity event)"
    )
    assert parallel == serial


def test_an_erased_contact_verifies_and_values_put_back_do_not(people, admin_user):
    event_id = EventPersonalData.objects.get(event__idempotency_key="ih-1").event_id
    saved = EventPersonalData.objects.get(pk=event_id).values
    services.erasure_request(contact=people, channel="admin", reason="ticket 31", actor_user=admin_user)
    assert not EventPersonalData.objects.filter(event__contact=people).exists()
    assert not IdentityPersonalData.objects.filter(identity_event__contact=people).exists()
    serial, parallel = verdicts()
    assert serial.ok, serial.problem
    assert parallel == serial

    # A backup's values restored beside the erased person's events: not theirs any more.
    EventPersonalData.objects.create(event_id=event_id, values=saved)
    serial, parallel = verdicts()
    assert serial.problem == (
        f"event {event_id}: personal data kept apart for an erased contact: it was put back outside the ledger"
    )
    assert parallel == serial


@pytest.mark.postgres  # (jsonb)
def test_postgresql_writes_the_text_the_commitments_cover(people):
    """The fast path: the database's text of each side row is the canonical JSON Python commits
    to (but nested evidence, which it writes otherwise and Python judges)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT event_id, {_event_text_sql('values')} FROM compliance_eventpersonaldata")
        texts = dict(cursor.fetchall())
    rows = {row.event_id: row.values for row in EventPersonalData.objects.all()}
    assert len(rows) == 8
    nested = EventPersonalData.objects.get(event__idempotency_key="ih-1").event_id
    for event_id, values in rows.items():
        canonical = personal._dumps(values)
        assert (texts[event_id] == canonical) is (event_id != nested), (texts[event_id], canonical)
    identities = IdentityPersonalData.objects.annotate(
        text=RawSQL(_identity_text_sql(f'"{IdentityPersonalData._meta.db_table}"'), ())
    )
    for row in identities:
        values = personal.identity_personal_values(
            {name: getattr(row, name) for name in personal.IDENTITY_PERSONAL_FIELDS}
        )
        assert row.text == personal._dumps(values)


@pytest.mark.postgres  # (jsonb)
@pytest.mark.parametrize(
    "values",
    [{"ip_address": "192.0.2.1", "planted": "x"}, {"planted": "x"}, ["ip_address"], "192.0.2.1"],
)
def test_postgresql_writes_no_text_for_values_it_does_not_know(values):
    """A side row holding another key (or not an object) gets no text: Python judges it."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {_event_text_sql('v')} FROM (SELECT %s::jsonb AS v) AS side", [json.dumps(values)]
        )
        assert cursor.fetchone() == (None,)


@pytest.mark.postgres
@pytest.mark.parametrize("length", [0, 16, 32, 63, 64, 65, 200])
def test_the_databases_hmac_is_hmac_sha256(length):
    """compliance/hmac_sql.py's HMAC, which the quick check and the identity rows' pass compute in
    the database, gives Python's hmac.digest bytes, whatever the secret's length."""
    secret = bytes(range(256))[:length]
    message = json.dumps({"user_agent": "Løvenskiold/1.0"}, ensure_ascii=False)
    sql = hmac_hex_sql(padded_key_sql("s", "36"), padded_key_sql("s", "5c"), "convert_to(m, 'UTF8')")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sql} FROM (SELECT %s::bytea AS s, %s::text AS m) AS given", [secret, message]
        )
        (in_database,) = cursor.fetchone()
    assert in_database == hmac.new(secret, message.encode(), "sha256").hexdigest()


@pytest.mark.parametrize("length", [0, 16, 32, 64, 65, 200])
def test_a_workers_commitments_are_hmac_sha256(length):
    """ShareCommitments (HMAC from SHA-256 states prepared once per contact) agrees with
    hmac.new, whatever the secret's length (longer than a block: hashed first)."""
    secret = bytes(range(256))[:length]
    text = json.dumps({"user_agent": "Løvenskiold/1.0"}, ensure_ascii=False)
    committed = hmac.new(secret, text.encode(), "sha256").hexdigest()
    commitments = ShareCommitments({1: secret, 2: memoryview(secret)})
    for _twice in range(2):
        assert commitments.matches(1, text, committed, 3) is True
        assert commitments.matches(2, text, committed, 3)
    assert not commitments.matches(1, text + " ", committed, 3)
    assert not commitments.matches(1, None, committed, 3)
    assert not commitments.matches(3, text, committed, 3)  # no secret: erased
    # Version 4's is personal.commitment's one keyed SHA-384 of jsonb_send's bytes.
    values = json.loads(text)
    keyed = personal.commitment(secret, values, version=4)
    assert commitments.matches(1, canonical.jsonb_text(values), keyed, 4)
    assert commitments.matches(2, canonical.jsonb_text(values), keyed, 4)
    assert not commitments.matches(1, canonical.jsonb_text(values), committed, 4)
    assert not commitments.matches(1, canonical.jsonb_text(values), keyed, 3)
    assert not commitments.matches(3, canonical.jsonb_text(values), keyed, 4)


@pytest.mark.postgres
@pytest.mark.parametrize("length", [0, 16, 32, 200])
def test_the_databases_version_4_commitment_is_personal_commitment(length):
    """side_commitment_sql, which the quick check computes in the database, gives
    personal.commitment's hex for version 4 (and HMAC-SHA256 of the text for version 3)."""
    secret = bytes(range(256))[:length]
    values = {"user_agent": "Løvenskiold/1.0", "ip_address": "192.0.2.7", "evidence": {"n": [1.5, None]}}
    sql = side_commitment_sql("e", "s")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sql} FROM (SELECT %s::bytea AS s, %s::jsonb AS values) AS side,"
            " (SELECT unnest(ARRAY[3, 4]) AS hash_version) AS e ORDER BY e.hash_version",
            [secret, json.dumps(values)],
        )
        in_database = [row[0] for row in cursor.fetchall()]
    assert in_database == [
        personal.commitment(secret, values, version=3),
        personal.commitment(secret, values, version=4),
    ]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "values",
    [
        {"email": "a@example.org", "first_name": "Ana", "ip_address": "192.0.2.7"},
        {"email": "b@example.org", "phone": "+4915100000002", "app_user_id": "u-9", "last_name": "Łódź"},
        {"phone": "+4915100000003", "ip_address": "2001:db8::7"},
    ],
)
def test_the_databases_identity_commitment_is_personal_identity_commitment(values):
    """identity_side_commitment_sql, which the identity rows' pass computes in the database, gives
    personal.identity_commitment's hex for versions 2 and 4 (blanks and NULLs both absent)."""
    secret = personal.new_secret()
    row = {
        name: values.get(name, "" if name in ("first_name", "last_name") else None)
        for name in _IDENTITY_FIELDS
    }
    sql = identity_side_commitment_sql("e", "p", "s")
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {sql} FROM (SELECT %s::bytea AS s) AS given,"
            " (SELECT %s::varchar AS email, %s::varchar AS phone, %s::varchar AS app_user_id,"
            " %s::varchar AS first_name, %s::varchar AS last_name, %s::inet AS ip_address) AS p,"
            " (SELECT unnest(ARRAY[2, 4]) AS hash_version) AS e ORDER BY e.hash_version",
            [secret, *(row[name] for name in _IDENTITY_FIELDS)],
        )
        in_database = [found for (found,) in cursor.fetchall()]
    assert in_database == [
        personal.identity_commitment(secret, values, version=2),
        personal.identity_commitment(secret, values, version=4),
    ]
