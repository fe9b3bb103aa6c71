"""The files an erasure deletes (docs/erasure.md, "Logs, caches and files"):

- the evidence files that admins attached to corrections of the erased contact (a letter, a
  recording: the person's own words), kept under their SHA-256 in CORRECTION_EVIDENCE_DIR. The
  events keep the file's SHA-256, name, size and type: the proof that a file was given stays, its
  content goes. A file is content-addressed, so one that another contact's correction also names
  stays;
- the copies of the mails sent to the person that the file mail backend wrote (EMAIL_FILE_PATH,
  `make demo`), found by the Message-ID that the mail's row keeps.

Deleted once the erasure is committed (`contact_erased`), so a rolled-back erasure keeps them; a
deletion missed then (a crash right after the commit, the disk unavailable) is done by the daily
retention job (`erasure_files_sweep`), which finds the files again from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from compliance.lifecycle.models import LifecycleMessage
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


def sent_mail_files_forget(*, contact_id: int, **_: Any) -> int:
    """Delete the file backend's copies of the mails sent to the contact; returns how many."""
    deleted = _mail_files_delete(
        LifecycleMessage.objects.filter(contact_id=contact_id).values_list("message_id", flat=True)
    )
    if deleted:
        logger.info("Erasure of contact %s: %s sent-mail files deleted", contact_id, deleted)
    return deleted


def erasure_files_sweep() -> int:
    """Delete every file an erasure should have deleted but missed: the correction evidence files
    that only erased contacts' events name, and the sent-mail files of mails to erased contacts.
    Returns how many were deleted."""
    deleted = _files_delete(ConsentEvent.objects.filter(contact__erased_at__isnull=False))
    deleted += _mail_files_delete(
        LifecycleMessage.objects.filter(contact__erased_at__isnull=False).values_list("message_id", flat=True)
    )
    if deleted:
        logger.info("Files kept of erased contacts deleted: %s", deleted)
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


# What Django's file mail backend writes after each message of a file.
_MAIL_FILE_SEPARATOR = b"\n" + b"-" * 79 + b"\n"


def _mail_files_delete(message_ids: Iterable[str]) -> int:
    """Delete each file of EMAIL_FILE_PATH that holds a mail with one of these Message-IDs (only
    while the file backend is the one in use: no other backend keeps a copy of what it sent)."""
    if settings.EMAIL_BACKEND != "django.core.mail.backends.filebased.EmailBackend":
        return 0
    wanted = set(message_ids)
    directory = Path(settings.EMAIL_FILE_PATH)
    if not wanted or not directory.is_dir():
        return 0
    deleted = 0
    for path in sorted(directory.iterdir()):
        if path.is_file() and wanted & _message_ids(path.read_bytes()):
            path.unlink()
            deleted += 1
    return deleted


def _message_ids(written: bytes) -> set[str]:
    """The Message-IDs of the mails one file of the file backend holds."""
    parser = BytesHeaderParser()
    found = set()
    for message in written.split(_MAIL_FILE_SEPARATOR):
        message_id = parser.parsebytes(message).get("Message-ID") if message.strip() else None
        if message_id:
            found.add(str(message_id).strip())
    return found


def connect() -> None:
    contact_erased.connect(correction_files_forget, dispatch_uid="compliance_correction_files_forget")
    contact_erased.connect(sent_mail_files_forget, dispatch_uid="compliance_sent_mail_files_forget")
