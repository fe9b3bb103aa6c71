"""The Celery tasks of the reports (thin: a service does the work): make a requested report, and
the daily sweep of our stored report files (reports.file_deletion).

A report that fails is not made again: its cause (no signing key, a bug) would fail again, and the
report's row already says what went wrong, on its page. Making one has time limits of its own: a
report over a million events takes longer than the sync's tasks may.

Celery ships no type information, so `shared_task` is an untyped decorator to mypy.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from reports import services
from reports.file_deletion import report_files_sweep

logger = logging.getLogger(__name__)


@shared_task(  # type: ignore[untyped-decorator]
    name=services.TASK_NAME,
    soft_time_limit=settings.REPORT_TASK_SOFT_TIME_LIMIT_S,
    time_limit=settings.REPORT_TASK_TIME_LIMIT_S,
)
def report_build(report_id: str) -> str:
    try:
        report = services.report_build(report_id=report_id)
    except services.ReportFailed as exc:
        logger.warning("report %s failed: %s", report_id, exc)
        return "failed"
    return str(report.status)


@shared_task(name="reports.files_sweep", ignore_result=True)  # type: ignore[untyped-decorator]
def files_sweep() -> dict[str, int]:
    return report_files_sweep()
