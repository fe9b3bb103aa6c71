"""The sync's part of an erasure (docs/erasure.md): compliance sends, the sync answers.

- `retention_holds`: a contact with an open discrepancy is not erased by the retention job yet
  (the discrepancy may still need the person's data to be resolved).
- `contact_erased`: the Campaigns observations of the erased addresses are deleted (the pull
  skips erased addresses from then on, so none is recorded again).
"""

from __future__ import annotations

from typing import Any

from compliance.services.erasure import contact_erased
from compliance.services.retention import retention_holds
from sync.models import CampaignsObservation, Discrepancy


def open_discrepancy_holds(*, contact_ids: list[int], **_: Any) -> list[int]:
    return list(
        Discrepancy.objects.filter(contact_id__in=contact_ids, status=Discrepancy.Status.OPEN)
        .values_list("contact_id", flat=True)
        .distinct()
    )


def observations_forget(*, emails: list[str], **_: Any) -> None:
    if emails:
        CampaignsObservation.objects.filter(email__in=emails).delete()


def connect() -> None:
    retention_holds.connect(open_discrepancy_holds, dispatch_uid="sync_open_discrepancy_holds")
    contact_erased.connect(observations_forget, dispatch_uid="sync_observations_forget")
