from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from reports.signing import demo_signing_create


class Command(BaseCommand):
    help = (
        "Make a DEMO certificate authority and a report signing certificate under var/signing "
        "(REPORT_DEMO_SIGNING_DIR), used when no REPORT_SIGNING_* key is configured. Not for production."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--directory", type=Path, default=None, help="default: REPORT_DEMO_SIGNING_DIR")
        parser.add_argument("--force", action="store_true", help="replace the demo CA and key that exist")

    def handle(self, *args: Any, **options: Any) -> None:
        directory = options["directory"] or Path(settings.REPORT_DEMO_SIGNING_DIR)
        files = demo_signing_create(
            directory=directory, organisation=settings.REPORT_ORGANISATION, force=options["force"]
        )
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        fingerprint = hashlib.sha256(ca.public_bytes(Encoding.DER)).hexdigest()
        state = "made" if files.created else "kept (already there; --force replaces them)"
        self.stdout.write(
            f"Demo CA and signing certificate {state}, FOR DEMOS ONLY:\n"
            f"  CA certificate (pin this to verify reports): {files.ca}\n"
            f"  signing certificate: {files.certificate}\n  signing key: {files.key}\n"
            f"  CA SHA-256 fingerprint: {fingerprint}"
        )
        if settings.REPORT_SIGNING_KEY or settings.REPORT_SIGNING_P12:
            self.stdout.write(
                "Note: a REPORT_SIGNING_* key is configured, so reports are signed with it, not the demo key."
            )
