"""Consent records from older systems, from a CSV file: all of the file or none of it.

Every row becomes one decision with source ``import``, recorded through the one write path
(`consent_ingest`), so versions, hashes, states and the outbox are what any other decision
gets. The columns are documented in docs/import.md (`CSV_COLUMNS`).

A file is checked whole before anything is written: each row's identifiers, purpose, status,
time, policy version, evidence and the ledger's rules. A file with a bad row records nothing
and names every bad row with its line and reason. What only the database can tell (an email
and a phone that belong to two people) is found while recording, in one transaction that is
rolled back whole if any row fails. A file imported again records nothing new: each row's
idempotency key is the file's SHA-256 and the row's line, unless the file gives its own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from compliance.models import Source
from compliance.services.consent import (
    ConsentDecision,
    Lookups,
    consent_check,
    consent_ingest,
    consent_input_check,
)
from compliance.services.contacts import ContactIdentity, identity_normalise
from compliance.services.errors import ConsentForbidden, ConsentRejected, IdempotencyConflict

# column -> what it holds (docs/import.md says the same, with examples)
CSV_COLUMNS = {
    "email": "the person's email address",
    "phone": "the person's phone number (E.164, or national with a country prefix)",
    "app_user_id": "the person's id in the app",
    "first_name": "optional",
    "last_name": "optional",
    "purpose": "required: a purpose code (email_marketing, sms_marketing, ...)",
    "status": "required: opted_in, opted_out or pending",
    "occurred_at": "required: when the person decided, ISO 8601 with a time zone",
    "frequency": "optional, with opted_in: daily, weekly or monthly",
    "policy_version": "required with opted_in: a published policy version's label",
    "ip_address": "optional: where the person decided from",
    "user_agent": "optional",
    "double_opt_in_confirmed_at": "required with opted_in for purposes with double opt-in",
    "legacy_source": "optional: where the older system says the decision came from",
    "evidence": "optional: a JSON object with further evidence",
    "idempotency_key": "optional: the older system's id for this decision",
}
REQUIRED_COLUMNS = ("purpose", "status", "occurred_at")
IDENTIFIER_COLUMNS = ("email", "phone", "app_user_id")
MAX_ROWS = 1_000_000


@dataclass
class RowError:
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


@dataclass
class ImportReport:
    """What an import did, or (dry run, or refused) would have done."""

    file_sha256: str
    rows: int = 0
    created: int = 0
    replayed: int = 0
    errors: list[RowError] = field(default_factory=list)
    by_purpose_status: Counter[tuple[str, str]] = field(default_factory=Counter)
    dry_run: bool = False

    @property
    def recorded(self) -> bool:
        return not self.dry_run and not self.errors


@dataclass(frozen=True)
class _Row:
    line: int
    identity: ContactIdentity
    decision: ConsentDecision


class _FileRefused(Exception):
    """Raised inside the transaction to roll the whole file back."""


def consent_csv_import(
    *,
    data: bytes,
    name: str,
    actor_user: AbstractBaseUser | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Check the whole file, then record every row in one transaction, or none (see the module)."""
    report = ImportReport(file_sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run)
    rows = _rows(data, name=name, report=report)
    if report.errors or dry_run:
        return report
    try:
        with transaction.atomic():
            for row in rows:
                try:
                    result = consent_ingest(
                        identity=row.identity, decision=row.decision, actor_user=actor_user
                    )
                except (ConsentRejected, ConsentForbidden) as exc:
                    report.errors.append(RowError(row.line, exc.field, exc.message))
                    continue
                except IdempotencyConflict:
                    report.errors.append(
                        RowError(
                            row.line,
                            "idempotency_key",
                            "This key was recorded before with other content.",
                        )
                    )
                    continue
                if result.created:
                    report.created += 1
                else:
                    report.replayed += 1
            if report.errors:
                raise _FileRefused
    except _FileRefused:
        report.created = report.replayed = 0
    return report


def _rows(data: bytes, *, name: str, report: ImportReport) -> list[_Row]:
    """Every row as a checked decision; the bad ones land in report.errors."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.errors.append(RowError(1, "file", f"The file is not UTF-8 (byte {exc.start})."))
        return []
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = [c.strip() for c in reader.fieldnames or []]
    unknown = sorted(set(columns) - CSV_COLUMNS.keys())
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if unknown or missing or not set(IDENTIFIER_COLUMNS) & set(columns):
        problems = []
        if missing:
            problems.append(f"missing column(s) {', '.join(missing)}")
        if not set(IDENTIFIER_COLUMNS) & set(columns):
            problems.append(f"no identifier column (one of {', '.join(IDENTIFIER_COLUMNS)})")
        if unknown:
            problems.append(f"unknown column(s) {', '.join(unknown)} (see docs/import.md)")
        report.errors.append(RowError(1, "header", "; ".join(problems) + "."))
        return []
    lookups = Lookups()
    now = timezone.now()
    rows: list[_Row] = []
    for raw in reader:
        line = reader.line_num
        report.rows += 1
        if report.rows > MAX_ROWS:
            report.errors.append(RowError(line, "file", f"At most {MAX_ROWS:,} rows per file; split it."))
            break
        values = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            report.errors.append(RowError(line, "row", "More fields than the header has columns."))
            continue
        try:
            row = _row(values, line=line, name=name, file_sha256=report.file_sha256)
            consent_input_check(identity=row.identity, decision=row.decision)
            identity_normalise(row.identity)
            consent_check(row.decision, api_client=None, actor_user=None, lookups=lookups, now=now)
        except (ConsentRejected, ConsentForbidden) as exc:
            report.errors.append(RowError(line, exc.field, exc.message))
            continue
        rows.append(row)
        report.by_purpose_status[(row.decision.purpose, row.decision.status)] += 1
    if not report.rows and not report.errors:
        report.errors.append(RowError(1, "file", "The file holds no rows."))
    return rows


def _row(values: dict[str, str], *, line: int, name: str, file_sha256: str) -> _Row:
    occurred_at = _instant(values.get("occurred_at", ""))
    evidence: dict[str, Any] = {}
    if values.get("evidence"):
        try:
            extra = json.loads(values["evidence"])
        except json.JSONDecodeError as exc:
            raise ConsentRejected("evidence", f"Not valid JSON: {exc.msg}.") from None
        if not isinstance(extra, dict):
            raise ConsentRejected("evidence", "Evidence must be a JSON object.")
        evidence.update(extra)
    if values.get("double_opt_in_confirmed_at"):
        evidence["double_opt_in_confirmed_at"] = _instant(
            values["double_opt_in_confirmed_at"], field_name="double_opt_in_confirmed_at"
        ).isoformat()
    if values.get("legacy_source"):
        evidence["legacy_source"] = values["legacy_source"]
    evidence["import"] = {"file": name, "file_sha256": file_sha256, "line": line}
    identity = ContactIdentity(
        email=values.get("email") or None,
        phone=values.get("phone") or None,
        app_user_id=values.get("app_user_id") or None,
        first_name=values.get("first_name", ""),
        last_name=values.get("last_name", ""),
    )
    decision = ConsentDecision(
        purpose=values.get("purpose", ""),
        status=values.get("status", ""),
        source=Source.IMPORT,
        occurred_at=occurred_at,
        idempotency_key=values.get("idempotency_key") or f"import-csv:{file_sha256[:32]}:{line}",
        frequency=values.get("frequency") or None,
        ip_address=values.get("ip_address") or None,
        user_agent=values.get("user_agent", ""),
        policy_version=values.get("policy_version") or None,
        evidence=evidence,
    )
    if decision.status == "expired":
        raise ConsentRejected(
            "status", "Only the system expires consent; import opted_in, opted_out or pending."
        )
    return _Row(line, identity, decision)


def _instant(text: str, *, field_name: str = "occurred_at") -> datetime:
    if not text:
        raise ConsentRejected(field_name, "Required: an ISO 8601 time with a time zone.")
    try:
        value = parse_datetime(text)
    except ValueError:
        value = None
    if value is None:
        raise ConsentRejected(field_name, f"{text!r} is not an ISO 8601 time, e.g. 2024-05-01T09:30:00Z.")
    if timezone.is_naive(value):
        raise ConsentRejected(field_name, f"{text!r} needs a time zone, e.g. 2024-05-01T09:30:00Z.")
    return value
