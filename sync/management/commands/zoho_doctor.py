"""Check the Zoho setup before the first sync: `manage.py zoho_doctor` (exit 0: all is well; 1: failures)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sync.diagnostics import FAIL, OK, WARN, zoho_diagnose
from sync.zoho import ZohoClient

MARKS = {OK: "ok  ", FAIL: "FAIL", WARN: "warn"}


class Command(BaseCommand):
    help = "Check the Zoho setup (token, scopes, API user, fields, workflows, lists, credits); exit 1 on a failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--probe-record",
            default=None,
            help="A CRM record id to write, wait for and read back (default: ZOHO_DIAGNOSTIC_RECORD_ID).",
        )
        parser.add_argument(
            "--wait", type=float, default=30.0, help="Seconds between the probe's write and its read-back."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        with ZohoClient.from_settings() as zoho:
            diagnosis = zoho_diagnose(
                zoho=zoho, probe_record_id=options["probe_record"], probe_wait_s=options["wait"]
            )
        for check in diagnosis.checks:
            self.stdout.write(f"[{MARKS.get(check.status, 'skip')}] {check.title}: {check.detail}")
            if check.fix:
                self.stdout.write(f"       fix: {check.fix}")
        failures = diagnosis.failures
        if failures:
            self.stdout.write(self.style.ERROR(f"{len(failures)} of {len(diagnosis.checks)} checks failed."))
            raise SystemExit(1)
        self.stdout.write(self.style.SUCCESS(f"All {len(diagnosis.checks)} checks passed."))
