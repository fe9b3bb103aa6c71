from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.verification import ledger_verify


class Command(BaseCommand):
    help = "Verify the ledger's hash chains, seals and current states; exit 1 naming the first broken point."
    # It reads the ledger and serves nothing: Django's system checks would import every view
    # (the URL checks) first, 0.35 s of its start on a 2-core machine. `manage.py check` runs them.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--seal-log",
            type=Path,
            default=None,
            help="Also check the database's seals against this copy (default: LEDGER_SEAL_LOG if it exists).",
        )
        parser.add_argument("--no-seal-log", action="store_true", help="Do not read the seal log.")

    def handle(self, *args: Any, **options: Any) -> None:
        seal_log = options["seal_log"]
        if seal_log is None and not options["no_seal_log"] and settings.LEDGER_SEAL_LOG.exists():
            seal_log = settings.LEDGER_SEAL_LOG
        verdict = ledger_verify(seal_log=None if options["no_seal_log"] else seal_log)
        if not verdict.ok:
            raise CommandError(verdict.summary())
        self.stdout.write(verdict.summary())
