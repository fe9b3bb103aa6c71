"""The desk's pre-aggregated figures (compliance/tallies.py) and the nightly ledger checks
(compliance/verify_runs.py): kept by beat, read by the overview and trends pages."""

from __future__ import annotations

from django.db import models

from compliance.models import ConsentStatus, Purpose, Source


class ConsentDay(models.Model):
    """How many events of one day (occurred_at, UTC) moved a purpose's consent from one status to
    another, per source: the overview's and the trends page's figures, without reading events.

    Written only by `compliance.tallies.consent_day_tally` (beat), which adds the events recorded
    since its mark (`ConsentDayMark`); the pages count the few events past the mark themselves.
    """

    day = models.DateField()
    # No index of its own: nothing looks tallies up by purpose alone (the pages read by day).
    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    source = models.CharField(max_length=20, choices=Source.choices)
    previous_status = models.CharField(max_length=20, choices=ConsentStatus.choices, blank=True)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices)
    # Whether these events became their chain's current decision (`advance_state`: a decision
    # that occurred before the current one is recorded, and changes no one's status).
    moved = models.BooleanField(default=True)
    events = models.PositiveIntegerField()

    class Meta:
        constraints = [
            # Also the pages' index: every read is a range of days.
            models.UniqueConstraint(
                fields=["day", "purpose", "source", "previous_status", "status", "moved"],
                name="compliance_consentday_one_group",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.purpose_id} {self.source} {self.previous_status or '-'}→{self.status}: {self.events}"


class ConsentCount(models.Model):
    """How many contacts' consent to a purpose is in a status, as of `ConsentDayMark`: the
    overview's "consent now" without counting `ConsentState`. Written with `ConsentDay`."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    status = models.CharField(max_length=20, choices=ConsentStatus.choices)
    contacts = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "status"], name="compliance_consentcount_one_per_status"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id} {self.status}: {self.contacts}"


class OptInCount(models.Model):
    """How many contacts' current consent to a purpose is an opt-in citing a policy version (0:
    none), and whether it was imported without the person's own evidence (`evidence.legacy`), as
    of `ConsentDayMark`: the policies pages' and the re-permission view's counts without counting
    `ConsentState`'s millions of opt-ins. Written with `ConsentDay` (`compliance.tallies`); the
    pages add the events past the mark."""

    purpose = models.ForeignKey(Purpose, on_delete=models.PROTECT, related_name="+", db_index=False)
    # The cited version's id, or 0 for none: a plain number, so that the key has no NULL (a tally
    # needs no foreign key, and an upsert on a key with a NULL would add a row each time).
    policy = models.BigIntegerField(help_text="The policy version cited (its id), 0 for none.")
    legacy = models.BooleanField(default=False)
    opted_in = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["purpose", "policy", "legacy"], name="compliance_optincount_one_group"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.purpose_id} {self.policy}{' legacy' if self.legacy else ''}: {self.opted_in} current opt-ins"


class ConsentDayMark(models.Model):
    """The one row saying up to which event id `ConsentDay` has counted (every event at or below it)."""

    last_event_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"consent tallies up to event {self.last_event_id}"


class VerifyRun(models.Model):
    """One run of the ledger check (`verify_ledger`'s), by beat every night or by hand, and its verdict."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(null=True, help_text="Null while running, or when the run itself failed.")
    events_checked = models.PositiveBigIntegerField(default=0)
    chains_checked = models.PositiveBigIntegerField(default=0)
    seals_checked = models.PositiveIntegerField(default=0)
    identity_events_checked = models.PositiveBigIntegerField(default=0)
    problem = models.TextField(blank=True, help_text="The first broken point, or why the run failed.")

    class Meta:
        indexes = [
            # The overview: the latest run.
            models.Index(fields=["-started_at"], name="compliance_verifyrun_newest"),
        ]

    def __str__(self) -> str:
        verdict = (
            "running"
            if self.finished_at is None
            else "failed"
            if self.ok is None
            else ("intact" if self.ok else "BROKEN")
        )
        return f"verify run {self.started_at:%Y-%m-%d %H:%M}: {verdict}"
