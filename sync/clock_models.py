"""The opt-out clock's rows: one per withdrawal, and the cursor over the events (sync/optout_clock.py)."""

from __future__ import annotations

from django.db import models

from sync.models import SyncPush

OPEN_CLOCK = models.Q(effective_at__isnull=True, superseded_at__isnull=True)


class WithdrawalClock(models.Model):
    """One withdrawal's way to Zoho (`sync.optout_clock`): when it was recorded, verified in CRM
    and unsubscribed in each Campaigns list, and when it was in effect everywhere.

    A withdrawal is an event less permissive than the one before it (opted in or pending, then
    opted out or expired). The row is written when the sync first sees the event, and its legs
    as they happen (the read-back that verifies a push carrying it, each Campaigns unsubscribe);
    the pages read only the open rows (a bounded set) and the completed ones of a window.
    """

    event = models.OneToOneField("compliance.ConsentEvent", on_delete=models.PROTECT, related_name="+")
    contact = models.ForeignKey(
        "compliance.Contact", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    purpose = models.ForeignKey("compliance.Purpose", on_delete=models.PROTECT, related_name="+")
    version = models.PositiveIntegerField(help_text="The event's version in its chain.")
    recorded_at = models.DateTimeField()
    deadline_at = models.DateTimeField(help_text="OPT_OUT_DEADLINE_BUSINESS_DAYS business days later.")
    alert_at = models.DateTimeField(help_text="When the deadline alert goes out if still not in effect.")
    crm_required = models.BooleanField(
        help_text="False when no active mapping carries the purpose to CRM, or the contact is not in CRM."
    )
    crm_verified_at = models.DateTimeField(null=True, blank=True)
    crm_push = models.ForeignKey(SyncPush, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    lists_required = models.JSONField(default=list, blank=True, help_text="Campaigns list keys.")
    lists_unsubscribed = models.JSONField(
        default=dict, blank=True, help_text="List key -> when it was unsubscribed there (ISO 8601)."
    )
    effective_at = models.DateTimeField(null=True, blank=True)
    business_days_to_effect = models.FloatField(null=True, blank=True)
    superseded_at = models.DateTimeField(
        null=True, blank=True, help_text="A newer opt-in replaced it before it took effect everywhere."
    )
    started_at = models.DateTimeField(help_text="When the sync first saw the withdrawal.")

    class Meta:
        indexes = [
            # The page and the settle sweep: open withdrawals, oldest first.
            models.Index(fields=["recorded_at", "id"], condition=OPEN_CLOCK, name="sync_wclock_open"),
            # The hooks: a contact's open withdrawals (`filter(contact_id__in=...)` on open rows).
            models.Index(fields=["contact"], condition=OPEN_CLOCK, name="sync_wclock_open_contact"),
            # The alert sweep: open withdrawals whose alert time has come.
            models.Index(fields=["alert_at"], condition=OPEN_CLOCK, name="sync_wclock_alert_due"),
            # The median and p95 of a window: completed withdrawals by when they took effect.
            models.Index(
                fields=["effective_at"],
                include=["recorded_at", "business_days_to_effect"],
                condition=models.Q(effective_at__isnull=False),
                name="sync_wclock_effective",
            ),
        ]

    def __str__(self) -> str:
        return f"withdrawal {self.event_id} ({self.purpose_id}) recorded {self.recorded_at:%Y-%m-%d %H:%M}"


class WithdrawalClockMark(models.Model):
    """The one row saying up to which event id withdrawals have clocks (every event at or below it)."""

    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
    # The time to effect over the window (`optout_clock.TimeToEffect`), as the last clock run
    # computed it, and when: the page shows them while they are recent.
    effect_figures = models.JSONField(null=True, blank=True)
    effect_figures_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"withdrawal clocks up to event {self.last_event_id}"
