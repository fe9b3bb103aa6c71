"""Task: the stranded-change audit (`sync.audit.sync_audit`), database only, run by beat."""

from __future__ import annotations

from celery import shared_task

from sync.audit import sync_audit


@shared_task(name="sync.audit", acks_late=True)
def audit() -> dict[str, int]:
    report = sync_audit()
    return {"checked": report.checked, "stranded": len(report.stranded)}
