from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from compliance.lifecycle.services import lifecycle_cycle


class Command(BaseCommand):
    help = (
        "Run one cycle of the consent lifecycle jobs now, synchronously: double opt-in reminders "
        "and refresh requests that are due, and every mail still queued (sent here, not by a worker)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = lifecycle_cycle(send_grace_s=0)
        self.stdout.write(
            f"reminders queued: {result.reminders}; refresh requests queued: {result.refreshes}; "
            f"mails sent: {result.sent}; send failures: {result.failed}"
        )
