from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reports.verification import CHECKS, report_verify


class Command(BaseCommand):
    help = (
        "Verify a report PDF: its signature (intact, whole file, chain to the pinned root, signing "
        "time), its attachments, and the report against the ledger. Exit 0 when every check passes, "
        "2 for bad input, else the sum of the failed checks' bits: "
        + ", ".join(f"{bit} {key}" for key, bit, _ in CHECKS)
        + "."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the report PDF")
        parser.add_argument(
            "--trust",
            default=None,
            help="the root certificate to pin (PEM); default: REPORT_TRUST_ROOTS or the demo CA",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verdict = report_verify(options["file"], trust=options["trust"])
        if verdict.bad_input:
            self.stderr.write(verdict.summary())
            sys.exit(verdict.exit_code)
        for check in verdict.checks:
            mark = "ok    " if check.ok else "FAILED"
            self.stdout.write(f"{mark} {check.key} (bit {check.bit}): {check.label}")
            for detail in check.details:
                self.stdout.write(f"         {detail}")
        if verdict.changed_events:
            self.stdout.write("Changed events:")
            for line in verdict.changed_events:
                self.stdout.write(f"  {line}")
            if verdict.changed_count > len(verdict.changed_events):
                self.stdout.write(f"  ... and {verdict.changed_count - len(verdict.changed_events)} more")
        if verdict.erased_events:
            self.stdout.write("Erased since (the events still verify):")
            for line in verdict.erased_events:
                self.stdout.write(f"  {line}")
            if verdict.erased_count > len(verdict.erased_events):
                self.stdout.write(f"  ... and {verdict.erased_count - len(verdict.erased_events)} more")
        self.stdout.write(verdict.summary())
        if not verdict.ok:
            sys.exit(verdict.exit_code)
