"""The sync's part of an erasure (docs/erasure.md): compliance sends, the sync answers.

- `retention_holds`: a contact with an open discrepancy is not erased by the retention job yet
  (the discrepancy may still need the person's data to be resolved).
- `contact_erased`: the Campaigns observations of the erased addresses are deleted (the pull
  skips erased addresses from then on, so none is recorded again); the contact's CRM link keeps
  how it was found but not the value; the record of each Zoho call (kept as evidence of what was
  sent) keeps its path and error with the person's values masked.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.db.models import F, Q, Value
from django.db.models.functions import Replace

from compliance.services.erasure import contact_erased
from compliance.services.retention import retention_holds
from sync.models import CampaignsObservation, CrmLink, Discrepancy, ZohoCall

MASK = "[erased]"


def open_discrepancy_holds(*, contact_ids: list[int], **_: Any) -> list[int]:
    return list(
        Discrepancy.objects.filter(contact_id__in=contact_ids, status=Discrepancy.Status.OPEN)
        .values_list("contact_id", flat=True)
        .distinct()
    )


def observations_forget(*, emails: list[str], **_: Any) -> None:
    if emails:
        CampaignsObservation.objects.filter(email__in=emails).delete()


def evidence_mask(*, contact_id: int, emails: list[str], phones: list[str], **_: Any) -> None:
    CrmLink.objects.filter(contact_id=contact_id).update(matched_value="")
    for value in {*emails, *phones}:
        for form in {value, quote(value, safe=""), quote(value)}:
            ZohoCall.objects.filter(Q(path__contains=form) | Q(error__contains=form)).update(
                path=Replace(F("path"), Value(form), Value(MASK)),
                error=Replace(F("error"), Value(form), Value(MASK)),
            )


def connect() -> None:
    retention_holds.connect(open_discrepancy_holds, dispatch_uid="sync_open_discrepancy_holds")
    contact_erased.connect(observations_forget, dispatch_uid="sync_observations_forget")
    contact_erased.connect(evidence_mask, dispatch_uid="sync_evidence_mask")
