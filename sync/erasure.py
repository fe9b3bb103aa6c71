"""The sync's part of an erasure (docs/erasure.md): compliance sends, the sync answers.

- `retention_holds`: a contact with an open discrepancy is not erased by the retention job yet
  (the discrepancy may still need the person's data to be resolved).
- `contact_erasing` (inside the erasure's transaction): the job that makes Zoho forget the person
  (`sync.erasure_zoho`: CRM records deleted or anonymised, addresses unsubscribed from every
  Campaigns list), durable with the erasure itself; the contact's CRM link keeps how it was found
  but not the value; its discrepancies keep what was found and done, with the person's addresses
  and numbers masked; the Campaigns observations of the erased addresses are deleted (the pull
  skips erased addresses from then on, so none is recorded again).
- `contact_erased` (once committed): the record of each Zoho call (kept as evidence of what was
  sent) keeps its path and error with the person's values masked (a scan of the whole call log,
  kept out of the erasure's transaction).
"""

from __future__ import annotations

from typing import Any

from compliance.services.erasure import contact_erased, contact_erasing
from compliance.services.retention import retention_holds
from sync.masking import calls_mask, discrepancies_mask
from sync.models import CampaignsObservation, CrmLink, Discrepancy


def open_discrepancy_holds(*, contact_ids: list[int], **_: Any) -> list[int]:
    return list(
        Discrepancy.objects.filter(contact_id__in=contact_ids, status=Discrepancy.Status.OPEN)
        .values_list("contact_id", flat=True)
        .distinct()
    )


def observations_forget(*, emails: list[str], **_: Any) -> None:
    if emails:
        CampaignsObservation.objects.filter(email__in=emails).delete()


def evidence_forget(*, contact_id: int, emails: list[str], phones: list[str], **_: Any) -> None:
    """In the erasure's transaction (so a crash after it cannot leave them): the contact's CRM link
    keeps how it was found but not the value; its discrepancies keep what was found, without the
    person's addresses and numbers."""
    CrmLink.objects.filter(contact_id=contact_id).update(matched_value="")
    discrepancies_mask(contact_id=contact_id, values=[*emails, *phones])


def evidence_mask(*, emails: list[str], phones: list[str], **_: Any) -> None:
    calls_mask(values=[*emails, *phones])


def zoho_job_create(**payload: Any) -> None:
    """The erasure's Zoho job, in its transaction (`sync.erasure_zoho`). Imported when an erasure
    happens, not when the app starts: the engine (push, quota) stays out of processes that only
    load the apps, as the client package's own test checks."""
    from sync.erasure_zoho import erasure_zoho_job_create

    erasure_zoho_job_create(**payload)


def connect() -> None:
    retention_holds.connect(open_discrepancy_holds, dispatch_uid="sync_open_discrepancy_holds")
    contact_erasing.connect(zoho_job_create, dispatch_uid="sync_erasure_zoho_job_create")
    contact_erasing.connect(evidence_forget, dispatch_uid="sync_evidence_forget")
    contact_erasing.connect(observations_forget, dispatch_uid="sync_observations_forget")
    contact_erased.connect(evidence_mask, dispatch_uid="sync_evidence_mask")
