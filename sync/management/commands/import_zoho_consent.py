"""`manage.py import_zoho_consent [--dry-run] [--since DATE]`: the consent already in Zoho, into the ledger.

Reads every CRM contact (COQL, or Bulk Read for a large CRM) and every configured Campaigns
list, and records what they say as source ``import`` (sync/imports_zoho.py, docs/import.md).
A run stopped part way (its process killed, Zoho down) is taken over by the next command and
goes on where it stopped. Progress is printed as it goes and shown on /sync/import/.
Exits 0 when the run finished (bad records reported, not fatal), 1 when it could not.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from compliance.models import PolicyVersion
from compliance.services import ConsentRejected
from sync.import_models import ImportRun
from sync.imports_zoho import BATCH, ImportBusy, Progress, import_run_claim, import_run_stop, zoho_import
from sync.imports_zoho_rows import BULK, COQL, method_choose
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoError

# The dry run's table prints at most this many rows, then only counts.
SHOW_ROWS = 10_000
SHOW_PROBLEMS = 200


def _since(text: str) -> datetime:
    moment = parse_datetime(text)
    if moment is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(f"--since {text!r}: give a date (2024-05-01) or an ISO 8601 time.")
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Import the consent already in Zoho CRM and Campaigns into the ledger as source 'import' "
        "(opt-outs as opt-outs, CRM opt-ins as legacy opt-ins). Idempotent; a stopped run resumes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Print what would be recorded; record nothing."
        )
        parser.add_argument("--since", help="Only CRM records modified since this date (or ISO time).")
        parser.add_argument("--method", choices=["auto", COQL, BULK], default="auto")
        parser.add_argument(
            "--policy-version",
            help="The policy version legacy opt-ins cite (default: the one in force on their Consent_Date).",
        )
        parser.add_argument("--batch", type=int, default=BATCH, help="Records per transaction.")
        parser.add_argument(
            "--fresh", action="store_true", help="Abandon a stopped run instead of resuming it."
        )
        parser.add_argument("--by", default="", help="Who asked for the import (shown on the page).")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _since(options["since"]) if options["since"] else None
        dry = bool(options["dry_run"])
        label = options["policy_version"]
        if label and not PolicyVersion.objects.filter(label=label, published_at__isnull=False).exists():
            raise CommandError(f"--policy-version {label!r}: no published policy version has that label.")
        self.started = time.monotonic()
        self.last_print = 0.0
        self.shown = 0
        with ZohoClient.from_settings() as zoho:
            method = options["method"]
            run: ImportRun | None = None
            if not dry:
                if method == "auto":
                    running = ImportRun.objects.filter(status=ImportRun.Status.RUNNING).first()
                    resuming = running is not None and not options["fresh"]
                    method = running.method if resuming and running else method_choose(zoho, since=since)
                try:
                    run = import_run_claim(
                        method=method, since=since, requested_by=options["by"], fresh=options["fresh"]
                    )
                except ImportBusy as exc:
                    raise CommandError(str(exc), returncode=1) from None
                if run.resumed and (run.records_read or run.phase != ImportRun.Phase.CRM):
                    self.stdout.write(
                        f"Resuming import {run.pk} (started {run.started_at:%Y-%m-%d %H:%M:%S}): "
                        f"{run.records_read:,} CRM records done, phase {run.phase}."
                    )
                since, method = run.since, run.method
                self.stdout.write(
                    f"Import {run.pk}: CRM records by {method}"
                    + (f", modified since {since:%Y-%m-%d %H:%M}" if since else "")
                )
            else:
                if method == "auto":
                    method = method_choose(zoho, since=since)
                self.stdout.write(f"Dry run: CRM records by {method}; nothing is recorded.")
                self.stdout.write(
                    f"{'where':<28} {'email':<32} {'purpose':<20} {'status':<10} {'occurred_at':<25} outcome"
                )
            try:
                total = zoho_import(
                    zoho=zoho,
                    run=run,
                    method=method,
                    since=since,
                    policy_label=options["policy_version"],
                    batch=max(1, options["batch"]),
                    report=self._progress,
                )
            except (ZohoError, ConsentRejected) as exc:
                if run is not None:
                    import_run_stop(run, exc)
                raise CommandError(
                    f"The import stopped: {exc}." + (" Run the command again to resume it." if run else ""),
                    returncode=1,
                ) from None
            except BaseException as exc:
                if run is not None:
                    import_run_stop(run, exc)
                raise
        problems = run.problems if run is not None else total.problems
        for problem in problems[:SHOW_PROBLEMS]:
            self.stderr.write(f"{problem['where']}: {problem['reason']}")
        if len(problems) > SHOW_PROBLEMS:
            self.stderr.write(f"... and {len(problems) - SHOW_PROBLEMS} more (see /sync/import/).")
        counts = run.counts() if run is not None else {k: getattr(total, k) for k in ImportRun().counts()}
        verb = "would record" if dry else "recorded"
        head = "Dry run" if run is None else f"Import {run.pk} done"
        self.stdout.write(
            f"{head}: {counts['records_read']:,} CRM records "
            f"and {counts['list_rows_read']:,} Campaigns rows read; "
            f"{(counts['events_recorded'] if not dry else self._would):,} decisions {verb}, "
            f"{counts['events_existing']:,} already in the ledger, {counts['ledger_decides']:,} left to the ledger's "
            f"own decisions, {counts['refused']:,} refused, {counts['records_bad']:,} bad records; "
            f"{time.monotonic() - self.started:.1f} s."
        )

    _would = 0

    def _progress(self, progress: Progress) -> None:
        tally = progress.tally
        if progress.run is None:
            for c in progress.table:
                if c.outcome == "would record":
                    self._would += 1
                if self.shown < SHOW_ROWS:
                    d = c.decision
                    self.stdout.write(
                        f"{c.where:<28} {c.email[:32]:<32} {d.purpose:<20} {d.status:<10} "
                        f"{d.occurred_at.isoformat():<25} {c.outcome}{' (legacy)' if d.evidence.get('legacy') else ''}"
                    )
                    self.shown += 1
            return
        now = time.monotonic()
        if now - self.last_print < 1.0 and tally.records_read + tally.list_rows_read < 10_000:
            return
        self.last_print = now
        run = progress.run
        total = f" of {run.records_total:,}" if run.records_total else ""
        percent = (
            f" ({run.percent} %)" if run.percent is not None and run.phase == ImportRun.Phase.CRM else ""
        )
        self.stdout.write(
            f"[{now - self.started:7.1f} s] {progress.note}: {run.records_read:,}{total} CRM records{percent}, "
            f"{run.list_rows_read:,} list rows; {run.events_recorded:,} recorded, {run.events_existing:,} "
            f"already there, {run.records_bad:,} bad"
        )
