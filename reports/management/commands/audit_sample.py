from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reports.management.commands._making import iso_date, make
from reports.scopes import sample_scope


class Command(BaseCommand):
    help = "Make a signed auditor's sample: N people picked reproducibly from a seed, with their evidence."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", type=int, required=True, help="how many people")
        parser.add_argument("--seed", required=True, help="any text; the same seed picks the same people")
        parser.add_argument(
            "--from", dest="date_from", type=iso_date, help="only people with events from this day"
        )
        parser.add_argument("--to", dest="date_to", type=iso_date, help="... to this day (both or neither)")
        parser.add_argument("--out", type=Path, required=True, help="where to write the PDF")

    def handle(self, *args: Any, **options: Any) -> None:
        make(
            self,
            lambda: sample_scope(
                size=options["size"],
                seed=options["seed"],
                date_from=options["date_from"],
                date_to=options["date_to"],
            ),
            options["out"],
            "audit_sample",
        )
