from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reports.management.commands._making import iso_date, make
from reports.scopes import period_scope


class Command(BaseCommand):
    help = "Make a signed period audit report (PDF/A-3b with events.csv and manifest.json) now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from", dest="date_from", type=iso_date, required=True, help="first day, YYYY-MM-DD (UTC)"
        )
        parser.add_argument("--to", dest="date_to", type=iso_date, required=True, help="last day, included")
        parser.add_argument("--purpose", action="append", default=[], help="only this purpose (repeatable)")
        parser.add_argument("--source", action="append", default=[], help="only this source (repeatable)")
        parser.add_argument("--out", type=Path, required=True, help="where to write the PDF")

    def handle(self, *args: Any, **options: Any) -> None:
        make(
            self,
            lambda: period_scope(
                date_from=options["date_from"],
                date_to=options["date_to"],
                purposes=options["purpose"],
                sources=options["source"],
            ),
            options["out"],
            "audit_report",
        )
