"""The call log: one `ZohoCall` row per HTTP call, written before it and finished after."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from django.utils import timezone

from sync.models import ZohoCall

REDACTED = "[redacted]"


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every secret replaced (defence in depth: we never put them there)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return text


@dataclass(slots=True)
class CallStart:
    service: str
    operation: str
    method: str
    path: str
    records: int = 0
    credits: int = 0


@dataclass(slots=True)
class CallEnd:
    ok: bool
    http_status: int | None = None
    zoho_code: str = ""
    credits_remaining: int | None = None
    error: str = ""
    permanent: bool | None = None


class CallLog(Protocol):
    """Where the transport records calls. `start` returns a handle passed to `finish`."""

    def start(self, call: CallStart) -> object: ...

    def finish(self, handle: object, end: CallEnd) -> None: ...

    def call_id(self, handle: object) -> int | None:
        """The id a caller can keep to point at this call (a `ZohoCall` row id), if any."""
        ...


class DatabaseCallLog:
    """Records calls as `sync.models.ZohoCall` rows (the default)."""

    def start(self, call: CallStart) -> ZohoCall:
        return ZohoCall.objects.create(
            service=call.service,
            operation=call.operation,
            method=call.method,
            path=call.path[:512],
            records=call.records,
            credits=call.credits,
            started_at=timezone.now(),
            outcome=ZohoCall.Outcome.PENDING,
        )

    def finish(self, handle: object, end: CallEnd) -> None:
        assert isinstance(handle, ZohoCall)
        row = handle
        row.finished_at = timezone.now()
        elapsed: timedelta = row.finished_at - row.started_at
        row.duration_ms = max(0, round(elapsed.total_seconds() * 1000))
        row.http_status = end.http_status
        row.zoho_code = end.zoho_code[:64]
        row.credits_remaining = end.credits_remaining
        row.outcome = ZohoCall.Outcome.OK if end.ok else ZohoCall.Outcome.ERROR
        row.error = end.error
        row.permanent = end.permanent
        row.save(
            update_fields=[
                "finished_at",
                "duration_ms",
                "http_status",
                "zoho_code",
                "credits_remaining",
                "outcome",
                "error",
                "permanent",
            ]
        )

    def call_id(self, handle: object) -> int | None:
        assert isinstance(handle, ZohoCall)
        return handle.pk


class NullCallLog:
    """Records nothing (scripts and processes without a migrated database)."""

    def start(self, call: CallStart) -> object:
        return None

    def finish(self, handle: object, end: CallEnd) -> None:
        return None

    def call_id(self, handle: object) -> int | None:
        return None
