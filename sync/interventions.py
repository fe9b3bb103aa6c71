"""What a person does to the sync from the pages: retry or resolve a discrepancy, acknowledge an alert.

Each service locks its row (`select_for_update`; SQLite's IMMEDIATE transactions
serialize the writers), checks the row still allows the action and changes it in one
transaction. A refusal raises `OperatorError` with a message for the person and
changes nothing. Who may call them is the view's business (`compliance.fix_discrepancies`
for discrepancies, `compliance.view_dashboards` for alerts).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.utils import timezone

from sync.alerts import alert_acknowledge
from sync.models import Alert, Discrepancy

logger = logging.getLogger(__name__)

# The retry sweep (`sync.verify.discrepancies_retry_due`) never re-pushes these: a person
# must pick the primary CRM record or create the record first.
NOT_RETRYABLE = frozenset({Discrepancy.Kind.DUPLICATE, Discrepancy.Kind.NOT_IN_CRM})
NOTE_MAX_LENGTH = 2000


class OperatorError(Exception):
    """The action is refused; the message says why, in words for the person who asked."""


def _name(by: AbstractBaseUser | AnonymousUser) -> str:
    return str(by.get_username())


def _locked_open(discrepancy: Discrepancy) -> Discrepancy:
    locked = Discrepancy.objects.select_for_update().get(pk=discrepancy.pk)
    if locked.status != Discrepancy.Status.OPEN:
        when = timezone.localtime(locked.resolved_at).strftime("%Y-%m-%d %H:%M") if locked.resolved_at else ""
        raise OperatorError(
            f"Discrepancy {locked.pk} is already resolved{f' ({when})' if when else ''}: "
            f"{locked.resolution or 'no resolution recorded'}. Nothing was changed."
        )
    return locked


def discrepancy_retry_now(
    *, discrepancy: Discrepancy, by: AbstractBaseUser | AnonymousUser, now: datetime | None = None
) -> Discrepancy:
    """Make the discrepancy due for a retry now, so the next retry sweep re-pushes the ledger's value.

    A discrepancy that ran out of retries gets one more (its count goes back to
    ``SYNC_MAX_RETRIES - 1``); failing again exhausts it again without a second alert.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked_open(discrepancy)
        if locked.kind in NOT_RETRYABLE:
            raise OperatorError(
                f"A “{locked.get_kind_display()}” discrepancy is not retried: {locked.hint or 'fix it in Zoho CRM first'}"
            )
        locked.next_retry_at = now
        locked.retries = min(locked.retries, max(settings.SYNC_MAX_RETRIES - 1, 0))
        locked.save(update_fields=["next_retry_at", "retries", "updated_at"])
    logger.info("Discrepancy %s: retry requested by %s", locked.pk, _name(by))
    return locked


def discrepancy_resolve_manually(
    *,
    discrepancy: Discrepancy,
    by: AbstractBaseUser | AnonymousUser,
    note: str,
    now: datetime | None = None,
) -> Discrepancy:
    """Close the discrepancy by hand; the resolution names the person and their note."""
    note = note.strip()
    if not note:
        raise OperatorError("Write a note saying why this discrepancy is resolved.")
    if len(note) > NOTE_MAX_LENGTH:
        raise OperatorError(f"The note is too long: at most {NOTE_MAX_LENGTH} characters.")
    now = now or timezone.now()
    with transaction.atomic():
        locked = _locked_open(discrepancy)
        locked.status = Discrepancy.Status.RESOLVED
        locked.resolved_at = now
        locked.next_retry_at = None
        locked.resolution = f"Resolved manually by {_name(by)}: {note}"
        locked.save(update_fields=["status", "resolved_at", "next_retry_at", "resolution", "updated_at"])
    logger.info("Discrepancy %s resolved manually by %s", locked.pk, _name(by))
    return locked


def alert_acknowledge_once(*, alert: Alert, by: AbstractBaseUser | AnonymousUser) -> Alert:
    """Acknowledge the alert (it leaves the banner); refuses one acknowledged already."""
    with transaction.atomic():
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        if locked.acknowledged_at is not None:
            raise OperatorError(
                f"This alert was already acknowledged by {locked.acknowledged_by or 'someone'} "
                f"at {timezone.localtime(locked.acknowledged_at).strftime('%Y-%m-%d %H:%M')}."
            )
        return alert_acknowledge(alert=locked, by=_name(by))
