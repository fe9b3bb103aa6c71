from collections.abc import Mapping
from typing import Any

from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "sync"
    verbose_name = "Zoho sync"

    def ready(self) -> None:
        from compliance.panels import consent_status_register, contact_panel_register
        from sync import (
            checks,  # noqa: F401  (registers the system checks)
            webhooks_admin,  # noqa: F401  (registers the webhook admin pages)
        )
        from sync.erasure import connect as erasure_connect
        from sync.erasure_caches import connect as erasure_caches_connect

        # An erasure's Zoho side, and the retention job's holds (compliance sends signals).
        erasure_connect()
        erasure_caches_connect()

        # The contact page's "Zoho proof" and each purpose's "zoho" status in the API (compliance
        # never imports the sync: it asks whoever registered).
        contact_panel_register(name="zoho_proof", provider=_proof_panel, order=10)
        consent_status_register(name="zoho", provider=_proof_statuses)

        # A re-permission run's "add to a Campaigns list" action (compliance.lifecycle.repermission).
        from compliance.lifecycle.repermission import repermission_action_register
        from sync.repermission import repermission_list_add, repermission_list_available

        repermission_action_register(
            action="campaigns_list",
            label="Add the addresses to the Zoho Campaigns re-permission list",
            handler=repermission_list_add,
            available=repermission_list_available,
        )


# sync.proof, imported when a page or an answer asks for it, not when the app is ready: it brings
# the Zoho client (0.15 s), which every process (verify_ledger, each management command) imported.
def _proof_panel(request: Any, contact: Any) -> Any:
    from sync.proof import proof_panel

    return proof_panel(request, contact)


def _proof_statuses(contact: Any) -> Mapping[str, Mapping[str, Any]]:
    from sync.proof import proof_statuses

    return proof_statuses(contact)
