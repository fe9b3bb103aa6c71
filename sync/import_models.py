"""The import of the consent already in Zoho: one row per run, with its cursor and progress
(`sync.imports_zoho`, ``manage.py import_zoho_consent``, the page /sync/import/)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.urls import reverse

# A run keeps the first this many problems (bad records, refused decisions) it met.
PROBLEMS_KEPT = 1000


class ImportRun(models.Model):
    """One import of what Zoho CRM and Campaigns say about consent into the ledger.

    ``cursor`` says where the run stands, so that a run whose process died goes on where it
    stopped (the next ``import_zoho_consent`` takes it over): the phase (CRM records, then
    the Campaigns lists), the last CRM record id done (COQL reads in id order), or the Bulk
    Read page (its ``page_token``) and the rows of it done, and the list and row reached.
    ``owner`` (host and process id) and ``heartbeat_at`` tell a live run from a dead one.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Phase(models.TextChoices):
        CRM = "crm", "CRM records"
        CAMPAIGNS = "campaigns", "Campaigns lists"
        DONE = "done", "Done"

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    phase = models.CharField(max_length=10, choices=Phase.choices, default=Phase.CRM)
    method = models.CharField(max_length=10, help_text="coql or bulk: how the CRM records are read.")
    since = models.DateTimeField(null=True, blank=True, help_text="Only CRM records modified since then.")
    requested_by = models.CharField(max_length=150, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    owner = models.CharField(max_length=200, blank=True, help_text="host:pid of the process running it.")
    resumed = models.PositiveIntegerField(default=0, help_text="Times a stopped run was taken over.")
    cursor = models.JSONField(default=dict, blank=True)
    records_total = models.PositiveIntegerField(
        null=True, blank=True, help_text="CRM records to read, when known (a Bulk Read page says)."
    )
    records_read = models.PositiveIntegerField(default=0)
    records_bad = models.PositiveIntegerField(default=0, help_text="Records that could not be read.")
    list_rows_read = models.PositiveIntegerField(default=0)
    events_recorded = models.PositiveIntegerField(default=0)
    events_existing = models.PositiveIntegerField(
        default=0, help_text="Already in the ledger (an earlier run recorded them)."
    )
    ledger_decides = models.PositiveIntegerField(
        default=0, help_text="Not imported: the ledger holds a decision from elsewhere for the purpose."
    )
    refused = models.PositiveIntegerField(default=0, help_text="Decisions the ledger's rules refused.")
    problems = models.JSONField(default=list, blank=True, help_text=f"The first {PROBLEMS_KEPT}.")
    error = models.TextField(blank=True)

    class Meta:
        constraints = [
            # One run at a time: a second `import_zoho_consent` takes the running one over (when
            # its process is gone) or refuses; it never starts another beside it.
            models.UniqueConstraint(
                fields=["status"],
                condition=models.Q(status="running"),
                name="sync_importrun_one_running",
            ),
        ]
        indexes = [
            # The page's list of runs, newest first.
            models.Index(fields=["-started_at"], name="sync_importrun_newest"),
        ]

    def __str__(self) -> str:
        return f"import {self.pk} ({self.method}, {self.status})"

    def get_absolute_url(self) -> str:
        return reverse("sync:import_list") + f"#run-{self.pk}"

    @property
    def percent(self) -> int | None:
        """How far the CRM phase got, when the number of records is known."""
        if self.phase != self.Phase.CRM:
            return 100
        if not self.records_total:
            return None
        return min(100, round(100 * self.records_read / self.records_total))

    def counts(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "records_bad": self.records_bad,
            "list_rows_read": self.list_rows_read,
            "events_recorded": self.events_recorded,
            "events_existing": self.events_existing,
            "ledger_decides": self.ledger_decides,
            "refused": self.refused,
        }
