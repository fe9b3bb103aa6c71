"""Making one report's signed PDF: gather (reports.selectors), write the attachments, lay out,
sign. `report_pdf_make` is what the Celery task and the commands run, through
`reports.services.report_build`.

The signing key is loaded first: without one, nothing is made (and the error says why).
Every read is bounded by the highest event id seen at the start, so the counts, the tables
and the CSV describe one and the same ledger even while events keep arriving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Max
from django.template.loader import render_to_string

from compliance import charts
from compliance.models import ConsentEvent, ConsentStatus, Purpose, Source
from reports import selectors
from reports.attachments import Attachment, csv_write, events_csv_write, manifest_write, pushes_csv_write
from reports.models import Report
from reports.pdf import html_to_pdfa, pdf_finish
from reports.scopes import ContactScope, PeriodScope, SampleScope, scope_from_json
from reports.signing import SigningKey, signing_key_load
from reports.withdrawals import WITHDRAWAL_COLUMNS, Outcome, WithdrawalStats, withdrawal_row, withdrawals

Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class Made:
    path: Path
    event_count: int
    attachments: dict[str, str]
    seal: selectors.SealFacts | None
    contact_ids: list[int]


@dataclass
class Content:
    template: str
    title: str
    scope_text: str
    context: dict[str, Any]
    attachments: list[Attachment]
    counts: dict[str, Any]
    integrity: selectors.Integrity
    event_count: int
    contact_ids: list[int] = field(default_factory=list)  # the people named, with their identifiers


def _generated_by(report: Report) -> str:
    user = report.requested_by
    if user is None:
        return f"manage.py {report.requested_via}"
    name = user.get_full_name()
    return f"{name} ({user.get_username()})" if name else user.get_username()


def report_pdf_make(*, report: Report, work_dir: Path, progress: Progress) -> Made:
    progress("Loading the signing key", 1)
    key = signing_key_load()
    upto = ConsentEvent.objects.aggregate(high=Max("id"))["high"] or 0
    now = datetime.now(UTC)
    scope = scope_from_json(report.kind, report.scope)
    if isinstance(scope, PeriodScope):
        content = _period(scope, work_dir, progress, now=now, upto=upto)
    elif isinstance(scope, ContactScope):
        content = _evidence(scope, work_dir, progress, upto=upto)
    else:
        content = _sample(scope, work_dir, progress, upto=upto)
    manifest = manifest_write(
        directory=work_dir,
        kind=report.kind,
        scope=report.scope,
        counts=content.counts,
        seal=selectors.manifest_seal(content.integrity),
        attachments=content.attachments,
        made_at=now,
        report_id=str(report.id),
    )
    attachments = [*content.attachments, manifest]
    progress("Laying out the PDF", 86)
    html = render_to_string(
        content.template,
        {
            **content.context,
            **_common(report, key, content, attachments, now),
        },
    )
    unsigned = work_dir / "unsigned.pdf"
    html_to_pdfa(html=html, output=unsigned, base_url=str(settings.BASE_DIR))
    progress("Signing", 94)
    signed = work_dir / "signed.pdf"
    pdf_finish(source=unsigned, attachments=attachments, output=signed, key=key, report_id=str(report.id))
    return Made(
        path=signed,
        event_count=content.event_count,
        attachments={a.name: a.sha256 for a in attachments},
        seal=content.integrity.head,
        contact_ids=content.contact_ids,
    )


def _common(
    report: Report, key: SigningKey, content: Content, attachments: list[Attachment], now: datetime
) -> dict[str, Any]:
    return {
        "title": content.title,
        "organisation": settings.REPORT_ORGANISATION,
        "report_id": str(report.id),
        "generated_at": now,
        "generated_by": _generated_by(report),
        "scope_text": content.scope_text,
        "integrity": content.integrity,
        "demo_key": key.demo,
        "attachment_names": [a.name for a in attachments],
        "deadline_days": settings.OPT_OUT_DEADLINE_BUSINESS_DAYS,
        "timestamped": bool(settings.REPORT_TSA_URL),
        "tsa_url": settings.REPORT_TSA_URL,
        "seal_log_note": "write-once storage in production",
        "csv_names": [a.name for a in attachments if a.name.endswith(".csv")],
    }


def _csv_progress(progress: Progress, total: int, start: int, end: int, phase: str) -> Callable[[int], None]:
    def report_rows(rows: int) -> None:
        share = rows / total if total else 1
        progress(f"{phase} ({rows:,} of {total:,} rows)", start + int((end - start) * min(share, 1)))

    return report_rows


# -- the period audit report --------------------------------------------------------------------


def _period(scope: PeriodScope, work: Path, progress: Progress, *, now: datetime, upto: int) -> Content:
    progress("Counting events in scope", 4)
    counts = selectors.period_counts(scope, upto=upto)
    suppressions = selectors.suppression_counts(scope)
    progress("Timing withdrawals", 14)
    stats = WithdrawalStats(keep=settings.REPORT_TABLE_MAX_ROWS)

    def rows() -> Iterator[list[object]]:
        # Tallied for the PDF while streamed into the CSV: one pass, bounded memory.
        for withdrawal in withdrawals(scope, now=now, upto=upto):
            stats.add(withdrawal)
            yield withdrawal_row(withdrawal)

    withdrawals_csv = csv_write(
        directory=work,
        name="withdrawals.csv",
        description="Every withdrawal in scope with when it took effect in Zoho, its deadline and outcome.",
        header=WITHDRAWAL_COLUMNS,
        rows=rows(),
    )
    progress("Proof of delivery to Zoho", 30)
    delivery = selectors.delivery_counts(scope)
    progress("Verifying the ledger (verify_ledger)", 34)
    integrity = selectors.integrity_check(
        events_in_scope=selectors.scope_events(scope, upto=upto),
        max_event_id=counts.max_event_id,
        whole_ledger=True,
    )
    progress("Writing events.csv", 48)
    events_csv = events_csv_write(
        events=selectors.scope_events(scope, upto=upto),
        directory=work,
        progress=_csv_progress(progress, counts.total, 48, 84, "Writing events.csv"),
    )
    labels = dict(ConsentStatus.choices)
    statuses = [s for s in ConsentStatus.values]
    purposes = list(counts.by_purpose_status)
    names = dict(Purpose.objects.values_list("code", "name"))
    status_chart = charts.stacked_bar_chart(
        title="Events by purpose and status",
        description=f"{counts.total} events in scope, split by purpose and by the status each event set.",
        categories=[names.get(code, code) for code in purposes],
        series=[
            (status, labels[status], [counts.by_purpose_status[p].get(status, 0) for p in purposes])
            for status in statuses
        ],
    )
    source_chart = charts.bar_chart(
        title="Events by source",
        description="Where the decisions in scope came from.",
        rows=counts.by_source,
    )
    week_chart = charts.column_chart(
        title="Events per week",
        description=f"Events per week (weeks start on Monday), {len(counts.per_week)} weeks; the table gives them per month.",
        points=[(week.strftime("%Y-%m-%d"), n) for week, n in counts.per_week],
    )
    policy_chart = charts.bar_chart(
        title="Opt-ins by policy version",
        description="Opt-in events in scope by the privacy notice the person agreed to.",
        rows=counts.opt_ins_by_policy,
        value_label="Opt-ins",
        colour=charts.STATUS_COLOURS["opted_in"],
    )
    outcome_order = [
        Outcome.IN_TIME,
        Outcome.LATE,
        Outcome.OVERDUE,
        Outcome.PENDING,
        Outcome.SUPERSEDED,
        Outcome.NOT_IN_CRM,
        Outcome.NO_MAPPING,
    ]
    outcomes = [(o, stats.outcomes[o]) for o in outcome_order if stats.outcomes.get(o)]
    outcome_chart = charts.bar_chart(
        title="Withdrawals by outcome",
        description=f"Whether each withdrawal took effect within {settings.OPT_OUT_DEADLINE_BUSINESS_DAYS} business days.",
        rows=outcomes,
        value_label="Withdrawals",
        colour=charts.STATUS_COLOURS["opted_out"],
    )
    by_status = {
        status: sum(p.get(status, 0) for p in counts.by_purpose_status.values()) for status in statuses
    }
    return Content(
        template="reports/pdf_period.html",
        title="Period audit report",
        scope_text=scope.describe(),
        context={
            "counts": counts,
            "suppressions": suppressions,
            "suppressions_added": sum(n for _, _, n in suppressions.added),
            "withdrawals": stats,
            "withdrawal_outcomes": outcomes,
            "timing": stats.summary(),
            "timing_stages": stats.stages(),
            "delivery": delivery,
            "policies": selectors.policies_in_force(scope),
            "status_chart": status_chart,
            "source_chart": source_chart,
            "week_chart": week_chart,
            "policy_chart": policy_chart,
            "outcome_chart": outcome_chart,
            "campaigns_lists": list(settings.ZOHO_CAMPAIGNS_LIST_KEYS),
            "sources": dict(Source.choices),
        },
        attachments=[events_csv, withdrawals_csv],
        counts={
            "events": counts.total,
            "contacts": counts.contacts,
            "max_event_id": counts.max_event_id,
            "events_by_status": by_status,
            "events_by_purpose_and_status": counts.by_purpose_status,
        },
        integrity=integrity,
        event_count=events_csv.rows or 0,
    )


# -- one person's evidence pack -----------------------------------------------------------------


def _evidence(scope: ContactScope, work: Path, progress: Progress, *, upto: int) -> Content:
    progress("Reading the person's history", 10)
    pack = selectors.evidence_pack(contact_id=scope.contact_id)
    progress("Reading the seals", 30)
    events = ConsentEvent.objects.filter(contact_id=scope.contact_id, id__lte=upto)
    high = events.aggregate(high=Max("id"))["high"]
    integrity = selectors.integrity_check(events_in_scope=events, max_event_id=high, whole_ledger=False)
    progress("Writing events.csv", 60)
    events_csv = events_csv_write(events=events, directory=work)
    pushes_csv = pushes_csv_write(contact_ids=[scope.contact_id], directory=work)
    return Content(
        template="reports/pdf_evidence.html",
        title="Evidence pack",
        scope_text=f"every event, state and delivery of {pack.contact.display_name} (contact {pack.contact.id})",
        context={"pack": pack},
        attachments=[events_csv, pushes_csv],
        counts={
            "events": events_csv.rows,
            "pushes": pushes_csv.rows,
            "contact": scope.contact_id,
            "max_event_id": high,
        },
        integrity=integrity,
        event_count=events_csv.rows or 0,
        contact_ids=[scope.contact_id],
    )


# -- the auditor's sample -----------------------------------------------------------------------


def _sample(scope: SampleScope, work: Path, progress: Progress, *, upto: int) -> Content:
    progress("Picking the sample", 5)
    candidates = selectors.sample_candidates(scope.period, upto=upto)
    picked = selectors.sample_pick(candidates=candidates, size=scope.size, seed=scope.seed)
    packs = []
    for index, contact_id in enumerate(picked):
        packs.append(selectors.evidence_pack(contact_id=contact_id))
        progress(
            f"Reading evidence ({index + 1} of {len(picked)} people)",
            5 + int(45 * (index + 1) / max(len(picked), 1)),
        )
    events = ConsentEvent.objects.filter(contact_id__in=picked, id__lte=upto)
    high = events.aggregate(high=Max("id"))["high"]
    progress("Reading the seals", 52)
    integrity = selectors.integrity_check(events_in_scope=events, max_event_id=high, whole_ledger=False)
    progress("Writing events.csv", 62)
    events_csv = events_csv_write(events=events, directory=work)
    pushes_csv = pushes_csv_write(contact_ids=picked, directory=work)
    among = (
        f"people with {scope.period.describe()}" if scope.period else "every person with at least one event"
    )
    return Content(
        template="reports/pdf_sample.html",
        title="Auditor's sample",
        scope_text=scope.describe(),
        context={
            "packs": packs,
            "picked": picked,
            "candidates": len(candidates),
            "size": scope.size,
            "seed": scope.seed,
            "among": among,
            "method": selectors.SAMPLE_METHOD,
            # Listed once for everyone, not in each person's section.
            "policies": sorted(
                {p.pk: p for pack in packs for p in pack.policies}.values(), key=lambda p: p.effective_at
            ),
        },
        attachments=[events_csv, pushes_csv],
        counts={
            "candidates": len(candidates),
            "picked": picked,
            "events": events_csv.rows,
            "pushes": pushes_csv.rows,
            "max_event_id": high,
        },
        integrity=integrity,
        event_count=events_csv.rows or 0,
        contact_ids=picked,
    )
