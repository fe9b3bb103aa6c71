"""The reports' part of an erasure (docs/erasure.md, "Logs, caches and files"): once it is committed
(`contact_erased`), our stored copies of the evidence packs and samples that name the person are
deleted (reports.file_deletion). Rolled back, nothing is deleted; missed, the daily sweep does it."""

from __future__ import annotations

from typing import Any

from compliance.services.erasure import contact_erased
from reports.file_deletion import report_files_erased_delete


def report_files_forget(*, contact_id: int, **_: Any) -> int:
    return report_files_erased_delete(contact_ids=[contact_id])


def connect() -> None:
    contact_erased.connect(report_files_forget, dispatch_uid="reports_report_files_forget")
