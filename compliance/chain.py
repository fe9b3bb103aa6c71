"""Canonical content and hashes of events and seals.

An event's hash is SHA-256 over its predecessor's hash (in the chain of its
contact and purpose) and its canonical content: a JSON array of its fields in a
fixed order. `verify_ledger` recomputes it from the stored columns, so the
canonical form is built from exactly what the database returns.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from compliance.models import GENESIS_HASH

# The columns (in this order) that the canonical form is built from; the
# verifier selects them in one query.
EVENT_HASHED_FIELDS = (
    "contact_id",
    "purpose_id",
    "version",
    "previous_status",
    "status",
    "frequency",
    "source",
    "ip_address",
    "user_agent",
    "policy_version_id",
    "occurred_at",
    "recorded_at",
    "actor",
    "evidence",
    "reason",
    "idempotency_key",
)

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _instant(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def event_hash(prev_hash: str, values: tuple[Any, ...]) -> str:
    """Hash of one event from its EVENT_HASHED_FIELDS values and its predecessor's hash."""
    items = list(values)
    items[10] = _instant(items[10])
    items[11] = _instant(items[11])
    return hashlib.sha256(f"{prev_hash}\n{_dumps(items)}".encode()).hexdigest()


def seal_hash(
    *,
    sequence: int,
    created_at: datetime,
    first_event_id: int | None,
    last_event_id: int,
    event_count: int,
    events_digest: str,
    prev_hash: str,
) -> str:
    content = [sequence, _instant(created_at), first_event_id, last_event_id, event_count, events_digest]
    return hashlib.sha256(f"{prev_hash}\n{_dumps(content)}".encode()).hexdigest()


__all__ = ["EVENT_HASHED_FIELDS", "GENESIS_HASH", "event_hash", "seal_hash"]
