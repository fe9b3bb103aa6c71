"""verify_ledger finds any edit, deletion, swap or truncation made behind the triggers' back."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.utils import timezone
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from compliance import chain, ledger_guard, services
from compliance.models import ConsentEvent, Seal
from compliance.services import ConsentDecision, ContactIdentity
from compliance.verification import Verdict, ledger_verify

pytestmark = [pytest.mark.django_db, pytest.mark.ledger]

PURPOSES = ["sms_marketing", "phone_marketing", "profiling", "third_party_sharing"]
EMAILS = [f"person{n}@example.com" for n in range(4)]


def behind_the_triggers(*statements: tuple[str, list]) -> None:
    """Run SQL as someone with owner rights would: triggers off, change, triggers on."""
    ledger_guard.drop(connection)
    try:
        with connection.cursor() as cursor:
            for sql, params in statements:
                cursor.execute(sql, params)
    finally:
        ledger_guard.install(connection)


def delete_events(ids: list[int]) -> None:
    """Delete events, unhooking the rows that point at them so constraints hold."""
    placeholders = ", ".join(["%s"] * len(ids))
    behind_the_triggers(
        (f"UPDATE compliance_outboxentry SET event_id = NULL WHERE event_id IN ({placeholders})", ids),
        (f"UPDATE compliance_consentstate SET event_id = NULL WHERE event_id IN ({placeholders})", ids),
        (f"DELETE FROM compliance_consentevent WHERE id IN ({placeholders})", ids),
    )


def record(email: str, purpose: str, status: str, key: str, minutes_ago: int) -> None:
    services.consent_ingest(
        identity=ContactIdentity(email=email),
        decision=ConsentDecision(
            purpose=purpose,
            status=status,
            source="web_portal",
            occurred_at=timezone.now() - timedelta(minutes=minutes_ago),
            idempotency_key=key,
            policy_version="2026-03" if status == "opted_in" else None,
            ip_address="198.51.100.4",
        ),
    )


class LedgerMachine(RuleBasedStateMachine):
    """Appends, withdraws, seals and tampers; verify_ledger must be ok exactly while untampered."""

    def __init__(self) -> None:
        super().__init__()
        self.atomic = transaction.atomic()
        self.atomic.__enter__()
        services.policy_version_publish(label="2026-03", effective_at="2026-03-01", text="notice")
        self.keys = itertools.count()
        self.minutes = itertools.count(100000, -1)
        self.hashes = itertools.count()
        self.written: dict[int, tuple] = {}

    def rows(self) -> dict[int, tuple]:
        columns = ("id", "hash", "prev_hash", *chain.EVENT_HASHED_FIELDS)
        return {row[0]: row for row in ConsentEvent.objects.values_list(*columns)}

    def remember_new_rows(self) -> None:
        for event_id, row in self.rows().items():
            self.written.setdefault(event_id, row)

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.atomic.__exit__(None, None, None)

    def event_ids(self) -> list[int]:
        return list(ConsentEvent.objects.order_by("id").values_list("id", flat=True))

    @rule(email=st.sampled_from(EMAILS), purpose=st.sampled_from(PURPOSES))
    def append_opt_in(self, email: str, purpose: str) -> None:
        record(email, purpose, "opted_in", f"k{next(self.keys)}", next(self.minutes))
        self.remember_new_rows()

    @rule(email=st.sampled_from(EMAILS), purpose=st.sampled_from(PURPOSES))
    def withdraw(self, email: str, purpose: str) -> None:
        record(email, purpose, "opted_out", f"k{next(self.keys)}", next(self.minutes))
        self.remember_new_rows()

    @rule()
    def seal(self) -> None:
        services.ledger_seal()

    @precondition(lambda self: ConsentEvent.objects.exists())
    @rule(data=st.data(), column=st.sampled_from(["status", "ip_address", "occurred_at", "reason", "hash"]))
    def tamper_edit(self, data: st.DataObject, column: str) -> None:
        event = ConsentEvent.objects.get(pk=data.draw(st.sampled_from(self.event_ids())))
        new_value = {
            "status": "opted_in" if event.status != "opted_in" else "opted_out",
            "ip_address": "192.0.2.99",
            "occurred_at": event.occurred_at - timedelta(days=1),
            "reason": "edited later",
            "hash": f"{next(self.hashes):064x}",
        }[column]
        behind_the_triggers(
            (f"UPDATE compliance_consentevent SET {column} = %s WHERE id = %s", [new_value, event.pk])
        )

    @precondition(lambda self: ConsentEvent.objects.exists())
    @rule(data=st.data())
    def tamper_delete(self, data: st.DataObject) -> None:
        delete_events([data.draw(st.sampled_from(self.event_ids()))])

    @precondition(lambda self: ConsentEvent.objects.count() >= 2)
    @rule(data=st.data())
    def tamper_swap(self, data: st.DataObject) -> None:
        first, second = data.draw(
            st.lists(st.sampled_from(self.event_ids()), min_size=2, max_size=2, unique=True)
        )
        a, b = ConsentEvent.objects.get(pk=first), ConsentEvent.objects.get(pk=second)
        behind_the_triggers(
            ("UPDATE compliance_consentevent SET occurred_at = %s WHERE id = %s", [b.occurred_at, a.pk]),
            ("UPDATE compliance_consentevent SET occurred_at = %s WHERE id = %s", [a.occurred_at, b.pk]),
        )

    @precondition(lambda self: ConsentEvent.objects.exists())
    @rule(count=st.integers(min_value=1, max_value=3))
    def tamper_truncate_tail(self, count: int) -> None:
        delete_events(self.event_ids()[-count:])

    @invariant()
    def verify_agrees(self) -> None:
        # Tampered means: the events are no longer exactly what the write path wrote
        # (two swaps of the same pair, say, put everything back).
        tampered = self.rows() != self.written
        verdict = ledger_verify()
        assert verdict.ok == (not tampered), verdict.summary()


def test_verify_ledger_finds_every_kind_of_tampering():
    run_state_machine_as_test(
        LedgerMachine,
        settings=hypothesis_settings(max_examples=30, stateful_step_count=25, deadline=None),
    )


@pytest.fixture
def ledger(policy, settings, tmp_path, django_capture_on_commit_callbacks):
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    for n in range(3):
        record(f"p{n}@example.com", "sms_marketing", "opted_in", f"fixture-{n}", 60 - n)
    with django_capture_on_commit_callbacks(execute=True):
        services.ledger_seal()
    record("p0@example.com", "sms_marketing", "opted_out", "fixture-late", 1)
    return settings.LEDGER_SEAL_LOG


def test_the_command_prints_one_line_and_exits_zero_when_intact(ledger, capsys):
    call_command("verify_ledger")
    out = capsys.readouterr().out.strip()
    assert out == "ledger intact: 4 events, 3 chains, 1 seals verified"


def test_the_command_names_the_first_altered_event_and_fails(ledger):
    target = ConsentEvent.objects.order_by("id")[1]
    behind_the_triggers(
        ("UPDATE compliance_consentevent SET ip_address = %s WHERE id = %s", ["192.0.2.1", target.pk])
    )

    with pytest.raises(CommandError, match=f"event {target.pk} was altered"):
        call_command("verify_ledger")


def test_a_deleted_tail_event_shows_against_the_current_state(ledger):
    last = ConsentEvent.objects.order_by("-id").first()
    delete_events([last.pk])

    verdict = ledger_verify()
    assert not verdict.ok
    assert "newest events were deleted" in verdict.problem


def test_rewriting_sealed_history_with_recomputed_hashes_is_caught_by_the_seal(ledger):
    # A careful forger deletes a sealed event and fixes up the chain state, so
    # only the seal can tell.
    first = ConsentEvent.objects.order_by("id").first()
    delete_events([first.pk])
    behind_the_triggers(
        ("DELETE FROM compliance_consentstate WHERE contact_id = %s", [first.contact_id]),
    )

    verdict = ledger_verify()
    assert not verdict.ok
    assert "seal 1" in verdict.problem


def test_seals_rewritten_in_the_database_differ_from_the_copy_outside_it(ledger):
    seal = Seal.objects.get()
    behind_the_triggers(("DELETE FROM compliance_seal WHERE id = %s", [seal.pk]))

    assert ledger_verify().ok, "without the outside copy the database alone looks consistent"
    verdict = ledger_verify(seal_log=ledger)
    assert not verdict.ok
    assert "seal 1 is in the seal log" in verdict.problem
    with pytest.raises(CommandError, match="seal 1 is in the seal log"):
        call_command("verify_ledger", "--seal-log", str(ledger))


@pytest.mark.django_db(transaction=True)
def test_the_parallel_verifier_gives_the_serial_verdict_before_and_after_tampering(
    policy, settings, tmp_path
):
    # Outside a transaction on PostgreSQL, workers=2 forks processes that share the
    # snapshot; on SQLite it falls back to the single pass. Either way: same verdict.
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"
    for n in range(30):
        record(
            f"par{n % 7}@example.com",
            PURPOSES[n % 4],
            "opted_in" if n % 3 else "opted_out",
            f"par-{n}",
            500 - n,
        )
    services.ledger_seal()
    for n in range(30, 40):
        record(f"par{n % 7}@example.com", PURPOSES[n % 4], "opted_out", f"par-{n}", 500 - n)

    def verdicts() -> tuple[Verdict, Verdict]:
        return ledger_verify(workers=1), ledger_verify(workers=2)

    serial, parallel = verdicts()
    assert serial.ok and parallel == serial

    ids = list(ConsentEvent.objects.order_by("id").values_list("id", flat=True))
    behind_the_triggers(("UPDATE compliance_consentevent SET reason = %s WHERE id = %s", ["forged", ids[33]]))
    serial, parallel = verdicts()
    assert not serial.ok and f"event {ids[33]} was altered" in serial.problem
    assert parallel == serial

    delete_events([ids[5]])
    serial, parallel = verdicts()
    assert not serial.ok and parallel == serial
