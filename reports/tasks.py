"""The one Celery task of the reports: make a requested report (thin: an id in, a service does it).

A failure is not retried: its cause (no signing key, a bug) would fail again, and the report's
row already says what went wrong, on its page. Its time limits are the reports' own: a report
over a million events takes longer than the sync's tasks may.

Celery ships no type information, so `shared_task` is an untyped decorator to mypy.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from reports import services

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
