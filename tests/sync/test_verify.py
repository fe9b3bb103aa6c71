"""Verify: read-back, superseded pushes, discrepancy kinds and hints, retries, one alert, resolution."""

from __future__ import annotations

from typing import Any

from django.core import mail

from sync.alerts import alerts_unacknowledged
from sync.models import Alert, Discrepancy, SyncPush
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.verify import discrepancies_retry_due, pushes_verify_due

PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"
EMAIL = "Data_Processing_Basis_Details.Contact_Through_Email"


def cycle(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)
    pushes_verify_due(zoho=zoho)


def test_a_push_that_arrived_is_verified(ledger: Any, crm: Any, zoho: Any, engine_settings: Any) -> None:
    ledger.change("ok@example.com", "sms_marketing", "opted_in", zoho_id=crm("ok@example.com"))

    cycle(zoho)

    push = SyncPush.objects.get()
    assert push.verification == SyncPush.Verification.VERIFIED
    assert push.readback["SMS_Opt_In"] is True
    assert not Discrepancy.objects.exists()


def test_nothing_is_read_back_before_the_delay(
    ledger: Any, crm: Any, zoho: Any, engine_settings: Any
) -> None:
    engine_settings.CONSENT_VERIFY_DELAY_S = 60
    ledger.change("later@example.com", "sms_marketing", "opted_in", zoho_id=crm("later@example.com"))

    cycle(zoho)
    assert SyncPush.objects.get().verification == SyncPush.Verification.PENDING

    pushes_verify_due(zoho=zoho, ignore_delay=True)
    assert SyncPush.objects.get().verification == SyncPush.Verification.VERIFIED


def test_a_newer_event_during_the_delay_supersedes_the_older_push_and_wins(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    engine_settings.CONSENT_VERIFY_DELAY_S = 60
    record = crm("mind@example.com")
    ledger.change("mind@example.com", "sms_marketing", "opted_in", zoho_id=record, minutes_ago=2)
    while claim := outbox_claim(worker="t"):
        outbox_batch_push(claim=claim, zoho=zoho)
    ledger.change("mind@example.com", "sms_marketing", "opted_out", minutes_ago=1)
    while claim := outbox_claim(worker="t"):
        outbox_batch_push(claim=claim, zoho=zoho)

    pushes_verify_due(zoho=zoho, ignore_delay=True)

    first, second = SyncPush.objects.order_by("id")
    assert first.verification == SyncPush.Verification.SUPERSEDED
    assert second.verification == SyncPush.Verification.VERIFIED
    assert sim.contact(record)["SMS_Opt_In"] is False


def test_a_decision_restated_during_the_delay_leaves_the_push_to_be_verified(
    ledger: Any, crm: Any, zoho: Any, engine_settings: Any
) -> None:
    # Given an opt-in pushed and waiting for its read-back
    engine_settings.CONSENT_VERIFY_DELAY_S = 60
    ledger.change(
        "again@example.com", "sms_marketing", "opted_in", zoho_id=crm("again@example.com"), minutes_ago=2
    )
    cycle(zoho)

    # When the person opts in again (a new version, the same state: nothing new to push)
    ledger.change("again@example.com", "sms_marketing", "opted_in", minutes_ago=1)
    cycle(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)

    # Then the one push is read back and verified, not left "superseded" by a push that never comes
    push = SyncPush.objects.get()
    assert push.verification == SyncPush.Verification.VERIFIED


def test_a_silently_ignored_field_is_not_applied_with_the_permission_hint(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    sim.fault("field_no_permission", fields=[EMAIL], mode="silent")
    contact = ledger.change(
        "mute@example.com", "email_marketing", "opted_in", zoho_id=crm("mute@example.com")
    )

    cycle(zoho)

    assert SyncPush.objects.get().verification == SyncPush.Verification.MISMATCH
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.crm_field == EMAIL
    assert discrepancy.kind == Discrepancy.Kind.NOT_APPLIED
    assert "edit rights on " + EMAIL in discrepancy.hint
    assert discrepancy.expected is True and discrepancy.actual is False
    evidence = discrepancy.evidence
    assert evidence["sent"][EMAIL] is True and evidence["zoho_answer"]["code"] == "SUCCESS"
    assert evidence["readback"][EMAIL] is False
    assert evidence["Modified_By"]["id"] == "5725767000000000001" and evidence["Modified_Time"]


def test_a_workflow_reset_after_our_write_is_overwritten_with_the_workflow_hint(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    sim.fault("workflow_reset", field=PHONE, value=False, delay_s=0)
    contact = ledger.change(
        "call@example.com", "phone_marketing", "opted_in", zoho_id=crm("call@example.com")
    )

    cycle(zoho)

    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.crm_field == PHONE
    assert discrepancy.kind == Discrepancy.Kind.OVERWRITTEN
    assert "workflow rules on " + PHONE in discrepancy.hint
    assert discrepancy.evidence["Modified_By"]["id"] == "5725767000000000002"


def test_three_failed_retries_send_exactly_one_alert_and_a_later_match_resolves(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    sim.fault("workflow_reset", field=PHONE, value=False, delay_s=0)
    contact = ledger.change(
        "call@example.com", "phone_marketing", "opted_in", zoho_id=crm("call@example.com")
    )
    cycle(zoho)

    with django_capture_on_commit_callbacks(execute=True):
        for _ in range(5):  # more rounds than retries: the extra ones must do nothing
            discrepancies_retry_due(zoho=zoho)
            pushes_verify_due(zoho=zoho)

    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.retries == 3 and discrepancy.next_retry_at is None
    assert SyncPush.objects.count() == 4  # the first push and three retries
    alert = Alert.objects.get()
    assert alert.kind == Alert.Kind.RETRIES_EXHAUSTED and alert.discrepancy == discrepancy
    assert list(alerts_unacknowledged()) == [alert]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["compliance@example.com"]
    assert PHONE in mail.outbox[0].subject

    # The workflow rule is fixed; the next change reads back right and resolves it.
    sim.clear_faults()
    ledger.change("call@example.com", "phone_marketing", "opted_in", minutes_ago=0.5)
    ledger.change("call@example.com", "sms_marketing", "opted_in", minutes_ago=0.5)
    cycle(zoho)
    discrepancy.refresh_from_db()
    assert discrepancy.status == Discrepancy.Status.RESOLVED
    assert Alert.objects.count() == 1


def test_a_retry_that_succeeds_resolves_without_an_alert(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    sim.fault("workflow_reset", field=PHONE, value=False, delay_s=0)
    contact = ledger.change(
        "call@example.com", "phone_marketing", "opted_in", zoho_id=crm("call@example.com")
    )
    cycle(zoho)
    sim.clear_faults()

    discrepancies_retry_due(zoho=zoho)
    pushes_verify_due(zoho=zoho)

    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.status == Discrepancy.Status.RESOLVED
    assert not Alert.objects.exists() and not mail.outbox


def test_a_deleted_record_is_record_missing_at_read_back(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    engine_settings.CONSENT_VERIFY_DELAY_S = 60
    record = crm("del@example.com")
    contact = ledger.change("del@example.com", "sms_marketing", "opted_in", zoho_id=record)
    while claim := outbox_claim(worker="t"):
        outbox_batch_push(claim=claim, zoho=zoho)
    with sim.state.lock:  # deleted in CRM meanwhile (zohosim has no delete endpoint)
        sim.state.modules["Contacts"].records.pop(int(record))

    pushes_verify_due(zoho=zoho, ignore_delay=True)

    assert Discrepancy.objects.get(contact=contact).kind == Discrepancy.Kind.RECORD_MISSING
