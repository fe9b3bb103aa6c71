"""Verify a report PDF: its signature, its attachments, and what it says against the ledger today.

`report_verify` runs every check and never stops at the first failure, so the verdict names
each check that failed; `manage.py verify_report` exits with their bits (below) and the
verify page lists them. A report made before someone altered the database shows exactly which
of its events changed.

Exit status of verify_report: 0 all checks passed; 2 bad input (no such file, not a PDF, an
unreadable --trust file); otherwise the sum of the failed checks' bits:
 1 signature, 4 coverage, 8 trust, 16 signing time, 32 attachments, 64 report, 128 ledger.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings

from compliance import chain
from compliance.models import ConsentEvent, Seal
from reports.attachments import EVENT_COLUMNS, EVENT_FIELDS, event_csv_values, lookups
from reports.models import Report
from reports.pdf import embedded_files, sha256_file
from reports.selectors import seal_log_entries
from reports.signing import SIGNATURE_FIELD, SigningUnavailable, trust_roots_load

BAD_INPUT = 2
CHECKS = (
    ("signature", 1, "Signature intact and cryptographically valid"),
    ("coverage", 4, "Signature covers the whole file; certified, nothing changed after signing"),
    ("trust", 8, "Signer's certificate chains to the pinned root"),
    ("signing_time", 16, "Signing time present and within the certificate's validity"),
    ("attachments", 32, "Attachments match the SHA-256 in manifest.json"),
    ("report", 64, "Report id known to this Consent Desk, the very file it issued"),
    ("ledger", 128, "Seal still in the seal chain and the seal log; every event unchanged in the ledger"),
)
REPORT_ID = re.compile(r"Consent Desk report ([0-9a-f-]{36})")
SHOWN_CHANGES = 200
CHUNK = 5000


@dataclass
class Check:
    key: str
    bit: int
    label: str
    ok: bool = True
    details: list[str] = field(default_factory=list)

    def fail(self, detail: str) -> None:
        self.ok = False
        self.details.append(detail)

    def note(self, detail: str) -> None:
        self.details.append(detail)


@dataclass
class ReportVerdict:
    checks: list[Check]
    bad_input: str = ""
    report_id: str = ""
    changed_events: list[str] = field(default_factory=list)
    changed_count: int = 0
    # Events whose personal values were erased since the report was made: the proof stands.
    erased_events: list[str] = field(default_factory=list)
    erased_count: int = 0

    @property
    def ok(self) -> bool:
        return not self.bad_input and all(c.ok for c in self.checks)

    @property
    def exit_code(self) -> int:
        if self.bad_input:
            return BAD_INPUT
        return sum(c.bit for c in self.checks if not c.ok)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        if self.bad_input:
            return f"NOT VERIFIED: {self.bad_input}"
        if self.ok:
            return f"VALID: report {self.report_id} passed every check"
        return "INVALID: " + "; ".join(f"{c.key} failed ({'; '.join(c.details[:3])})" for c in self.failed)


def _checks() -> dict[str, Check]:
    return {key: Check(key, bit, label) for key, bit, label in CHECKS}


def report_verify(path: Path, *, trust: str | None = None) -> ReportVerdict:
    """Every check of the report PDF at `path`, against the roots `trust` names (a PEM path or
    text; default: the configured ones, reports.signing.trust_roots_load)."""
    checks = _checks()
    verdict = ReportVerdict(list(checks.values()))
    try:
        with path.open("rb") as handle:
            head = handle.read(1024)
    except OSError as exc:
        verdict.bad_input = f"cannot read {path}: {exc.strerror or exc}"
        return verdict
    if b"%PDF-" not in head:
        verdict.bad_input = "this file is not a PDF"
        return verdict
    try:
        roots = trust_roots_load(trust)
    except SigningUnavailable as exc:
        verdict.bad_input = f"cannot read the trusted root: {exc}"
        return verdict

    from pyhanko.pdf_utils.reader import PdfFileReader

    with path.open("rb") as handle:
        try:
            reader = PdfFileReader(handle)
            signatures = reader.embedded_signatures
        except Exception as exc:  # a damaged file: pyHanko raises several kinds
            checks["signature"].fail(f"the PDF cannot be read, it is damaged: {exc}")
            for key in ("coverage", "trust", "signing_time", "attachments", "report", "ledger"):
                checks[key].fail("not checked: the PDF cannot be read")
            return verdict
        _check_signature(reader, signatures, roots, checks, handle)
        manifest = _check_attachments(reader, checks)
        verdict.report_id = _check_report(signatures, handle, checks)
        _check_ledger(reader, manifest, checks, verdict)
    return verdict


def _check_signature(
    reader: Any, signatures: list[Any], roots: list[Any], checks: dict[str, Check], handle: Any
) -> None:
    from pyhanko.sign.fields import MDPPerm
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    if not signatures:
        for key in ("signature", "coverage", "trust", "signing_time"):
            checks[key].fail("the PDF carries no signature")
        return
    signature = signatures[0]
    if len(signatures) > 1:
        checks["coverage"].fail(
            f"{len(signatures)} signatures: something was signed into it after the report"
        )
    if signature.field_name != SIGNATURE_FIELD:
        checks["coverage"].fail(f"the signature is in field {signature.field_name!r}, not Consent Desk's")
    if not roots:
        checks["trust"].fail("no root certificate is pinned (give --trust CA.pem, or set REPORT_TRUST_ROOTS)")
    context = ValidationContext(trust_roots=roots, allow_fetching=False, revocation_mode="soft-fail")
    try:
        status = validate_pdf_signature(signature, context)
    except Exception as exc:
        checks["signature"].fail(f"the signature cannot be validated: {exc}")
        checks["signing_time"].fail("not checked")
        return
    if not (status.intact and status.valid):
        checks["signature"].fail(
            "the signed bytes were changed" if not status.intact else "the signature value does not verify"
        )
    else:
        checks["signature"].note(f"signed by {status.signing_cert.subject.human_friendly}")
    if status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
        coverage = getattr(status.coverage, "name", "unknown")
        checks["coverage"].fail(f"the signature covers only part of the file ({coverage})")
    if signature.docmdp_level != MDPPerm.NO_CHANGES:
        checks["coverage"].fail("it is not certified with 'no changes allowed'")
    if not status.docmdp_ok:
        checks["coverage"].fail("it was changed after it was certified")
    padding = _signature_padding_problem(signature, roots, handle)
    if padding:
        checks["coverage"].fail(padding)
    if roots and not status.trusted:
        checks["trust"].fail(
            "the signer's certificate does not chain to the pinned root"
            if status.intact and status.valid
            else "not established: the signature itself does not verify"
        )
    elif status.trusted:
        checks["trust"].note(f"chains to {', '.join(r.subject.human_friendly for r in roots)[:200]}")
    _check_time(status, checks["signing_time"])


def _signature_padding_problem(signature: Any, roots: list[Any], handle: Any) -> str:
    """Bytes of /Contents that no signature covers: the zeros after the signature container, and
    copies of the root certificate embedded in it. PDF viewers let a change there pass; this
    check does not."""
    from asn1crypto import cms

    start, end = int(signature.byte_range[1]), int(signature.byte_range[2])
    handle.seek(start)
    contents = handle.read(end - start)
    handle.seek(0)
    if not (contents.startswith(b"<") and contents.endswith(b">")):
        return "the signature's /Contents is not a hex string"
    raw = signature.pkcs7_content
    used = len(cms.ContentInfo.load(raw, strict=False).dump())
    if raw[used:].strip(b"\0"):
        return "bytes after the signature container (its padding) were altered"
    pinned = {root.subject.dump(): root.dump() for root in roots}
    for certificate in signature.signed_data["certificates"]:
        chosen = certificate.chosen
        subject = chosen.subject.dump() if hasattr(chosen, "subject") else None
        if subject in pinned and chosen.dump() != pinned[subject]:
            return "the copy of the root certificate inside the signature was altered"
    return ""


def _check_time(status: Any, check: Check) -> None:
    signed_at = status.signer_reported_dt
    timestamp = status.timestamp_validity
    if timestamp is not None:
        if not (timestamp.intact and timestamp.valid):
            check.fail("the signature's timestamp token does not verify")
        signed_at = timestamp.timestamp
        check.note(f"timestamped by a TSA at {signed_at:%Y-%m-%d %H:%M:%S} UTC")
    if signed_at is None:
        check.fail("no signing time")
        return
    validity = status.signing_cert["tbs_certificate"]["validity"]
    not_before, not_after = validity["not_before"].native, validity["not_after"].native
    if signed_at > datetime.now(UTC) + timedelta(minutes=5):
        check.fail(f"signed in the future ({signed_at:%Y-%m-%d %H:%M:%S} UTC)")
    elif not not_before <= signed_at <= not_after:
        check.fail(f"signed at {signed_at:%Y-%m-%d %H:%M} UTC, outside the certificate's validity")
    else:
        check.note(f"signed at {signed_at:%Y-%m-%d %H:%M:%S} UTC")


def _check_attachments(reader: Any, checks: dict[str, Check]) -> dict[str, Any] | None:
    check = checks["attachments"]
    try:
        files = embedded_files(reader)
    except Exception as exc:
        check.fail(f"the attachments cannot be read: {exc}")
        return None
    if "manifest.json" not in files:
        check.fail("there is no manifest.json attachment")
        return None
    try:
        manifest = json.loads(b"".join(files["manifest.json"].chunks()).decode("utf-8"))
        listed = manifest["attachments"]
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        check.fail(f"manifest.json is unreadable: {exc}")
        return None
    for name, facts in sorted(listed.items()):
        if name not in files:
            check.fail(f"{name} is listed in manifest.json but not attached")
            continue
        try:
            digest = files[name].sha256()
        except Exception as exc:
            check.fail(f"{name} cannot be read: {exc}")
            continue
        if digest != facts.get("sha256"):
            check.fail(f"{name}: SHA-256 {digest} differs from manifest.json's {facts.get('sha256')}")
    manifest["_files"] = files
    return manifest


def _check_report(signatures: list[Any], handle: Any, checks: dict[str, Check]) -> str:
    check = checks["report"]
    reason = ""
    if signatures:
        try:
            reason = str(signatures[0].sig_object.get("/Reason", ""))
        except Exception:
            reason = ""
    found = REPORT_ID.search(reason)
    if not found:
        check.fail("the signature names no Consent Desk report id")
        return ""
    report_id = found.group(1)
    report = Report.objects.filter(pk=report_id).first()
    if report is None or report.status != Report.Status.READY:
        check.fail(f"report {report_id} is not known to this Consent Desk")
        return report_id
    digest = sha256_file(handle)
    if digest != report.sha256:
        check.fail(
            f"this file (SHA-256 {digest}) is not the file report {report_id} was issued as ({report.sha256})"
        )
    else:
        check.note(
            f"{report.get_kind_display()} made {report.created_at:%Y-%m-%d %H:%M} UTC; this exact file"
        )
        if report.file_deleted_at is not None:
            # Our copy is gone (reports.file_deletion); the row that recognises this one stays.
            check.note(report.file_deleted_text)
    return report_id


def _check_ledger(
    reader: Any, manifest: dict[str, Any] | None, checks: dict[str, Check], verdict: ReportVerdict
) -> None:
    check = checks["ledger"]
    if manifest is None:
        check.fail("not checked: no readable manifest.json")
        return
    _check_seal(manifest.get("seal"), check)
    files = manifest["_files"]
    if "events.csv" not in files:
        check.fail("there is no events.csv attachment")
        return
    try:
        _check_events(files["events.csv"], check, verdict)
    except (ValueError, UnicodeDecodeError, csv.Error, zlib.error) as exc:
        # A changed byte in the compressed stream: the attachments check names it too.
        check.fail(f"events.csv cannot be read: {exc}")


def _check_seal(seal: dict[str, Any] | None, check: Check) -> None:
    if not seal:
        check.note("no seal existed when the report was made")
        return
    sequence, seal_hash = seal.get("sequence"), seal.get("hash")
    if not isinstance(sequence, int):
        check.fail("manifest.json names no seal sequence")
        return
    seals = list(Seal.objects.order_by("sequence"))
    previous = chain.GENESIS_HASH
    found = False
    for index, stored in enumerate(seals):
        recomputed = chain.seal_hash(
            sequence=stored.sequence,
            created_at=stored.created_at,
            first_event_id=stored.first_event_id,
            last_event_id=stored.last_event_id,
            event_count=stored.event_count,
            events_digest=stored.events_digest,
            prev_hash=stored.prev_hash,
        )
        if stored.sequence != index + 1 or stored.prev_hash != previous or recomputed != stored.hash:
            check.fail(f"the seal chain is broken at seal {stored.sequence}")
            break
        previous = stored.hash
        if stored.sequence == sequence:
            found = stored.hash == seal_hash
            break
    if not found:
        check.fail(f"seal {sequence} ({seal_hash}) named by the report is no longer in the seal chain")
    logged = seal_log_entries(Path(settings.LEDGER_SEAL_LOG)).get(sequence)
    if logged != seal_hash:
        check.fail(
            f"seal {sequence} is not in the seal log {settings.LEDGER_SEAL_LOG} with this hash"
            if logged
            else f"seal {sequence} is not in the seal log {settings.LEDGER_SEAL_LOG}"
        )
    if found and logged == seal_hash:
        check.note(f"seal {sequence} is in the seal chain and the seal log")


def _check_events(events_csv: Any, check: Check, verdict: ReportVerdict) -> None:
    """Every row of events.csv against the ledger now: still there, the same in every column, and
    still hashing to its stored hash."""
    reader = csv.reader(events_csv.lines())
    header = next(reader, None)
    if header != [name for name, _ in EVENT_COLUMNS]:
        check.fail("events.csv does not have Consent Desk's columns")
        return
    purposes, policies = lookups()
    total = 0
    batch: list[list[str]] = []

    def compare(rows: list[list[str]]) -> None:
        ids = [int(row[0]) for row in rows]
        stored = {
            values[0]: values
            for values in ConsentEvent.objects.filter(id__in=ids).values_list(*EVENT_FIELDS).order_by()
        }
        hashed = {
            values[0]: values[1:]
            for values in ConsentEvent.objects.filter(id__in=ids)
            .values_list("id", "prev_hash", "hash", *chain.EVENT_HASHED_COLUMNS)
            .order_by()
        }
        erased_at: dict[int, Any] = dict(
            ConsentEvent.objects.filter(id__in=ids, contact__erased_at__isnull=False).values_list(
                "id", "contact__erased_at"
            )
        )
        for row in rows:
            event_id = int(row[0])
            values = stored.get(event_id)
            if values is None:
                _changed(verdict, f"event {event_id} is no longer in the ledger (deleted)")
                continue
            now = event_csv_values(values, purposes, policies)
            differing = [
                EVENT_COLUMNS[i][0] for i, (was, is_) in enumerate(zip(row, now, strict=False)) if was != is_
            ]
            prev_hash, stored_hash, *columns = hashed[event_id]
            try:
                rehashed = chain.event_hash(prev_hash, chain.event_values(tuple(columns))) == stored_hash
            except ValueError:
                rehashed = False
            personal_at = EVENT_COLUMNS_INDEX["personal"]
            if differing == ["personal"] and now[personal_at] == "{}" and event_id in erased_at and rehashed:
                # The person was erased: their values are gone, the event and its proof are not.
                verdict.erased_count += 1
                if len(verdict.erased_events) < SHOWN_CHANGES:
                    when = erased_at[event_id].isoformat(timespec="seconds")
                    verdict.erased_events.append(
                        f"event {event_id}: personal data erased since ({when}); the event still verifies"
                    )
                continue
            if differing:
                changes = ", ".join(
                    f"{name} {row[EVENT_COLUMNS_INDEX[name]]!r} → {now[EVENT_COLUMNS_INDEX[name]]!r}"
                    for name in differing[:4]
                )
                _changed(verdict, f"event {event_id} changed: {changes}")
            elif not rehashed:
                _changed(verdict, f"event {event_id} no longer hashes to its stored hash")

    for row in reader:
        total += 1
        batch.append(row)
        if len(batch) == CHUNK:
            compare(batch)
            batch = []
    if batch:
        compare(batch)
    if verdict.changed_count:
        check.fail(
            f"{verdict.changed_count} of the {total} events in events.csv changed in the ledger since the report was made"
        )
    elif verdict.erased_count:
        check.note(
            f"all {total} events in events.csv are in the ledger; the personal data of "
            f"{verdict.erased_count} was erased since the report was made, and they still verify"
        )
    else:
        check.note(f"all {total} events in events.csv are in the ledger unchanged")


EVENT_COLUMNS_INDEX = {name: index for index, (name, _) in enumerate(EVENT_COLUMNS)}


def _changed(verdict: ReportVerdict, detail: str) -> None:
    verdict.changed_count += 1
    if len(verdict.changed_events) < SHOWN_CHANGES:
        verdict.changed_events.append(detail)
