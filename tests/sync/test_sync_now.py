"""`manage.py sync_now`: one sync cycle by hand, through the services the tasks run, against zohosim."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.utils import timezone

from compliance.models import OutboxEntry, Seal
from sync.models import SyncPush
from sync.outbox import outbox_waiting


def sync_now(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("sync_now", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_pushes_verifies_pulls_and_seals_in_one_cycle(
    ledger: Any, crm: Any, sim: Any, sim_settings: Any
) -> None:
    # Given two changes and a verify delay not yet passed
    sim_settings.CONSENT_VERIFY_DELAY_S = 60
    a = ledger.change("a@example.com", "sms_marketing", "opted_in", zoho_id=crm("a@example.com"))
    ledger.change("b@example.com", "sms_marketing", "opted_in", zoho_id=crm("b@example.com"))

    # When an operator runs a cycle, verifying now
    out, err = sync_now("--verify-now")

    # Then both went out in one call and were read back, and the ledger was sealed
    assert "push: 2 pushed in 1 update call(s)" in out
    assert "verify: 2 verified, 0 mismatched" in out
    assert "campaigns pull: " in out and f"seal: {Seal.objects.get().sequence}" in out
    assert err == ""
    assert sim.contact(a.zoho_id)["SMS_Opt_In"] is True
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()


def test_without_verify_now_it_leaves_the_read_back_to_its_delay(
    ledger: Any, crm: Any, sim_settings: Any
) -> None:
    sim_settings.CONSENT_VERIFY_DELAY_S = 60
    ledger.change("c@example.com", "sms_marketing", "opted_in", zoho_id=crm("c@example.com"))

    out, _ = sync_now("--no-pull")

    assert "push: 1 pushed" in out and "verify: 0 verified" in out
    assert "campaigns pull" not in out and "seal" not in out
    assert SyncPush.objects.get().verification == SyncPush.Verification.PENDING


def test_a_transient_zoho_error_leaves_the_batch_to_the_sweep_at_once(
    ledger: Any, crm: Any, sim: Any, sim_settings: Any
) -> None:
    # Given a change and Zoho answering every update with a 500
    ledger.change("d@example.com", "sms_marketing", "opted_in", zoho_id=crm("d@example.com"))
    sim.fault("server_error", ratio=1, ops=["crm.update"])

    # When an operator runs a cycle
    out, err = sync_now("--no-pull")

    # Then the command says so and tried once; the change waits for the sweep after the next
    assert "push: 0 pushed" in out
    assert "transient Zoho error" in err and "1 outbox row(s) left for the periodic sweep" in err
    assert len(sim.calls("crm.update")) == 1
    assert not SyncPush.objects.exists()
    assert not outbox_waiting()
    assert outbox_waiting(now=timezone.now() + timedelta(seconds=31))
