"""The files a report embeds: the events CSV, the withdrawals CSV and the JSON manifest.

Each is written as a stream to a scratch file, already compressed as the PDF stores it
(FlateDecode), while its SHA-256, MD5 and size are counted: a million-event CSV never sits in
memory (reports/pdf.py copies the compressed file into the PDF in chunks).

Attachments hold the ledger's data only, in a fixed order and format, and no time of making:
the same scope made again gives byte-identical attachments as long as the ledger did not change
within it (the withdrawals CSV, also as long as no delivery in it was confirmed meanwhile).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from compliance.models import ConsentEvent, PolicyVersion, Purpose

CHUNK_ROWS = 5000

# The events CSV: one row per event, in id order. With every hashed field, anyone can recompute
# each event's hash from the CSV alone (docs/reports.md shows how).
EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "The event's id in the ledger."),
    ("contact_id", "The person's contact id."),
    ("purpose", "Purpose code, e.g. email_marketing."),
    ("purpose_id", "Purpose id (hashed)."),
    ("version", "Position in the chain of this contact and purpose, from 1."),
    ("previous_status", "Status before this event (empty for the first)."),
    ("status", "opted_in, opted_out, pending or expired."),
    ("frequency", "daily, weekly, monthly or empty."),
    ("source", "Where the decision came from, e.g. mobile_app, email_link."),
    ("occurred_at", "When the person acted, UTC, ISO 8601 with microseconds."),
    ("recorded_at", "When Consent Desk recorded it, UTC, ISO 8601 with microseconds."),
    ("ip_address", "The person's IP address, empty when unknown."),
    ("user_agent", "The person's user agent."),
    ("policy_version", "Label of the privacy notice agreed to, empty when none."),
    ("policy_version_id", "Its id (hashed), empty when none."),
    ("actor", "Who recorded it, e.g. api:mobile-app or user:alice."),
    ("evidence", "Evidence as canonical JSON (sorted keys, no spaces)."),
    ("reason", "Reason (admin corrections)."),
    ("idempotency_key", "The sender's idempotency key (hashed)."),
    ("prev_hash", "Hash of the previous event in its chain (64 zeros for the first)."),
    (
        "hash",
        "SHA-256 of the event's canonical content with prev_hash, by its hash_version (docs/reports.md).",
    ),
    (
        "hash_version",
        "The hashing rule: 1 hashes the personal values, 2 their commitment (personal_hash), both as a JSON "
        "array after prev_hash and a newline; 3 the same values as 2, as PostgreSQL's text of the row.",
    ),
    (
        "personal_hash",
        "Versions 2 and 3: HMAC-SHA256 of the personal values under the person's own key (hashed); empty "
        "when none.",
    ),
    (
        "personal",
        "Versions 2 and 3: the personal values kept apart (IP address, user agent, personal evidence) as canonical "
        "JSON; not hashed, committed to by personal_hash; {} when none or erased.",
    ),
)
EVENT_FIELDS = (
    "id",
    "contact_id",
    "purpose_id",
    "version",
    "previous_status",
    "status",
    "frequency",
    "source",
    "occurred_at",
    "recorded_at",
    "ip_address",
    "user_agent",
    "policy_version_id",
    "actor",
    "evidence",
    "reason",
    "idempotency_key",
    "prev_hash",
    "hash",
    "hash_version",
    "personal_hash",
    "personal__values",
)

canonical_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def instant(value: Any) -> str:
    """ISO 8601 with microseconds; text already in that form (from the database) as it is."""
    if value is None:
        return ""
    return value if isinstance(value, str) else value.isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Attachment:
    name: str
    description: str
    mime: str
    path: Path  # the compressed bytes, as the PDF's FlateDecode stream holds them
    size: int
    sha256: str
    md5: bytes
    rows: int | None = None


class _CompressedFile:
    """Bytes written here are hashed as they are and stored compressed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = path.open("wb")
        # Level 3: most of level 6's saving on these files, at a third of its time.
        self.compressor = zlib.compressobj(3)
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5()  # noqa: S324 - the PDF's /CheckSum is MD5 by definition
        self.size = 0

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)
        self.file.write(self.compressor.compress(data))

    def close(self, *, name: str, description: str, mime: str, rows: int | None) -> Attachment:
        self.file.write(self.compressor.flush())
        self.file.close()
        return Attachment(
            name, description, mime, self.path, self.size, self.sha256.hexdigest(), self.md5.digest(), rows
        )


def csv_write(
    *,
    directory: Path,
    name: str,
    description: str,
    header: Iterable[str],
    rows: Iterable[Iterable[Any]],
    progress: Callable[[int], None] | None = None,
) -> Attachment:
    """A UTF-8 CSV (comma, LF line ends, quoted where needed) streamed into a compressed file."""
    sink = _CompressedFile(directory / f"{name}.deflate")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
        if count % CHUNK_ROWS == 0:
            sink.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
            if progress is not None:
                progress(count)
    sink.write(buffer.getvalue().encode())
    return sink.close(name=name, description=description, mime="text/csv", rows=count)


def event_csv_values(row: tuple[Any, ...], purposes: dict[int, str], policies: dict[int, str]) -> list[str]:
    """One event's CSV cells from its EVENT_FIELDS values, as text: what the writer writes and the
    verifier compares."""
    (
        event_id,
        contact_id,
        purpose_id,
        version,
        previous_status,
        status,
        frequency,
        source,
        occurred_at,
        recorded_at,
        ip_address,
        user_agent,
        policy_version_id,
        actor,
        evidence,
        reason,
        idempotency_key,
        prev_hash,
        event_hash,
        hash_version,
        personal_hash,
        personal_values,
    ) = row
    return [
        str(event_id),
        str(contact_id),
        purposes.get(purpose_id, ""),
        str(purpose_id),
        str(version),
        previous_status,
        status,
        frequency,
        source,
        instant(occurred_at),
        instant(recorded_at),
        ip_address or "",
        user_agent,
        policies.get(policy_version_id, "") if policy_version_id else "",
        str(policy_version_id) if policy_version_id is not None else "",
        actor,
        _evidence_text(evidence),
        reason,
        idempotency_key,
        prev_hash,
        event_hash,
        str(hash_version),
        personal_hash,
        _evidence_text(personal_values or {}),
    ]


def _evidence_text(evidence: Any) -> str:
    """Evidence as canonical JSON, from the stored object or its stored text."""
    if isinstance(evidence, str):
        evidence = {} if evidence == "{}" else json.loads(evidence)
    return canonical_json(evidence) if evidence else "{}"


def lookups() -> tuple[dict[int, str], dict[int, str]]:
    """Purpose codes and policy labels by id (small tables, read once per report)."""
    return dict(Purpose.objects.values_list("id", "code")), dict(
        PolicyVersion.objects.values_list("id", "label")
    )


# On PostgreSQL the database writes the two instants as text, exactly as isoformat() does for a
# UTC time (compliance.chain's canonical form uses the same expression): parsing a million
# timestamps into datetimes only to print them again is most of the CSV's time otherwise.
_INSTANT_SQL = """to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'"""


def _event_rows(events: QuerySet[ConsentEvent]) -> Iterator[list[str]]:
    from django.db import connection
    from django.db.models import TextField
    from django.db.models.expressions import RawSQL

    purposes, policies = lookups()
    events = events.order_by("id")
    if connection.vendor != "postgresql" or connection.timezone_name != "UTC":
        for row in events.values_list(*EVENT_FIELDS).iterator(chunk_size=CHUNK_ROWS):
            yield event_csv_values(row, purposes, policies)
        return
    table = ConsentEvent._meta.db_table
    texts = {
        # Model metadata and a constant only: no input reaches the SQL.
        name: RawSQL(_INSTANT_SQL.format(column=f'"{table}"."{name}"'), (), output_field=TextField())  # noqa: S611
        for name in ("occurred_at", "recorded_at")
    }
    # Evidence as its stored text: most is "{}", which needs no parsing to be written canonically.
    texts["evidence"] = RawSQL(f'"{table}"."evidence"::text', (), output_field=TextField())  # noqa: S611
    fields = [f"{name}_text" if name in texts else name for name in EVENT_FIELDS]
    rows = events.annotate(**{f"{name}_text": expression for name, expression in texts.items()}).values_list(
        *fields
    )
    for row in rows.iterator(chunk_size=CHUNK_ROWS):
        yield event_csv_values(row, purposes, policies)


def events_csv_write(
    *, events: QuerySet[ConsentEvent], directory: Path, progress: Callable[[int], None] | None = None
) -> Attachment:
    return csv_write(
        directory=directory,
        name="events.csv",
        description="Every event in the report's scope, one row each, with its hash (columns: see manifest.json).",
        header=[name for name, _ in EVENT_COLUMNS],
        rows=_event_rows(events),
        progress=progress,
    )


# The pushes CSV (evidence packs, samples): every push to Zoho CRM of the people in the document,
# where the PDF lists only the newest per purpose.
PUSH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("push_id", "The push's id."),
    ("contact_id", "The person's contact id."),
    ("zoho_id", "The CRM record it was sent to."),
    ("created_at", "When it was sent, UTC, ISO 8601 with microseconds."),
    ("ledger_versions", "The ledger version of each purpose it carried, as canonical JSON."),
    ("sent", "The fields sent, as canonical JSON."),
    ("verification", "The read-back's outcome, e.g. verified or mismatch."),
    ("verified_at", "When the read-back confirmed it, empty when it did not."),
    ("readback", "The fields read back from CRM, as canonical JSON (empty before the read-back)."),
)


def pushes_csv_write(*, contact_ids: list[int], directory: Path) -> Attachment:
    from sync.models import SyncPush

    rows = (
        SyncPush.objects.filter(contact_id__in=contact_ids)
        .order_by("id")
        .values_list(
            "id",
            "contact_id",
            "zoho_id",
            "created_at",
            "ledger_versions",
            "sent",
            "verification",
            "verified_at",
            "readback",
        )
        .iterator(chunk_size=CHUNK_ROWS)
    )
    return csv_write(
        directory=directory,
        name="pushes.csv",
        description="Every push to Zoho CRM of the people in this document, with its read-back (columns: see manifest.json).",
        header=[name for name, _ in PUSH_COLUMNS],
        rows=(
            [
                push_id,
                contact_id,
                zoho_id,
                instant(created_at),
                canonical_json(versions or {}),
                canonical_json(sent or {}),
                verification,
                instant(verified_at),
                canonical_json(readback) if readback is not None else "",
            ]
            for push_id, contact_id, zoho_id, created_at, versions, sent, verification, verified_at, readback in rows
        ),
    )


def json_write(*, directory: Path, name: str, description: str, data: dict[str, Any]) -> Attachment:
    sink = _CompressedFile(directory / f"{name}.deflate")
    sink.write(json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True).encode() + b"\n")
    return sink.close(name=name, description=description, mime="application/json", rows=None)


def manifest_write(
    *,
    directory: Path,
    kind: str,
    scope: dict[str, Any],
    counts: dict[str, Any],
    seal: dict[str, Any] | None,
    attachments: list[Attachment],
    made_at: datetime,
    report_id: str,
) -> Attachment:
    """manifest.json: which report it is and when it was made (so the copies handed out can be kept
    and deleted by their age), what it covers, and the SHA-256 of each other attachment. All but
    `made` is the ledger's data: the same scope made again gives the same."""
    data = {
        "format": "consent-desk-report-manifest/1",
        "made": {"at": made_at.astimezone(UTC).isoformat(timespec="seconds"), "report_id": report_id},
        "kind": kind,
        "scope": scope,
        "counts": counts,
        "seal": seal,
        "attachments": {
            a.name: {"sha256": a.sha256, "bytes": a.size, "rows": a.rows, "media_type": a.mime}
            for a in attachments
        },
        "events_csv_columns": [{"name": name, "meaning": meaning} for name, meaning in EVENT_COLUMNS],
    }
    if any(a.name == "pushes.csv" for a in attachments):
        data["pushes_csv_columns"] = [{"name": name, "meaning": meaning} for name, meaning in PUSH_COLUMNS]
    return json_write(
        directory=directory,
        name="manifest.json",
        description="The scope, the counts, the seal, and the SHA-256 of each other attachment.",
        data=data,
    )
