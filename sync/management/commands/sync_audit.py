"""`python manage.py sync_audit`: check now that no change is stranded (the task `sync.audit` does the same).

Exits 0 when every contact is in step, queued, awaiting its read-back or flagged; 1 when it
found (and re-queued) stranded contacts, each of which is a bug worth reporting.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from sync.audit import sync_audit


class Command(BaseCommand):
    help = (
        "Find contacts whose ledger state differs from their last verified push with no queued push, "
        "no push awaiting read-back and no open discrepancy; re-queue them. No Zoho calls."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = sync_audit()
        self.stdout.write(f"{len(report.stranded)} of {report.checked} contacts stranded")
        if report.stranded:
            shown = ", ".join(str(c) for c in report.stranded[:20])
            more = f" and {len(report.stranded) - 20} more" if len(report.stranded) > 20 else ""
            self.stderr.write(f"re-queued contacts {shown}{more}")
            raise SystemExit(1)
