"""Deleting our stored copies of report files (docs/erasure.md, "Logs, caches and files").

An evidence pack or an auditor's sample holds the personal values (identifiers, IP addresses, user
agents, evidence) of the people it names, and a period report those of everyone who acted in the
period (its events.csv), as they were when it was made. Our copy goes:

- **erasure**: once an erasure is committed (reports.erasure), the file of every finished evidence
  pack and sample that names the person, and of every finished period report whose scope holds one
  of the person's events, begun before the erasure. One begun after holds nothing of theirs (their
  values were gone by then), and stays; the same scope made again gives a period report without
  them;
- **retention**: every stored file made more than REPORT_FILE_RETENTION_DAYS ago, period reports too.

The daily sweep (`reports.files_sweep`) does both, so a deletion missed at erasure time (a crash, the
storage down, a report still being made) is done the next day. The row stays with its SHA-256, size
and seal, so `verify_report` still recognises a copy handed out before; it records when and why.
The file is deleted before the row says so: a crash in between leaves a row that still offers a file
already gone (the next sweep records it), never a kept file that the row calls deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from compliance.models import ErasureRequest
from reports.models import Report, report_storage

logger = logging.getLogger(__name__)

# The kinds that name their people (Report.contact_ids); a period report holds whoever acted in it.
NAMING_KINDS = (Report.Kind.EVIDENCE, Report.Kind.SAMPLE)
FIELDS = ("pk", "file", "contact_ids", "created_at", "started_at")


def report_file_delete(*, report: Report, reason: str, now: datetime) -> bool:
    """Delete one report's stored file (one already missing is fine) and record when and why with
    `update()`, as `Report.save` refuses finished reports. False when it was recorded before."""
    if report.file:
        report_storage().delete(report.file.name)
    return bool(
        Report.objects.filter(pk=report.pk, file_deleted_at__isnull=True).update(
            file_deleted_at=now, file_deleted_reason=reason[:200]
        )
    )


def _delete_each(reports: Iterable[tuple[Report, str]], now: datetime) -> int:
    """Delete each (report, reason); a storage error leaves that file to the next sweep."""
    deleted = 0
    for report, reason in reports:
        try:
            deleted += report_file_delete(report=report, reason=reason, now=now)
        except Exception:
            logger.exception(
                "could not delete the stored file of report %s; the daily sweep retries", report.pk
            )
    return deleted


def report_files_erased_delete(
    *, contact_ids: Iterable[int] | None = None, now: datetime | None = None
) -> int:
    """Delete the stored files of the reports begun before a person they hold was erased: of the
    people `contact_ids` (the erasure's receiver), or of everyone erased (the sweep). Returns how
    many files were deleted."""
    now = now or timezone.now()
    people = None if contact_ids is None else set(contact_ids)
    return _naming_erased_delete(people, now) + _periods_erased_delete(people, now)


def _naming_erased_delete(contact_ids: set[int] | None, now: datetime) -> int:
    """The evidence packs and samples that name a person erased since they were begun."""
    reports = Report.objects.filter(
        status=Report.Status.READY, kind__in=NAMING_KINDS, file_deleted_at__isnull=True
    ).only(*FIELDS)
    candidates = list(reports) if contact_ids is None else _naming(reports, contact_ids)
    named = {contact_id for report in candidates for contact_id in report.contact_ids}
    erasures = {
        contact_id: (pk, erased_at)
        for contact_id, pk, erased_at in ErasureRequest.objects.filter(
            contact_id__in=named, status=ErasureRequest.Status.DONE
        ).values_list("contact_id", "pk", "erased_at")
        if erased_at is not None
    }

    def causes(report: Report) -> list[int]:
        begun = report.started_at or report.created_at
        return sorted(
            erasures[contact_id][0]
            for contact_id in set(report.contact_ids)
            if contact_id in erasures and begun < erasures[contact_id][1]
        )

    return _delete_each(
        ((report, _erased_reason(found)) for report in candidates if (found := causes(report))), now
    )


def _periods_erased_delete(contact_ids: set[int] | None, now: datetime) -> int:
    """The period reports whose scope holds an event of a person erased since they were begun: one
    query a stored period report, on the events of the people erased since (by contact, by time)."""
    from reports.scopes import PeriodScope, scope_from_json
    from reports.selectors import scope_events

    erasures = ErasureRequest.objects.filter(status=ErasureRequest.Status.DONE, erased_at__isnull=False)
    if contact_ids is not None:
        erasures = erasures.filter(contact_id__in=contact_ids)
    if not erasures.exists():
        return 0
    periods = Report.objects.filter(
        status=Report.Status.READY, kind=Report.Kind.PERIOD, file_deleted_at__isnull=True
    ).only(*FIELDS, "scope")

    def causes(report: Report) -> list[int]:
        since = erasures.filter(erased_at__gt=report.started_at or report.created_at)
        scope = scope_from_json(Report.Kind.PERIOD, report.scope)
        assert isinstance(scope, PeriodScope)
        held = scope_events(scope).filter(contact_id__in=since.values("contact_id")).values("contact_id")
        return sorted(since.filter(contact_id__in=held).values_list("pk", flat=True))

    return _delete_each(
        ((report, _erased_reason(found, period=True)) for report in periods if (found := causes(report))), now
    )


def _naming(reports: QuerySet[Report], contact_ids: set[int]) -> list[Report]:
    """The reports that name one of these people: the database picks them where it has JSON
    containment (PostgreSQL); SQLite (the demo's) has none, so each row is checked here anyway."""
    if contact_ids and connection.features.supports_json_field_contains:
        naming = Q()
        for contact_id in contact_ids:
            naming |= Q(contact_ids__contains=[contact_id])
        reports = reports.filter(naming)
    return [report for report in reports if contact_ids & set(report.contact_ids)]


def _erased_reason(erasure_ids: list[int], *, period: bool = False) -> str:
    holds = "who acted in its period" if period else "it names"
    if len(erasure_ids) == 1:
        return f"erasure request {erasure_ids[0]}: the person {holds} was erased"
    return f"erasure requests {', '.join(map(str, erasure_ids))}: people {holds} were erased"


def report_files_expire(*, now: datetime | None = None) -> int:
    """Delete the stored files made more than REPORT_FILE_RETENTION_DAYS ago (0: none ever)."""
    days = settings.REPORT_FILE_RETENTION_DAYS
    if days <= 0:
        return 0
    now = now or timezone.now()
    reason = f"retention: our copies are kept {days} days"
    expired = Report.objects.filter(
        status=Report.Status.READY, file_deleted_at__isnull=True, finished_at__lt=now - timedelta(days=days)
    ).only(*FIELDS)
    return _delete_each(((report, reason) for report in expired.iterator()), now)


def report_files_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """The daily job: files of erased people first (the more telling reason), then retention."""
    now = now or timezone.now()
    done = {"erased": report_files_erased_delete(now=now), "retention": report_files_expire(now=now)}
    if any(done.values()):
        logger.info("stored report files deleted: %s", done)
    return done
