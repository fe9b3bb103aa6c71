"""Reading a report PDF with tools that are not Consent Desk's: poppler's pdfdetach for the
attachments, pyHanko's validator for the signature (as an auditor would run them)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path
from typing import Any


def attachments(pdf: Path, into: Path) -> dict[str, bytes]:
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdfdetach", "-saveall", "-o", str(into), str(pdf)], check=True, capture_output=True)
    return {path.name: path.read_bytes() for path in into.iterdir()}


def events_csv(files: dict[str, bytes]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(files["events.csv"].decode("utf-8"))))


def manifest(files: dict[str, bytes]) -> dict[str, Any]:
    return json.loads(files["manifest.json"])


def pyhanko_status(pdf: Path, root: Path, *more_roots: Path) -> tuple[Any, Any]:
    """pyHanko's verdict on the one signature, and its DocMDP level (certification)."""
    from pyhanko.keys import load_cert_from_pemder
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    with pdf.open("rb") as handle:
        reader = PdfFileReader(handle)
        (signature,) = reader.embedded_signatures
        roots = [load_cert_from_pemder(str(path)) for path in (root, *more_roots)]
        context = ValidationContext(trust_roots=roots, allow_fetching=False)
        return validate_pdf_signature(signature, context), signature.docmdp_level


def pyhanko_says_valid(pdf: Path, root: Path) -> bool:
    from pyhanko.sign.validation.status import SignatureCoverageLevel

    try:
        status, _ = pyhanko_status(pdf, root)
    except Exception:  # a damaged file does not validate at all
        return False
    return bool(
        status.bottom_line and status.trusted and status.coverage == SignatureCoverageLevel.ENTIRE_FILE
    )
