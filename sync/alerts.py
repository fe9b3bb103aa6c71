"""Alerts to the compliance team: one `Alert` row each, emailed once its transaction commits.

- `alert_retries_exhausted`: a discrepancy that failed every retry gets exactly one alert (a
  unique constraint makes a second one impossible, even from two workers at once);
- `alert_threshold`: reconciliation left more discrepancies open than
  ``DISCREPANCY_ALERT_THRESHOLD``; not again for the same state;
- `alert_auth`: Zoho refuses our credentials; one open at a time.
- `alert_opt_out_deadline`: a withdrawal not in effect two business days before its deadline;
  exactly one per withdrawal (a unique constraint, like the first).
- `alert_erasure_zoho`: an erasure's Zoho job failed ``SYNC_MAX_RETRIES`` runs; its caller makes
  it one per job (`ErasureZohoJob.alerted_at`, set by a conditional UPDATE).

The email goes through Django's email backend to ``COMPLIANCE_ALERT_EMAILS`` on commit, so a
rolled-back alert is never mailed; a mail server that is down is logged and the alert stands
(``emailed_to`` stays empty). Officers see unacknowledged alerts in the page banner
(`sync.selectors.alert_banner`) and on the alerts page.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from sync.models import Alert, Discrepancy, ErasureZohoJob, WithdrawalClock

logger = logging.getLogger(__name__)


def alerts_unacknowledged() -> QuerySet[Alert]:
    """Alerts not yet acknowledged, newest first, with their discrepancy."""
    return (
        Alert.objects.filter(acknowledged_at__isnull=True)
        .select_related("discrepancy")
        .order_by("-created_at")
    )


def _email(alert: Alert, subject: str) -> None:
    """Mail the alert (run on commit); a failure is logged, never raised: the row and banner stand."""
    recipients = list(settings.COMPLIANCE_ALERT_EMAILS)
    if not recipients:
        return
    try:
        send_mail(f"[Consent Desk] {subject}", alert.message, None, recipients)
    except Exception:  # the alert row and banner stand even when mail is down
        logger.exception("Could not email alert %s", alert.pk)
        return
    Alert.objects.filter(pk=alert.pk).update(emailed_to=recipients)


def alert_retries_exhausted(*, discrepancy: Discrepancy) -> Alert | None:
    """The one alert for a discrepancy that failed every retry; None when it exists already."""
    contact = discrepancy.contact
    target = discrepancy.crm_field or "the CRM record"
    message = (
        f"Consent for {contact} did not reach Zoho CRM on {target} after "
        f"{discrepancy.retries} retries ({discrepancy.get_kind_display()}).\n\n"
        f"Expected: {discrepancy.expected!r}\nZoho shows: {discrepancy.actual!r}\n"
        f"Likely cause: {discrepancy.hint}\n\nZoho record: {discrepancy.zoho_id or '-'}; "
        f"discrepancy {discrepancy.pk}."
    )
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=Alert.Kind.RETRIES_EXHAUSTED, discrepancy=discrepancy, message=message
            )
    except IntegrityError:
        return None
    subject = f"Consent change not applied in Zoho: {target} of {contact}"
    transaction.on_commit(lambda: _email(alert, subject))
    return alert


def alert_threshold(*, opened_now: int) -> Alert | None:
    """One alert when more discrepancies are open than ``DISCREPANCY_ALERT_THRESHOLD``; else None.

    Not again for the same state: only when this run opened new discrepancies (`opened_now`), or
    no threshold alert waits unacknowledged.
    """
    threshold = settings.DISCREPANCY_ALERT_THRESHOLD
    open_count = Discrepancy.objects.filter(status=Discrepancy.Status.OPEN).count()
    if open_count <= threshold:
        return None
    waiting = Alert.objects.filter(kind=Alert.Kind.THRESHOLD, acknowledged_at__isnull=True).exists()
    if waiting and opened_now == 0:
        return None
    message = (
        f"{open_count} discrepancies between Zoho CRM and the consent ledger are open "
        f"(threshold {threshold}); reconciliation opened {opened_now} new ones."
    )
    alert = Alert.objects.create(kind=Alert.Kind.THRESHOLD, message=message)
    subject = f"{open_count} open discrepancies with Zoho CRM"
    transaction.on_commit(lambda: _email(alert, subject))
    return alert


def alert_auth(*, message: str) -> Alert | None:
    """Zoho refuses our credentials: one open alert at a time (until acknowledged)."""
    if Alert.objects.filter(kind=Alert.Kind.AUTH, acknowledged_at__isnull=True).exists():
        return None
    try:
        with transaction.atomic():
            alert = Alert.objects.create(kind=Alert.Kind.AUTH, message=message)
    except IntegrityError:
        return None  # another worker opened it a moment ago (sync_alert_one_open_auth)
    transaction.on_commit(lambda: _email(alert, "Zoho refuses Consent Desk's credentials"))
    return alert


def alert_opt_out_deadline(*, clock: WithdrawalClock, missing: str, now: datetime) -> Alert | None:
    """The one alert for a withdrawal close to (or past) its deadline; None when it exists already
    (a unique constraint makes a second one impossible, even from two workers at once)."""
    breached = now >= clock.deadline_at
    message = (
        f"The withdrawal of {clock.contact} from {clock.purpose} (event {clock.event_id}), recorded "
        f"{clock.recorded_at:%Y-%m-%d %H:%M} UTC, is not in effect in Zoho yet: waiting for {missing}.\n\n"
        f"Its deadline {'passed' if breached else 'is'} {clock.deadline_at:%Y-%m-%d %H:%M} UTC "
        f"({settings.OPT_OUT_DEADLINE_BUSINESS_DAYS} business days)."
    )
    try:
        with transaction.atomic():
            alert = Alert.objects.create(kind=Alert.Kind.OPT_OUT_DEADLINE, withdrawal=clock, message=message)
    except IntegrityError:
        return None
    subject = (
        f"Withdrawal {'past' if breached else 'close to'} its deadline: {clock.purpose} of {clock.contact}"
    )
    transaction.on_commit(lambda: _email(alert, subject))
    return alert


def alert_erasure_zoho(*, job: ErasureZohoJob) -> Alert:
    """An erasure not yet carried out in Zoho after every retry (no personal data: ids only)."""
    message = (
        f"The erasure of contact {job.contact_id} has not reached Zoho after {job.attempts} attempts "
        f"({job.get_action_display().lower()}). Left: {len(job.records_left)} CRM record(s), "
        f"{len(job.campaigns_left)} Campaigns unsubscribe(s); it is retried until done.\n\n"
        f"Last error: {job.last_error}\n\nErasure job {job.pk}."
    )
    alert = Alert.objects.create(kind=Alert.Kind.ERASURE_ZOHO, message=message)
    subject = f"Erasure not carried out in Zoho: contact {job.contact_id}"
    transaction.on_commit(lambda: _email(alert, subject))
    return alert


def alert_acknowledge(*, alert: Alert, by: str) -> Alert:
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = by[:150]
    alert.save(update_fields=["acknowledged_at", "acknowledged_by"])
    return alert
