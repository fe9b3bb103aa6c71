"""Personal values apart from the chains (hash version 2): the events hold keyed commitments, the
side tables the values; the ledger verifies with or without them, and old (version 1) rows still
verify by their own rule."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from compliance import (
    canonical,
    chain,
    identity_verification,
    personal,
    personal_verification,
    services,
)
from compliance.models import (
    ConsentEvent,
    ConsentState,
    Contact,
    EventPersonalData,
    IdentityEvent,
    IdentityPersonalData,
)
from compliance.services import ContactIdentity
from compliance.services.consent import Lookups, consent_check, next_event
from compliance.services.state import lock_states
from compliance.verification import ledger_verify

pytestmark = pytest.mark.django_db

EMAIL = "zebediah.quux@example.org"
IP = "198.51.100.213"
AGENT = "QuuxBrowser/9.9 (Zebediah)"
NAME = "Zebediah"


def _raw_rows(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")
        return json.dumps(cursor.fetchall(), default=str)


def _record(decide, **overrides):
    return services.consent_ingest(
        identity=ContactIdentity(email=EMAIL, first_name=NAME),
        decision=decide(ip_address=IP, user_agent=AGENT, evidence={"note": f"asked by {NAME}"}, **overrides),
    ).event


def test_events_hold_commitments_and_the_side_tables_the_values(decide):
    event = _record(decide)
    contact = Contact.objects.get()

    # The insert-only rows hold none of the person's values...
    for table in (ConsentEvent._meta.db_table, IdentityEvent._meta.db_table):
        rows = _raw_rows(table)
        for value in (EMAIL, IP, AGENT, NAME):
            assert value not in rows, (table, value)
    # ...but a commitment to them under the contact's own secret.
    stored = ConsentEvent.objects.select_related("personal").get(pk=event.pk)
    assert stored.personal.values == {
        "ip_address": IP,
        "user_agent": AGENT,
        "evidence": {"note": f"asked by {NAME}"},
    }
    assert stored.personal_hash == personal.commitment(contact.secret, stored.personal.values, version=4)
    # Hash version 4's commitment, written out: SHA-384 of the secret then jsonb_send's bytes
    # (its format's version, 1, then the jsonb's text), the first 32 bytes.
    jsonb_send = b"\x01" + canonical.jsonb_text(stored.personal.values).encode()
    assert stored.personal_hash == hashlib.sha384(bytes(contact.secret) + jsonb_send).hexdigest()[:64]
    assert (stored.shown_ip_address, stored.shown_user_agent) == (IP, AGENT)
    identity = IdentityEvent.objects.select_related("personal").get()
    assert (identity.shown_email, identity.shown_first_name) == (EMAIL, NAME)
    # (The IP address the identifiers came from is the person's too.)
    assert identity.personal_hash == personal.identity_commitment(
        contact.secret, {"email": EMAIL, "first_name": NAME, "ip_address": IP}, version=4
    )
    # Identity hash version 4's commitment, written out: SHA-384 of the secret then the binary row
    # (email, phone, app_user_id, first_name, last_name, ip_address), absent values as NULL.
    row = canonical.record_bytes(
        [
            ("varchar", EMAIL),
            ("varchar", None),
            ("varchar", None),
            ("varchar", NAME),
            ("varchar", None),
            ("inet", IP),
        ]
    )
    assert identity.personal_hash == hashlib.sha384(bytes(contact.secret) + row).hexdigest()[:64]
    # Another secret commits the same values differently: a guess cannot be tested without it.
    assert (
        personal.commitment(personal.new_secret(), stored.personal.values, version=4) != stored.personal_hash
    )
    assert ledger_verify().ok


def test_the_ledger_verifies_with_and_without_the_plain_values(decide):
    _record(decide)
    _record(decide, purpose="profiling", status="opted_out", policy_version=None)
    assert ledger_verify(workers=1).ok

    # The side table of consent events emptied: nothing in any chain changes.
    EventPersonalData.objects.all().delete()
    verdict = ledger_verify(workers=1)
    assert verdict.ok, verdict.summary()

    # The identity side table emptied while the contact still holds its identifiers: the
    # contact row no longer matches its newest identity event.
    IdentityPersonalData.objects.all().delete()
    verdict = ledger_verify(workers=1)
    assert not verdict.ok
    assert "identifiers differ from its newest identity event" in verdict.problem


def test_a_value_planted_in_a_version_2_row_breaks_its_hash(decide):
    from tests.compliance.test_verify_ledger import behind_the_triggers

    event = _record(decide)
    behind_the_triggers(
        ("UPDATE compliance_consentevent SET user_agent = %s WHERE id = %s", ["planted", event.pk])
    )
    verdict = ledger_verify(workers=1)
    assert not verdict.ok and f"event {event.pk} was altered" in verdict.problem


def test_the_api_and_the_history_show_the_values_from_the_side_table(decide, client_for, officer):
    event = _record(decide)
    page = client_for(officer).get(Contact.objects.get().get_absolute_url())
    text = page.content.decode()
    assert IP in text and EMAIL in text and NAME in text
    assert event.shown_evidence == {"note": f"asked by {NAME}"}


def test_a_look_up_by_a_former_email_reads_the_side_table(decide):
    from compliance import selectors

    client, _ = services.api_client_create(name="acct", sources=["mobile_app"], scopes=["identity:write"])
    services.consent_ingest(identity=ContactIdentity(app_user_id="u-z", email=EMAIL), decision=decide())
    services.consent_ingest(
        identity=ContactIdentity(app_user_id="u-z", email="new.address@example.org", update_identity=True),
        decision=decide(purpose="profiling"),
        api_client=client,
    )
    contact = Contact.objects.get()
    assert contact.email == "new.address@example.org"
    found = list(selectors.contact_find(email=EMAIL))
    assert [(c.pk, c.former) for c in found] == [(contact.pk, True)]


def _append_old_version(contact: Contact, decision: services.ConsentDecision, version: int) -> ConsentEvent:
    """An event as the ledger wrote it before hash version 4. Version 1: the values in the row,
    hashed as JSON; version 2: the values apart, committed to by their compact JSON, the row hashed
    as JSON; version 3: the values apart, committed to (HMAC) by their jsonb text, the row hashed
    as its text."""
    now = timezone.now()
    checked = consent_check(decision, api_client=None, actor_user=None, lookups=Lookups(), now=now)
    state = lock_states([(contact.pk, checked.purpose.pk)])[contact.pk, checked.purpose.pk]
    event = next_event(state, contact, checked, digest="d" * 64, now=now)
    event.hash_version = version
    plain = personal.event_personal_values(
        ip_address=checked.ip_address,
        user_agent=decision.user_agent,
        personal_evidence=dict(decision.evidence),
    )
    if version == 1:
        event.personal_hash = ""
        event.ip_address = checked.ip_address
        event.user_agent = decision.user_agent
        event.evidence = dict(decision.evidence)
    else:
        event.personal_hash = personal.commitment(contact.secret, plain, version=version)
    event.hash = chain.event_hash(
        state.head_hash, tuple(getattr(event, name) for name in chain.EVENT_HASHED_FIELDS_BY_VERSION[version])
    )
    event.save(force_insert=True)
    if version >= 2:
        EventPersonalData.objects.create(event=event, values=plain)
    ConsentState.objects.filter(pk=state.pk).update(version=event.version, head_hash=event.hash)
    return event


def _ledger_of_every_version(decide) -> tuple[ConsentEvent, ConsentEvent, ConsentEvent]:
    first = _record(decide)
    contact = Contact.objects.get()
    old = _append_old_version(
        contact, decide(status="opted_out", policy_version=None, ip_address=IP, user_agent=AGENT), 1
    )
    apart = _append_old_version(
        contact, decide(ip_address=IP, user_agent=AGENT, evidence={"note": f"asked by {NAME}", "n": [1.5]}), 2
    )
    text = _append_old_version(
        contact, decide(status="opted_out", ip_address=IP, user_agent=AGENT, evidence={"note": NAME}), 3
    )
    _record(decide, occurred_at=timezone.now() - timedelta(seconds=5))
    assert [e.hash_version for e in ConsentEvent.objects.order_by("id")] == [4, 1, 2, 3, 4]
    assert (old.prev_hash, apart.prev_hash, text.prev_hash) == (first.hash, old.hash, apart.hash)
    return first, old, apart


@pytest.mark.postgres
def test_version_1_to_3_events_still_verify_by_their_own_rules_in_python_and_in_sql(decide):
    _first, old, apart = _ledger_of_every_version(decide)
    assert ConsentEvent.objects.get(pk=old.pk).shown_ip_address == IP
    assert ConsentEvent.objects.get(pk=apart.pk).shown_ip_address == IP
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id, hash = {chain.event_hash_sql()} FROM compliance_consentevent ORDER BY id")
        assert [ok for _id, ok in cursor.fetchall()] == [True] * 5
    verdict = ledger_verify(workers=1)
    assert verdict.ok, verdict.summary()
    from tests.compliance.test_verify_ledger import behind_the_triggers

    behind_the_triggers(
        ("UPDATE compliance_consentevent SET ip_address = %s WHERE id = %s", ["192.0.2.1", old.pk])
    )
    assert f"event {old.pk} was altered" in ledger_verify(workers=1).problem


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_parallel_verifier_gives_the_serial_verdict_on_every_hash_version(decide):
    # given a chain of events of hash versions 4, 1, 2, 3 and 4 (from version 2 on, personal data apart)
    _first, _old, apart = _ledger_of_every_version(decide)
    serial, parallel = ledger_verify(workers=1), ledger_verify(workers=2)
    assert serial.ok and parallel == serial

    # when version 2's personal data kept apart is changed
    from tests.compliance.test_verify_ledger import behind_the_triggers

    behind_the_triggers(
        (
            "UPDATE compliance_eventpersonaldata SET values = jsonb_set(values, '{ip_address}', %s) WHERE event_id = %s",
            ['"192.0.2.99"', apart.pk],
        )
    )

    # then both passes name it
    serial, parallel = ledger_verify(workers=1), ledger_verify(workers=2)
    assert (
        not serial.ok
        and f"event {apart.pk}: its personal data kept apart was tampered with" in serial.problem
    )
    assert parallel == serial


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_identity_events_of_version_2_still_verify_beside_version_4(decide, monkeypatch):
    # given a contact whose identity chain holds versions 4, 2 and 4 (the middle one written as
    # the ledger wrote identity events before version 4)
    from compliance.services import identity as identity_service
    from tests.compliance.test_verify_ledger import behind_the_triggers

    _record(decide)
    contact = Contact.objects.get()
    context = identity_service.identity_context(source="web_portal", ip_address=IP)
    with monkeypatch.context() as patched:
        patched.setattr(identity_service, "IDENTITY_HASH_VERSION", 2)
        contact.phone = "+4915100000001"
        legacy = identity_service.identity_append(contact, kind="updated", context=context, changed=["phone"])
    contact.email = "second.address@example.org"
    identity_service.identity_append(contact, kind="updated", context=context, changed=["email"])
    events = list(IdentityEvent.objects.order_by("version"))
    assert [e.hash_version for e in events] == [4, 2, 4]
    assert legacy.personal_hash == personal.commitment(
        contact.secret,
        {"email": EMAIL, "phone": "+4915100000001", "first_name": NAME, "ip_address": IP},
        version=2,
    )

    # then the database and Python agree on every hash, and both passes verify
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT hash = {chain.identity_event_hash_sql('e')} FROM compliance_identityevent e")
        assert [ok for (ok,) in cursor.fetchall()] == [True] * 3
    # (the database confirms every chain and side row itself: none is left for Python to judge)
    assert identity_verification._identity_intact_in_database() == (3, True)
    assert personal_verification._identity_doubtful(100) == []
    serial, parallel = ledger_verify(workers=1), ledger_verify(workers=2)
    assert serial.ok and parallel == serial, serial.summary()

    # and a changed value kept apart is named, in either version
    for event in (legacy, events[0]):  # (not the newest, whose values the contact row must also hold)
        behind_the_triggers(
            (
                "UPDATE compliance_identitypersonaldata SET first_name = 'Someone' WHERE identity_event_id = %s",
                [event.pk],
            )
        )
        # (the chains still verify in the database, which leaves the side rows to the side pass)
        assert identity_verification._identity_intact_in_database() == (3, False)
        serial, parallel = ledger_verify(workers=1), ledger_verify(workers=2)
        assert f"identity event {event.pk}: its personal data kept apart was tampered with" in serial.problem
        assert parallel == serial
        behind_the_triggers(
            (
                "UPDATE compliance_identitypersonaldata SET first_name = %s WHERE identity_event_id = %s",
                [NAME, event.pk],
            )
        )
