"""Re-permission through Zoho Campaigns: the sync's action of a re-permission run.

`compliance.lifecycle.repermission` runs the admin's re-permission (after a new policy version)
and knows nothing of Zoho; the sync registers this action with it (`SyncConfig.ready`). It adds
each target's address to the list ZOHO_REPERMISSION_LIST_KEY (``json/listsubscribe``, one call
per address: Zoho's bulk add takes ten addresses and answers no per-address outcome), from which
a Campaigns mail asks those people to opt in again. An address Zoho refuses is a failed target
(its error kept); a transient error propagates, and the run's task retries the batch. Each
address Campaigns took is marked at once (`sync.taken`, under the run and the target) and the
retry does not add it again: on a double opt-in list each add may mail the person a confirmation
again, and an add sets a contact who unsubscribed meanwhile back to active. So the batch makes
progress however often Campaigns fails, and nobody is asked twice. A target whose contact is held
by "do not contact" (an erased person's address came back: `compliance.lifecycle.suppressions`)
is never subscribed; the run leaves such contacts out before, so here it is a refused target, in
case one gets by.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings

from compliance.lifecycle.suppressions import DO_NOT_CONTACT, do_not_contact
from compliance.models import RepermissionTarget
from sync.taken import taken, taken_mark

if TYPE_CHECKING:
    from sync.zoho import ZohoClient

logger = logging.getLogger(__name__)

SOURCE = "Consent Desk re-permission"


def repermission_list_available() -> bool:
    return bool(settings.ZOHO_REPERMISSION_LIST_KEY)


def repermission_list_add(
    run: Any, targets: Sequence[Any], *, zoho: ZohoClient | None = None
) -> dict[int, str]:
    """Add the targets' addresses to the re-permission list; {target id: error} for those refused."""
    # The Zoho client imported when a run adds its addresses, not when the app is ready (this
    # module is imported then): it costs every process 0.15 s to start.
    from sync.zoho import ZohoClient
    from sync.zoho.errors import ZohoPermanentError

    list_key = settings.ZOHO_REPERMISSION_LIST_KEY
    if not list_key:
        return {t.target_id: "ZOHO_REPERMISSION_LIST_KEY is not set" for t in targets}
    held = set(
        RepermissionTarget.objects.filter(
            pk__in=[t.target_id for t in targets], contact_id__in=do_not_contact().values("contact_id")
        ).values_list("pk", flat=True)
    )
    errors: dict[int, str] = {t.target_id: DO_NOT_CONTACT for t in targets if t.target_id in held}
    targets = [t for t in targets if t.target_id not in held]
    if not targets:
        return errors
    zoho = zoho or ZohoClient.from_settings()
    added: dict[str, str] = {}
    keys = {target.target_id: _taken_key(run, target.target_id) for target in targets}
    added_before = taken(keys.values())
    for target in targets:
        email = target.email.lower()
        if email in added:  # one address, several purposes: one call
            if added[email]:
                errors[target.target_id] = added[email]
            continue
        if keys[target.target_id] in added_before:  # an earlier attempt of this batch added it
            added[email] = ""
            continue
        try:
            zoho.campaigns.subscribe(list_key, target.email, source=SOURCE)
            added[email] = ""
            taken_mark(keys[target.target_id])
        except ZohoPermanentError as exc:
            logger.warning("Campaigns refused a re-permission address (run %s): %s", run.pk, exc.code)
            added[email] = f"Zoho Campaigns refused it: {exc}"[:500]
            errors[target.target_id] = added[email]
    return errors


def _taken_key(run: Any, target_id: int) -> str:
    # The run's creation instant too: ids alone could name another database's run.
    return f"repermission-added:{run.pk}:{run.created_at.timestamp()}:{target_id}"
