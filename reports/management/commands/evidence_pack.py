from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reports.management.commands._making import make
from reports.scopes import contact_scope


class Command(BaseCommand):
    help = "Make a signed evidence pack for one person (by email or contact id) now."

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--email", help="the person's email address (current)")
        who.add_argument("--contact", type=int, help="the person's contact id")
        parser.add_argument("--out", type=Path, required=True, help="where to write the PDF")

    def handle(self, *args: Any, **options: Any) -> None:
        make(
            self,
            lambda: contact_scope(email=options["email"] or "", contact_id=options["contact"]),
            options["out"],
            "evidence_pack",
        )
