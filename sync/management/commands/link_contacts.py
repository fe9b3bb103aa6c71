"""Link every contact waiting for its CRM record in one pass over the CRM: `manage.py link_contacts`.

The push does the same on its own once 500 contacts wait (`sync.linking`); run this before a
large first sync so that no push claim waits for a Bulk Read of the whole CRM.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from sync import quota
from sync.linking import crm_links_all
from sync.zoho import ZohoClient


class Command(BaseCommand):
    help = "Link every contact waiting for its CRM record (email, phone, app user id) in one Bulk Read pass."

    def handle(self, *args: Any, **options: Any) -> None:
        with ZohoClient.from_settings() as zoho, quota.urgency(quota.RECONCILE):
            report = crm_links_all(zoho=zoho)
        self.stdout.write(
            f"linked {len(report.linked)}, not in CRM {len(report.not_in_crm)}, "
            f"duplicates {len(report.duplicates)}"
        )
