"""`manage.py import_consent_csv FILE [--dry-run] [--actor USERNAME]`: consent from older systems.

The whole file or nothing (compliance/services/imports.py; columns in docs/import.md). Exits 1
with every bad row listed when the file is refused, 0 when it was recorded (or, with --dry-run,
would be).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.services.imports import CSV_COLUMNS, consent_csv_import

# How many bad rows the command prints before it only counts them.
SHOW_ERRORS = 200


class Command(BaseCommand):
    help = (
        "Record consent decisions from a CSV file of an older system as source 'import': every row "
        "is checked first, and a file with a bad row records nothing. Columns: "
        + ", ".join(CSV_COLUMNS)
        + " (docs/import.md)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--dry-run", action="store_true", help="Check the file and say what it would record."
        )
        parser.add_argument("--actor", help="The username recorded as the one who imported the file.")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"No user {options['actor']!r}.")
        report = consent_csv_import(data=data, name=path.name, actor_user=actor, dry_run=options["dry_run"])
        self.stdout.write(f"{path.name}: {report.rows} rows, SHA-256 {report.file_sha256}")
        if report.errors:
            for error in report.errors[:SHOW_ERRORS]:
                self.stderr.write(str(error))
            if len(report.errors) > SHOW_ERRORS:
                self.stderr.write(f"... and {len(report.errors) - SHOW_ERRORS} more.")
            raise CommandError(f"{len(report.errors)} bad row(s): nothing was recorded.", returncode=1)
        width = max((len(p) for p, _ in report.by_purpose_status), default=7)
        self.stdout.write(f"{'purpose':<{width}}  {'status':<10}  rows")
        for (purpose, status), count in sorted(report.by_purpose_status.items()):
            self.stdout.write(f"{purpose:<{width}}  {status:<10}  {count}")
        if report.dry_run:
            self.stdout.write("Dry run: nothing was recorded.")
        else:
            self.stdout.write(
                f"Recorded {report.created} decision(s); {report.replayed} were recorded by an earlier import."
            )
