"""Whom the lifecycle must not contact at all: a contact held by an active suppression "Erased
before: do not contact" (issue 14, item 3: an erased person's address or number came back,
`compliance.services.erased_identifiers`). The CRM projection (sync/projection.py) already sends
no consent for them; the lifecycle's mails (confirmation, reminder, refresh, re-permission), the
re-permission targets and the re-permission Campaigns list leave them out too. A hard bounce or a
complaint is a reason not to mail that address, not "do not contact": it does not hold them here.
"""

from __future__ import annotations

from django.db.models import QuerySet

from compliance.models import Suppression

# Why a contact was left out, as its message (`last_error`) or re-permission target (`error`) says.
DO_NOT_CONTACT = "Do not contact: an erased person had this address or number."


def do_not_contact() -> QuerySet[Suppression]:
    """The active (not lifted) "do not contact" suppressions, on every channel: filter them by
    ``contact_id`` (or use ``.values("contact_id")`` as a subquery)."""
    return Suppression.objects.filter(kind=Suppression.Kind.ERASED, lifted_at__isnull=True)
