"""`python manage.py sync_now`: one full sync cycle, synchronously, for operators and tests.

Push every pending outbox row (100 contacts per call), verify what is due
(``--verify-now``: every pending push, ignoring the delay), run the retries that
are due, then pull Campaigns and seal the ledger (``--no-pull`` skips those two).
The same services the Celery tasks run. A batch that meets a transient Zoho error
(429, 5xx, timeout) is not retried here: it goes back to the outbox for the
periodic sweep, whose task retries with backoff, and the push stops.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from compliance.services import ledger_seal
from sync.campaigns_pull import campaigns_pull
from sync.outbox import outbox_claim, outbox_release
from sync.push import PushReport, outbox_batch_push
from sync.verify import discrepancies_retry_due, pushes_verify_due
from sync.zoho import ZohoClient, ZohoTransientError

# A batch left after a transient error waits this long (one sweep interval) before a
# sweep claims it again: Zoho has just refused it.
RELEASE_DELAY = timedelta(seconds=30)


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
        while claim := outbox_claim(worker="sync_now"):
            try:
                total.merge(outbox_batch_push(claim=claim, zoho=zoho))
            except ZohoTransientError as exc:
                left = outbox_release(claim=claim, delay=RELEASE_DELAY)
                self.stderr.write(
                    f"push: stopped at a transient Zoho error ({exc}); {len(claim.contact_ids)} contact(s), "
                    f"{left} outbox row(s) left for the periodic sweep"
                )
                break
        return total

    def _pull_and_seal(self) -> None:
        result = campaigns_pull()
        summary = ", ".join(f"{k} {v}" for k, v in result.as_dict().items() if k != "errors")
        self.stdout.write(f"campaigns pull: {summary}")
        for error in result.errors:
            self.stderr.write(f"campaigns pull error: {error}")
        seal = ledger_seal()
        self.stdout.write(f"seal: {seal.sequence if seal else 'nothing new to seal'}")
