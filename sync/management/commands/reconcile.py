"""`python manage.py reconcile`: compare every CRM contact with the ledger, now (the task `sync.reconcile` does the same)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from sync.quota import QuotaDeferred
from sync.reconcile import BULK, COQL, reconcile


class Command(BaseCommand):
    help = (
        "Read every Zoho CRM contact's mapped fields, compare with the ledger, open and close discrepancies."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--method", choices=[COQL, BULK], help="force COQL paging or Bulk Read")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = reconcile(method=options["method"])
        except QuotaDeferred as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"reconciliation {run.pk} ({run.method}): read {run.records_read}, compared {run.contacts_compared}, "
            f"opened {run.opened}, resolved {run.resolved}, linked contacts missing in CRM {run.missing}"
        )
