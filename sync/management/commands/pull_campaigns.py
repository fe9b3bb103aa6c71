"""`python manage.py pull_campaigns`: one Campaigns pull, now (the task `sync.campaigns_pull` does the same)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from sync.campaigns_pull import campaigns_pull


class Command(BaseCommand):
    help = "Pull unsubscribes and bounces from the configured Zoho Campaigns lists and recent campaigns."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--list", action="append", dest="lists", help="a list key (default: ZOHO_CAMPAIGNS_LIST_KEYS)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = campaigns_pull(list_keys=options["lists"])
        for name, value in result.as_dict().items():
            if name != "errors":
                self.stdout.write(f"{name}: {value}")
        for error in result.errors:
            self.stderr.write(f"error: {error}")
