"""The files an erasure deletes (docs/erasure.md, "Logs, caches and files"): the evidence files
that admins attached to corrections of the erased contact (a letter, a recording: the person's
own words), kept under their SHA-256 in CORRECTION_EVIDENCE_DIR.

Deleted once the erasure is committed (`contact_erased`), so a rolled-back erasure keeps them; a
deletion missed then (a crash right after the commit, the disk unavailable) is done by the daily
retention job (`correction_files_sweep`), which finds the files again from the ledger. The events
keep the file's SHA-256, name, size and type: the proof that a file was given stays, its content
goes. A file is content-addressed, so one that another contact's correction also names stays.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet

from compliance.models import ConsentEvent
from compliance.services.corrections import correction_evidence_path
from compliance.services.erasure import contact_erased

logger = logging.getLogger(__name__)


def correction_files_forget(*, contact_id: int, **_: Any) -> int:
    """Delete the contact's correction evidence files; returns how many were deleted."""
    deleted = _files_delete(ConsentEvent.objects.filter(contact_id=contact_id))
    if deleted:
        logger.info("Erasure of contact %s: %s correction evidence files deleted", contact_id, deleted)
    return deleted


def correction_files_sweep() -> int:
    """Delete every correction evidence file that only erased contacts' events name (a deletion the
    erasure missed); returns how many were deleted."""
    deleted = _files_delete(ConsentEvent.objects.filter(contact__erased_at__isnull=False))
    if deleted:
        logger.info("Correction evidence files of erased contacts deleted: %s", deleted)
    return deleted


def _files_delete(events: QuerySet[ConsentEvent]) -> int:
    """The files these events name, but those that an event of a contact not erased names too."""
    digests = set(events.filter(evidence__has_key="file").values_list("evidence__file__sha256", flat=True))
    deleted = 0
    for sha256 in sorted(d for d in digests if isinstance(d, str)):
        if ConsentEvent.objects.filter(
            evidence__file__sha256=sha256, contact__erased_at__isnull=True
        ).exists():
            continue
        try:
            path = correction_evidence_path(sha256)
        except ValueError:
            continue  # not a SHA-256: no file was ever kept under it
        if path.exists():
            path.unlink()
            deleted += 1
    return deleted


def connect() -> None:
    contact_erased.connect(correction_files_forget, dispatch_uid="compliance_correction_files_forget")
