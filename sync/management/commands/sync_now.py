"""`python manage.py sync_now`: one full sync cycle, synchronously, for operators and tests.

Push every pending outbox row (100 contacts per call), verify what is due
(``--verify-now``: every pending push, ignoring the delay), run the retries that
are due, then pull Campaigns and seal the ledger. The same services the Celery
tasks run.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from compliance.services import ledger_seal
from sync.outbox import outbox_claim, outbox_release
from sync.push import PushReport, outbox_batch_push
from sync.verify import discrepancies_retry_due, pushes_verify_due
from sync.zoho import ZohoClient, ZohoTransientError

# A batch that meets a transient error is tried this often (backing off) before it is left for the sweep.
ATTEMPTS = 4


class Command(BaseCommand):
    help = "Run one sync cycle now: push pending changes, verify, retry, pull Campaigns, seal."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--verify-now",
            action="store_true",
            help="verify every pending push now, ignoring the verify delay",
        )
        parser.add_argument("--no-pull", action="store_true", help="skip the Campaigns pull and the seal")

    def handle(self, *args: Any, **options: Any) -> None:
        with ZohoClient.from_settings() as zoho:
            report = self._push_all(zoho)
            self.stdout.write(
                f"push: {len(report.pushed)} pushed in {report.calls} update call(s), {len(report.skipped)} "
                f"already pushed, {len(report.not_in_crm)} not in CRM, {len(report.duplicates)} duplicate(s), "
                f"{len(report.rejected)} rejected, {report.unsubscribed} Campaigns unsubscribe(s)"
            )
            verified = pushes_verify_due(zoho=zoho, ignore_delay=options["verify_now"])
            self.stdout.write(
                f"verify: {verified.verified} verified, {verified.mismatched} mismatched, "
                f"{verified.superseded} superseded, {verified.missing} record(s) missing"
            )
            retried = discrepancies_retry_due(zoho=zoho)
            self.stdout.write(
                f"retry: {retried.discrepancies} discrepancies, {retried.contacts} contact(s) re-pushed"
            )
        if options["no_pull"]:
            return
        self._pull_and_seal()

    def _push_all(self, zoho: ZohoClient) -> PushReport:
        total = PushReport()
        while True:
            claim = outbox_claim(worker="sync_now")
            if not claim:
                return total
            for attempt in range(ATTEMPTS):
                try:
                    total.merge(outbox_batch_push(claim=claim, zoho=zoho))
                    break
                except ZohoTransientError as exc:
                    if attempt == ATTEMPTS - 1:
                        self.stderr.write(f"push: batch left for the next sweep after {exc}")
                        outbox_release(claim=claim, delay=timedelta(seconds=30))
                        return total
                    time.sleep(2**attempt)

    def _pull_and_seal(self) -> None:
        try:
            from sync.campaigns_pull import campaigns_pull
        except ImportError:
            self.stdout.write("campaigns pull: not available yet, skipped")
        else:
            result = campaigns_pull()
            summary = ", ".join(f"{k} {v}" for k, v in result.as_dict().items() if k != "errors")
            self.stdout.write(f"campaigns pull: {summary}")
            for error in result.errors:
                self.stderr.write(f"campaigns pull error: {error}")
        seal = ledger_seal()
        self.stdout.write(f"seal: {seal.sequence if seal else 'nothing new to seal'}")
