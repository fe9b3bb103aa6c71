"""Fixtures of the reports' tests.

- `signing_files`: a CA and a signing certificate made once per run by the code that makes the demo's
  (`demo_signing_create`), in a directory of the run's own;
- `report_settings` (autouse): those as REPORT_SIGNING_KEY/CERT/CHAIN and the pinned root, the
  report files stored under the test's tmp_path, no demo directory, no TSA;
- `ledger_of`: records decisions through the ledger's one write path at given past times;
- `seal`: seals the ledger and appends to the (test's own) seal log;
- `pdf_tools`: poppler's pdfsig with an NSS database that trusts the test CA, pdffonts, pdfinfo;
- `behind_the_triggers`: runs SQL as a database owner could, triggers off.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from compliance import ledger_guard, services
from compliance.models import ConsentEvent, PolicyVersion
from reports.signing import DemoFiles, demo_signing_create
from tests.needs import missing

_keys = itertools.count(1)


@pytest.fixture(scope="session")
def signing_files(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return demo_signing_create(directory=tmp_path_factory.mktemp("signing"), organisation="Cast Ltd")


@pytest.fixture(autouse=True)
def report_settings(settings: Any, tmp_path: Path, signing_files: DemoFiles) -> Any:
    settings.REPORT_SIGNING_KEY = str(signing_files.key)
    settings.REPORT_SIGNING_CERT = str(signing_files.certificate)
    settings.REPORT_SIGNING_CHAIN = str(signing_files.ca)
    settings.REPORT_SIGNING_P12 = ""
    settings.REPORT_TRUST_ROOTS = ""
    settings.REPORT_TSA_URL = ""
    settings.REPORT_DEMO_SIGNING_DIR = tmp_path / "no-demo-signing"
    settings.REPORT_ORGANISATION = "Cast Ltd"
    settings.STORAGES = {
        **settings.STORAGES,
        "reports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "reports"), "file_permissions_mode": 0o440},
        },
    }
    return settings


@pytest.fixture
def policy(db: None) -> PolicyVersion:
    return services.policy_version_publish(
        label="2026-03", effective_at="2026-03-01", text="We use your data to send you offers you chose."
    )


@dataclass
class LedgerWriter:
    policy: PolicyVersion

    def record(
        self,
        email: str,
        purpose: str,
        status: str,
        *,
        at: datetime,
        source: str = "web_portal",
        ip: str | None = "198.51.100.4",
    ) -> ConsentEvent:
        evidence: dict[str, Any] = {}
        if purpose == "email_marketing" and status == "opted_in":
            evidence["double_opt_in_confirmed_at"] = at.isoformat()
        result = services.consent_ingest(
            identity=services.ContactIdentity(email=email),
            decision=services.ConsentDecision(
                purpose=purpose,
                status=status,
                source=source,
                occurred_at=at,
                idempotency_key=f"reports-{next(_keys)}",
                policy_version=self.policy.label if status == "opted_in" else None,
                ip_address=ip,
                user_agent="ShopApp/5.2 iOS",
                evidence=evidence,
            ),
        )
        return result.event


@pytest.fixture
def ledger_of(policy: PolicyVersion) -> LedgerWriter:
    return LedgerWriter(policy)


@pytest.fixture
def seal(django_capture_on_commit_callbacks: Any) -> Callable[[], Any]:
    def make() -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return services.ledger_seal()

    return make


def days_ago(days: float) -> datetime:
    return timezone.now() - timedelta(days=days)


@dataclass
class PdfTools:
    nss_dir: Path

    def pdfsig(self, path: Path) -> str:
        result = subprocess.run(
            ["pdfsig", "-nssdir", f"sql:{self.nss_dir}", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        return result.stdout + result.stderr

    def pdfsig_valid(self, path: Path) -> bool:
        out = self.pdfsig(path)
        return (
            "Signature Validation: Signature is Valid." in out
            and "Certificate Validation: Certificate is Trusted." in out
            and "Total document signed" in out
        )

    def run(self, *command: str) -> str:
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="session")
def pdf_tools(tmp_path_factory: pytest.TempPathFactory, signing_files: DemoFiles) -> PdfTools:
    for tool in ("pdfsig", "pdffonts", "pdfinfo", "pdfdetach", "certutil"):
        if not shutil.which(tool):
            missing(
                f"{tool} is not installed (scripts/system-packages.sh installs poppler-utils, libnss3-tools)"
            )
    nss = tmp_path_factory.mktemp("nss")
    subprocess.run(
        ["certutil", "-N", "-d", f"sql:{nss}", "--empty-password"], check=True, capture_output=True
    )
    subprocess.run(
        ["certutil", "-A", "-d", f"sql:{nss}", "-n", "cast-ca", "-t", "C,C,C", "-i", str(signing_files.ca)],
        check=True,
        capture_output=True,
    )
    return PdfTools(nss)


@pytest.fixture
def behind_the_triggers() -> Callable[..., None]:
    def run(*statements: tuple[str, list[Any]]) -> None:
        """SQL as someone with owner rights could run it: triggers off, change, triggers on."""
        ledger_guard.drop(connection)
        try:
            with connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(sql, params)
        finally:
            ledger_guard.install(connection)

    return run
