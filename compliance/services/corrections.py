"""Decisions people record at the desk: an officer's phone request and an admin's correction.

Both are ordinary events through the one write path (`consent_record`), with the signed-in
user as the actor: a phone request from source `customer_service` (the person spoke), a
correction from source `admin` with a required reason and, optionally, an evidence file.

A page shows the outcome before anything is written (`consent_preview` runs the ledger's own
rules and reads the chain's current state), then records the same decision, under the
idempotency key the preview chose: a confirmation posted twice records one event.

Evidence files are checked (size, type by extension and by their first bytes) and staged when
the correction is previewed (`correction_file_stage`), and kept for good, named by their
SHA-256 under CORRECTION_EVIDENCE_DIR, only when it is recorded: a file this function put
there is removed again when the event is not written, so no file outlives a failed write.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from compliance.models import ConsentState, ConsentStatus, Contact, Purpose, Source
from compliance.services.consent import (
    ConsentDecision,
    Lookups,
    RecordResult,
    consent_check,
    consent_input_check,
    consent_record,
)
from compliance.services.errors import ConsentForbidden, ConsentRejected

PHONE_PERMISSION = "compliance.record_phone_consent"
CORRECTION_PERMISSION = "compliance.correct_consent"
# A staged file nobody confirmed within this time is removed by the next staging.
STAGED_MAX_AGE_S = 24 * 3600
# What a file must begin with, per MIME type (text types are checked as UTF-8 instead).
MAGIC = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}
TEXT_TYPES = frozenset({"text/plain", "message/rfc822"})
NAME_MAX = 200


@dataclass(frozen=True)
class Preview:
    """What recording a decision would do to the contact's consent for its purpose."""

    purpose: Purpose
    current_status: str
    current_frequency: str
    status: str
    frequency: str
    # False when the person's newer decision stays current (the event is recorded all the same).
    becomes_current: bool

    @property
    def changes(self) -> bool:
        return self.becomes_current and (self.current_status, self.current_frequency) != (
            self.status,
            self.frequency,
        )

    def label(self, status: str) -> str:
        return ConsentStatus(status).label if status else "No decision yet"

    @property
    def current_label(self) -> str:
        return self.label(self.current_status)

    @property
    def status_label(self) -> str:
        return self.label(self.status)


@dataclass(frozen=True)
class StagedFile:
    """An evidence file checked and waiting for its correction to be confirmed."""

    token: str
    sha256: str
    name: str
    size: int
    content_type: str

    def as_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> StagedFile:
        return cls(**{key: payload[key] for key in ("token", "sha256", "name", "size", "content_type")})

    @property
    def evidence(self) -> dict[str, Any]:
        """What the event's evidence says of the file: enough to find it and prove it unchanged."""
        return {
            "sha256": self.sha256,
            "name": self.name,
            "size": self.size,
            "content_type": self.content_type,
        }


def phone_request_decision(
    *,
    purpose: str,
    status: str,
    frequency: str,
    policy_version: str,
    note: str,
    occurred_at: datetime,
    idempotency_key: str,
) -> ConsentDecision:
    """A decision the person gave on the phone: source customer_service, the note as its reason."""
    return ConsentDecision(
        purpose=purpose,
        status=status,
        source=Source.CUSTOMER_SERVICE,
        occurred_at=occurred_at,
        idempotency_key=idempotency_key,
        frequency=frequency or None,
        policy_version=policy_version or None,
        evidence={"channel": "phone"},
        reason=note,
    )


def correction_decision(
    *,
    purpose: str,
    status: str,
    frequency: str,
    policy_version: str,
    reason: str,
    occurred_at: datetime,
    idempotency_key: str,
    evidence_file: StagedFile | None = None,
) -> ConsentDecision:
    """A compensating event from source admin; the evidence names the file, if one was attached."""
    evidence: dict[str, Any] = {"correction": True}
    if evidence_file is not None:
        evidence["file"] = evidence_file.evidence
    return ConsentDecision(
        purpose=purpose,
        status=status,
        source=Source.ADMIN,
        occurred_at=occurred_at,
        idempotency_key=idempotency_key,
        frequency=frequency or None,
        policy_version=policy_version or None,
        evidence=evidence,
        reason=reason,
    )


def _may(actor_user: AbstractBaseUser, decision: ConsentDecision) -> None:
    permission = CORRECTION_PERMISSION if decision.source == Source.ADMIN else PHONE_PERMISSION
    if decision.source not in (Source.ADMIN, Source.CUSTOMER_SERVICE):
        raise ConsentForbidden("source", "People at the desk record phone requests and corrections only.")
    if not actor_user.has_perm(permission):  # type: ignore[attr-defined]
        raise ConsentForbidden("source", f"{actor_user.get_username()} may not record this.")


def consent_preview(*, contact: Contact, decision: ConsentDecision, actor_user: AbstractBaseUser) -> Preview:
    """What `decision` would change, after the ledger's rules (raises ConsentRejected as recording
    would). Writes nothing."""
    _may(actor_user, decision)
    consent_input_check(identity=None, decision=decision)
    checked = consent_check(
        decision, api_client=None, actor_user=actor_user, lookups=Lookups(), now=timezone.now()
    )
    state = ConsentState.objects.filter(contact=contact, purpose=checked.purpose).first()
    current_status = state.status if state else ""
    current_frequency = state.frequency if state else ""
    current_at = state.occurred_at if state else None
    return Preview(
        purpose=checked.purpose,
        current_status=current_status,
        current_frequency=current_frequency,
        status=decision.status,
        frequency=decision.frequency or "",
        becomes_current=current_at is None or decision.occurred_at >= current_at,
    )


def consent_phone_record(
    *, contact: Contact, decision: ConsentDecision, actor_user: AbstractBaseUser
) -> RecordResult:
    """Record a phone request (a decision made with `phone_request_decision`)."""
    if decision.source != Source.CUSTOMER_SERVICE:
        raise ConsentRejected("source", "A phone request comes from source customer_service.")
    _may(actor_user, decision)
    return consent_record(contact=contact, decision=decision, actor_user=actor_user)


def consent_correct(
    *,
    contact: Contact,
    decision: ConsentDecision,
    actor_user: AbstractBaseUser,
    evidence_file: StagedFile | None = None,
) -> RecordResult:
    """Record an admin correction (a decision made with `correction_decision`), keeping its file.

    The file moves from staging to its place before the event is written; if this call put it
    there and the event is not written, it is removed again. Raises ValidationError when the
    staged file is gone or no longer what was checked.
    """
    if decision.source != Source.ADMIN:
        raise ConsentRejected("source", "A correction comes from source admin.")
    _may(actor_user, decision)
    if (evidence_file is None) != ("file" not in decision.evidence):
        raise ConsentRejected("evidence", "The decision's evidence and the file attached differ.")
    if evidence_file is not None and decision.evidence["file"] != evidence_file.evidence:
        raise ConsentRejected("evidence", "The decision's evidence and the file attached differ.")
    placed = _evidence_keep(evidence_file) if evidence_file is not None else None
    try:
        with transaction.atomic():
            return consent_record(contact=contact, decision=decision, actor_user=actor_user)
    except BaseException:
        if placed is not None:
            placed.unlink(missing_ok=True)
        raise


def correction_evidence_path(sha256: str) -> Path:
    """Where the evidence file with this SHA-256 is kept."""
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a SHA-256: {sha256!r}")
    return Path(settings.CORRECTION_EVIDENCE_DIR) / sha256[:2] / sha256


def _staging_dir() -> Path:
    return Path(settings.CORRECTION_EVIDENCE_DIR) / "staging"


def _evidence_keep(staged: StagedFile) -> Path | None:
    """Move the staged file to its place; the path when this call created it, None when a file
    with the same content was kept already (then it is not this call's to remove)."""
    target = correction_evidence_path(staged.sha256)
    source = _staging_dir() / staged.token
    if not re.fullmatch(r"[0-9a-f]{32}", staged.token):
        raise ValidationError("The attached file's reference is malformed.")
    if not source.exists():
        if target.exists():  # a confirmation posted again: the first one moved it
            return None
        raise ValidationError(
            "The attached file expired before the correction was confirmed: attach it again."
        )
    if _sha256_of(source) != staged.sha256:
        source.unlink(missing_ok=True)
        raise ValidationError("The attached file changed after it was checked: attach it again.")
    if target.exists():
        source.unlink(missing_ok=True)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def correction_file_check(*, upload: UploadedFile) -> str:
    """The file's MIME type if it may be evidence; raises ValidationError saying why not."""
    limit = settings.CORRECTION_EVIDENCE_MAX_BYTES
    size = upload.size or 0
    if size > limit:
        raise ValidationError(
            f"The file is {size / 1_048_576:.1f} MB; an evidence file may be at most {limit / 1_048_576:g} MB.",
            code="too_large",
        )
    if size == 0:
        raise ValidationError("The file is empty.", code="empty")
    allowed: dict[str, str] = settings.CORRECTION_EVIDENCE_TYPES
    extension = Path(upload.name or "").suffix.lower()
    kinds = ", ".join(sorted(allowed))
    if extension not in allowed:
        raise ValidationError(
            f"Files of type {extension or '(none)'} are not allowed; attach one of: {kinds}.", code="type"
        )
    content_type = allowed[extension]
    upload.seek(0)
    head = upload.read(4096)
    upload.seek(0)
    if content_type in TEXT_TYPES:
        if b"\x00" in head or not _utf8_prefix(head):
            raise ValidationError(f"The file is not plain text, as {extension} must be.", code="type")
    elif not head.startswith(MAGIC[content_type]):
        raise ValidationError(f"The file's content is not {extension}, as its name says.", code="type")
    return content_type


def _utf8_prefix(head: bytes) -> bool:
    """The bytes are UTF-8, allowing a character cut at the end of the 4 KiB read."""
    for cut in range(4):
        try:
            head[: len(head) - cut].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def correction_file_stage(*, upload: UploadedFile) -> StagedFile:
    """Check an uploaded evidence file and keep it aside until its correction is confirmed."""
    content_type = correction_file_check(upload=upload)
    staging = _staging_dir()
    staging.mkdir(parents=True, exist_ok=True)
    _staging_prune(staging)
    token = secrets.token_hex(16)
    digest = hashlib.sha256()
    path = staging / token
    try:
        with path.open("xb") as stream:
            for chunk in upload.chunks():
                digest.update(chunk)
                stream.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StagedFile(
        token=token,
        sha256=digest.hexdigest(),
        name=_clean_name(upload.name or "evidence"),
        size=upload.size or 0,
        content_type=content_type,
    )


def _staging_prune(staging: Path) -> None:
    cutoff = time.time() - STAGED_MAX_AGE_S
    for stale in staging.iterdir():
        try:
            if stale.stat().st_mtime < cutoff:
                stale.unlink()
        except FileNotFoundError:
            continue


def _clean_name(name: str) -> str:
    """The file's own name, without a path or control characters (it goes into the evidence)."""
    base = Path(name.replace("\\", "/")).name
    return "".join(char for char in base if char.isprintable())[:NAME_MAX] or "evidence"
