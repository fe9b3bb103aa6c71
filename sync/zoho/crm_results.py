"""Zoho CRM's answer to a per-record write (update, delete): one result per record sent, in
input order, and which codes retrying cannot fix."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sync.zoho.errors import ZohoTransientError
from sync.zoho.transport import ZohoResponse

# Per-record codes that retrying cannot fix.
PERMANENT_RECORD_CODES = frozenset(
    {
        "INVALID_DATA",
        "NO_PERMISSION",
        "MANDATORY_NOT_FOUND",
        "DUPLICATE_DATA",
        "INVALID_MODULE",
        "ALREADY_MODIFIED",
        "LIMIT_EXCEEDED",
        "NOT_APPROVED",
        # "The record is in stop processing" (GDPR): it stays so until someone lifts it.
        "CANNOT_PROCESS",
    }
)


# Where Zoho points at a record's own id in a write's body.
_RECORD_ID_PATH = re.compile(r"\$\.data\[\d+\]\.id")


@dataclass(frozen=True, slots=True)
class RecordResult:
    """Zoho's answer for one record of a write, in input order."""

    code: str
    status: str
    message: str
    details: Mapping[str, Any]
    record_id: str | None
    modified_time: str | None = None
    modified_by: Mapping[str, Any] | None = None
    # For errors: True when retrying cannot help; None for successes.
    permanent: bool | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success" and self.code == "SUCCESS"

    @property
    def gone(self) -> bool:
        """Zoho has no such record (any more): ``INVALID_DATA`` for the record's own id, given
        either as ``details.id`` (no field named) or as the field ``id`` at the record's top level
        (``details.api_name``, its ``json_path`` ``$.data[N].id``). Both shapes are Zoho's
        answer for an id it does not hold; an ``id`` inside a field (a consent record's,
        ``$.data[0].Data_Processing_Basis_Details.id``) is that field's error, not the record's."""
        if self.code != "INVALID_DATA":
            return False
        named = self.details.get("api_name")
        if not named:
            return "id" in self.details
        path = self.details.get("json_path")
        return named == "id" and (path is None or _RECORD_ID_PATH.fullmatch(str(path)) is not None)

    @classmethod
    def from_entry(cls, entry: Any, sent_id: str | None) -> RecordResult:
        if not isinstance(entry, dict):
            return cls("UNKNOWN", "error", f"unexpected entry {entry!r}", {}, sent_id, permanent=False)
        raw_details = entry.get("details")
        details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
        code = str(entry.get("code") or "")
        status = str(entry.get("status") or ("success" if code == "SUCCESS" else "error"))
        ok = status == "success" and code == "SUCCESS"
        record_id = details.get("id") if ok else (details.get("id") or sent_id)
        return cls(
            code=code,
            status=status,
            message=str(entry.get("message") or ""),
            details=details,
            record_id=str(record_id) if record_id is not None else None,
            modified_time=details.get("Modified_Time"),
            modified_by=details.get("Modified_By"),
            permanent=None if ok else code in PERMANENT_RECORD_CODES,
        )


@dataclass(frozen=True, slots=True)
class CrmUpdate:
    """What one update call did: Zoho's answer for each record, in input order, and
    the call log's id of the call (`ZohoCall`; None when nothing was sent or logged)."""

    results: list[RecordResult]
    call_id: int | None


def record_results(response: ZohoResponse, sent_ids: Sequence[str | None]) -> CrmUpdate:
    """A per-record write's answer (update, delete): one `RecordResult` per record sent, in input
    order; an answer with another count is a failure of the whole call (transient)."""
    entries = response.body.get("data") if isinstance(response.body, dict) else None
    if not isinstance(entries, list) or len(entries) != len(sent_ids):
        got = len(entries) if isinstance(entries, list) else 0
        raise ZohoTransientError(
            f"Zoho answered {got} results for {len(sent_ids)} records",
            http_status=response.status_code,
        )
    results = [RecordResult.from_entry(entry, sent) for entry, sent in zip(entries, sent_ids, strict=True)]
    return CrmUpdate(results, response.call_id)
