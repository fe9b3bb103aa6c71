from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from compliance.services import ledger_seal


class Command(BaseCommand):
    help = "Seal every ledger event recorded since the previous seal."

    def handle(self, *args: Any, **options: Any) -> None:
        seal = ledger_seal()
        if seal is None:
            self.stdout.write("nothing to seal: no events since the last seal")
        else:
            self.stdout.write(
                f"seal {seal.sequence}: {seal.event_count} events up to id {seal.last_event_id}, hash {seal.hash}"
            )
