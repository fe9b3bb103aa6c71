"""The sync's Celery tasks run in this process (`Task.apply`) against zohosim: Zoho refusing our credentials.

(Real workers on a real broker: test_workers.py.)
"""

from __future__ import annotations

from typing import Any

from django.core import mail

from sync.models import Alert, SyncPush
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.tasks.pull import reconcile
from sync.tasks.push import push_batch, verify_due


def test_a_revoked_refresh_token_raises_one_auth_alert_however_many_tasks_meet_it(
    ledger: Any, crm: Any, sim_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # Given two pending changes and a refresh token Zoho no longer accepts
    ledger.change("a@example.com", "sms_marketing", "opted_in", zoho_id=crm("a@example.com"))
    ledger.change("b@example.com", "sms_marketing", "opted_in", zoho_id=crm("b@example.com"))
    sim_settings.ZOHO_REFRESH_TOKEN = "revoked-by-an-admin"

    # When a push meets it, then another push and a reconciliation
    with django_capture_on_commit_callbacks(execute=True):
        first = push_batch.apply(args=[outbox_claim(worker="w", max_contacts=1).token]).get()
    second = push_batch.apply(args=[outbox_claim(worker="w", max_contacts=1).token]).get()
    third = reconcile.apply().get()

    # Then each task ended (no retry, no crash) and the team got one alert, by banner and email
    assert first == second == third == {"auth_error": 1}
    alert = Alert.objects.get()
    assert alert.kind == Alert.Kind.AUTH and "ZOHO_REFRESH_TOKEN" in alert.message
    assert [m.subject for m in mail.outbox] == ["[Consent Desk] Zoho refuses Consent Desk's credentials"]
    assert not SyncPush.objects.exists()


def test_the_read_back_meeting_a_revoked_token_alerts_and_leaves_the_push_unverified(
    ledger: Any, crm: Any, zoho: Any, sim_settings: Any
) -> None:
    # Given a change pushed while the credentials were good
    ledger.change("c@example.com", "sms_marketing", "opted_in", zoho_id=crm("c@example.com"))
    outbox_batch_push(claim=outbox_claim(worker="w"), zoho=zoho)
    # and the refresh token revoked since (the task's client has no access token yet)
    sim_settings.ZOHO_REFRESH_TOKEN = "revoked-by-an-admin"

    # When the periodic read-back runs
    result = verify_due.apply().get()

    # Then it alerts instead of failing, and the push waits for a later read-back
    assert result == {"auth_error": 1}
    assert Alert.objects.get().kind == Alert.Kind.AUTH
    assert SyncPush.objects.get().verification == SyncPush.Verification.PENDING
