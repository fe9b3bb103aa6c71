"""Issue #11: a withdrawal jumps the sync queue. Real Celery workers on Redis against zohosim.

A backlog's batches are claimed ahead and queued on the default queue; a withdrawal recorded
meanwhile goes out in a batch of its own on the urgent queue, as soon as the worker has
finished the batch in hand, not after the whole backlog.
"""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import OutboxEntry
from sync.models import SyncPush, ZohoCall
from tests.sync.convergence import all_verified, assert_zoho_holds_the_ledger
from tests.sync.test_workers import make_changes

pytestmark = pytest.mark.soak

BATCH_S = 3


def update_calls() -> list[int]:
    """The update calls made, in the order they started (the call log's ids)."""
    return list(ZohoCall.objects.filter(operation="crm.update").order_by("id").values_list("id", flat=True))


def test_a_withdrawal_recorded_behind_a_backlog_goes_out_before_it(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given a backlog of 300 changes (three batches of 100) and one worker pushing it, each
    # update call taking 3 s
    backlog = make_changes(ledger, crm, 300)
    sim.fault("slow", ratio=1, delay_s=BATCH_S, ops=["crm.update"])
    workers.start(1)
    workers.wait_until(
        lambda: ZohoCall.objects.filter(operation="crm.update", outcome="pending").exists(),
        "the backlog's first batch in flight",
        beat=False,
    )
    assert not OutboxEntry.objects.filter(contact_id__in=backlog, claimed_by="").exists()  # all claimed ahead

    # When someone unsubscribes meanwhile
    email = "leaving@example.com"
    leaving = ledger.change(email, "email_marketing", "opted_out", zoho_id=crm(email, Email_Opt_Out=False))
    assert OutboxEntry.objects.get(contact=leaving).priority == OutboxEntry.Priority.WITHDRAWAL

    # Then the withdrawal is the next update call, before the backlog's two other batches
    workers.wait_until(
        lambda: all_verified(backlog | {leaving.pk: leaving.zoho_id}),
        "the withdrawal and the backlog verified",
        beat=False,
    )
    calls = update_calls()
    withdrawal = SyncPush.objects.get(contact=leaving)
    assert len(calls) == 4 and calls.index(withdrawal.call_id) == 1, (calls, withdrawal.call_id)
    # in a batch of its own
    assert list(SyncPush.objects.filter(call_id=withdrawal.call_id).values_list("contact_id", flat=True)) == [
        leaving.pk
    ]
    assert sim.contact(leaving.zoho_id)["Email_Opt_Out"] is True
    assert_zoho_holds_the_ledger(sim, backlog)
