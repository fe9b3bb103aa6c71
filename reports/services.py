"""Every write of the reports: asking for one, making it (with progress), logging downloads.

`report_request` stores the ask and queues `reports.build` once the row is committed; the
task runs `report_build`, which claims the row, makes the signed PDF (reports.builders) in a
scratch directory, stores it once through the "reports" storage, and records its size and
SHA-256. The commands call `report_make`, which does the same synchronously.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files import File
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from compliance import services as compliance_services
from compliance.logins import client_ip
from compliance.models import AccessLog
from reports import builders
from reports.models import Report, ReportDownload, report_storage
from reports.pdf import sha256_file
from reports.scopes import ContactScope, PeriodScope, SampleScope
from reports.signing import SigningUnavailable

logger = logging.getLogger(__name__)

Scope = PeriodScope | ContactScope | SampleScope
KIND_OF_SCOPE = {
    PeriodScope: Report.Kind.PERIOD,
    ContactScope: Report.Kind.EVIDENCE,
    SampleScope: Report.Kind.SAMPLE,
}
TASK_NAME = "reports.build"


class ReportFailed(Exception):
    """The report could not be made; its row says why (Report.error)."""


def report_request(*, scope: Scope, user: User) -> Report:
    """Store the ask and queue its making; returns at once."""
    with transaction.atomic():
        report = Report.objects.create(
            kind=KIND_OF_SCOPE[type(scope)],
            scope=scope.as_json(),
            requested_by=user,
            requested_via="web",
            phase="Waiting for a worker",
        )
        transaction.on_commit(lambda: _enqueue(report))
    return report


def _enqueue(report: Report) -> None:
    from config.celery import app

    try:
        app.send_task(TASK_NAME, args=[str(report.pk)])
    except Exception as exc:  # the broker is down: say so on the report rather than wait forever
        logger.exception("could not queue report %s", report.pk)
        _fail(report.pk, f"Could not queue the report for a worker (is the Celery broker running?): {exc}")


def _progress(report_id: Any) -> builders.Progress:
    def progress(phase: str, percent: int) -> None:
        Report.objects.filter(pk=report_id, status=Report.Status.RUNNING).update(
            phase=phase[:120], percent=max(0, min(percent, 99))
        )

    return progress


def _fail(report_id: Any, message: str) -> None:
    Report.objects.filter(pk=report_id).exclude(status=Report.Status.READY).update(
        status=Report.Status.FAILED, error=message, phase="Failed", finished_at=timezone.now()
    )


def _claim(report_id: Any) -> bool:
    """Take the report to make it: a queued one, or one whose maker died (running for longer
    than a task may run). A conditional UPDATE, so two workers never make the same report."""
    stale = timezone.now() - timedelta(seconds=settings.REPORT_TASK_TIME_LIMIT_S + 60)
    return bool(
        Report.objects.filter(pk=report_id)
        .filter(Q(status=Report.Status.QUEUED) | Q(status=Report.Status.RUNNING, started_at__lt=stale))
        .update(
            status=Report.Status.RUNNING, started_at=timezone.now(), phase="Starting", percent=0, error=""
        )
    )


def report_build(*, report_id: Any) -> Report:
    """Make the report's signed PDF and store it. Raises ReportFailed (the row says why) when it
    cannot be made; returns the row untouched when it is not this caller's to make."""
    if not _claim(report_id):
        return Report.objects.get(pk=report_id)
    report = Report.objects.select_related("requested_by").get(pk=report_id)
    try:
        with tempfile.TemporaryDirectory(prefix="report-") as work:
            made = builders.report_pdf_make(report=report, work_dir=Path(work), progress=_progress(report_id))
            _progress(report_id)("Storing the signed file", 98)
            with made.path.open("rb") as handle:
                digest = sha256_file(handle)
                size = made.path.stat().st_size
                # The storage picks another name rather than overwrite: a stored report never changes.
                name = report_storage().save(f"{report.pk}.pdf", File(handle, name=f"{report.pk}.pdf"))
    except SigningUnavailable as exc:
        _fail(report_id, f"Cannot sign the report, so none was made: {exc}")
        raise ReportFailed(str(exc)) from exc
    except Exception as exc:
        logger.exception("report %s failed", report_id)
        _fail(report_id, f"The report could not be made: {type(exc).__name__}: {exc}")
        raise ReportFailed(str(exc)) from exc
    Report.objects.filter(pk=report_id, status=Report.Status.RUNNING).update(
        status=Report.Status.READY,
        phase="Ready",
        percent=100,
        file=name,
        size=size,
        sha256=digest,
        event_count=made.event_count,
        seal_sequence=made.seal.sequence if made.seal else None,
        seal_hash=made.seal.hash if made.seal else "",
        attachments=made.attachments,
        contact_ids=made.contact_ids,
        finished_at=timezone.now(),
    )
    return Report.objects.get(pk=report_id)


def report_make(*, scope: Scope, requested_via: str, out: Path) -> Report:
    """What the commands do: the same report as the web's, made now, and copied to `out`."""
    report = Report.objects.create(
        kind=KIND_OF_SCOPE[type(scope)], scope=scope.as_json(), requested_via=requested_via, phase="Starting"
    )
    report = report_build(report_id=report.pk)
    out.parent.mkdir(parents=True, exist_ok=True)
    with report_storage().open(report.file.name, "rb") as stored, out.open("wb") as copy:
        while chunk := stored.read(1 << 20):
            copy.write(chunk)
    return report


def report_download_record(*, report: Report, request: HttpRequest) -> ReportDownload:
    """Log a download twice over: in the reports' own download log (shown to officers), and in the
    access log of personal data read (compliance), naming the people an evidence pack or a
    sample shows. A period report names no one: its CSV carries contact ids only."""
    user: Any = request.user
    with transaction.atomic():
        download = ReportDownload.objects.create(
            report=report,
            user=user,
            downloaded_at=timezone.now(),
            ip_address=client_ip(request),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:300],
        )
        compliance_services.access_log_record(
            request=request,
            kind=AccessLog.Kind.REPORT_DOWNLOAD,
            contact_ids=report.contact_ids,
            detail=f"report {report.pk} ({report.get_kind_display()})",
        )
    return download
