"""Reads for the reports: the counts are aggregated by the database, rows are streamed.

Nothing here writes. Period figures are GROUP BY queries over the events in scope (a million
events give a few dozen rows back); lists that could be long are capped at
REPORT_TABLE_MAX_ROWS for the PDF and stream in full into the attachments.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Q, QuerySet
from django.db.models.functions import TruncMonth, TruncWeek

from compliance import chain
from compliance.models import (
    GENESIS_HASH,
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    PolicyVersion,
    Purpose,
    Seal,
    Source,
    Suppression,
)
from compliance.verification import Verdict, ledger_verify
from reports.scopes import PeriodScope
from sync.models import Alert, CrmLink, Discrepancy, FieldMapping, SyncPush


def scope_events(scope: PeriodScope, *, upto: int | None = None) -> QuerySet[ConsentEvent]:
    """The events a period covers; `upto`: only those with an id up to it (the snapshot a report
    reads, so that events recorded while it is made do not join halfway)."""
    events = ConsentEvent.objects.filter(occurred_at__gte=scope.start, occurred_at__lt=scope.end)
    if upto is not None:
        events = events.filter(id__lte=upto)
    if scope.purposes:
        events = events.filter(purpose_id__in=Purpose.objects.filter(code__in=scope.purposes).values("id"))
    if scope.sources:
        events = events.filter(source__in=scope.sources)
    return events


# -- the period's events ------------------------------------------------------------------------


@dataclass(frozen=True)
class PeriodCounts:
    total: int
    by_purpose_status: dict[str, dict[str, int]]  # purpose code -> status -> events
    by_source: list[tuple[str, int]]  # (source label, events), as Source lists them
    per_week: list[tuple[date, int]]  # every week of the period, Monday first, zero included
    per_month: list[tuple[date, int]]
    opt_ins_by_policy: list[tuple[str, int]]  # (policy label or "none", opt-ins)
    contacts: int
    max_event_id: int | None


def period_counts(scope: PeriodScope, *, upto: int | None = None) -> PeriodCounts:
    events = scope_events(scope, upto=upto)
    purposes = dict(Purpose.objects.values_list("id", "code"))
    by_purpose_status: dict[str, dict[str, int]] = {
        purposes[pid]: {} for pid in sorted(purposes, key=lambda pid: purposes[pid])
    }
    if scope.purposes:
        by_purpose_status = {code: {} for code in scope.purposes}
    total = 0
    for purpose_id, status, count in (
        events.values_list("purpose_id", "status").annotate(n=Count("id")).order_by()
    ):
        by_purpose_status[purposes[purpose_id]][status] = count
        total += count
    sources = dict(events.values_list("source").annotate(n=Count("id")).order_by())
    by_source = [
        (label, sources.get(value, 0))
        for value, label in Source.choices
        if sources.get(value) or not scope.sources or value in scope.sources
    ]
    weeks = dict(
        (moment.date(), count)
        for moment, count in events.annotate(week=TruncWeek("occurred_at"))
        .values_list("week")
        .annotate(n=Count("id"))
        .order_by()
    )
    months = dict(
        (moment.date(), count)
        for moment, count in events.annotate(month=TruncMonth("occurred_at"))
        .values_list("month")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_week = []
    week = scope.date_from - timedelta(days=scope.date_from.weekday())
    while week <= scope.date_to:
        per_week.append((week, weeks.get(week, 0)))
        week += timedelta(days=7)
    per_month = []
    month = scope.date_from.replace(day=1)
    while month <= scope.date_to:
        per_month.append((month, months.get(month, 0)))
        month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    labels = dict(PolicyVersion.objects.values_list("id", "label"))
    opt_ins = (
        events.filter(status=ConsentStatus.OPTED_IN)
        .values_list("policy_version_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    opt_ins_by_policy = sorted(
        ((labels.get(pid, "none") if pid else "none"), count) for pid, count in opt_ins
    )
    aggregate = events.aggregate(contacts=Count("contact_id", distinct=True), high=Max("id"))
    return PeriodCounts(
        total=total,
        by_purpose_status=by_purpose_status,
        by_source=by_source,
        per_week=per_week,
        per_month=per_month,
        opt_ins_by_policy=opt_ins_by_policy,
        contacts=aggregate["contacts"],
        max_event_id=aggregate["high"],
    )


@dataclass(frozen=True)
class SuppressionCounts:
    added: list[tuple[str, str, int]]  # (channel, kind label, added in the period)
    lifted: int
    active_at_end: int


def suppression_counts(scope: PeriodScope) -> SuppressionCounts:
    in_period = Suppression.objects.filter(created_at__gte=scope.start, created_at__lt=scope.end)
    kinds = dict(Suppression.Kind.choices)
    added = [
        (channel, kinds.get(kind, kind), count)
        for channel, kind, count in in_period.values_list("channel", "kind")
        .annotate(n=Count("id"))
        .order_by("channel", "kind")
    ]
    lifted = Suppression.objects.filter(lifted_at__gte=scope.start, lifted_at__lt=scope.end).count()
    active = (
        Suppression.objects.filter(created_at__lt=scope.end)
        .filter(Q(lifted_at__isnull=True) | Q(lifted_at__gte=scope.end))
        .count()
    )
    return SuppressionCounts(added, lifted, active)


# -- delivery to Zoho ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryCounts:
    pushes: list[tuple[str, int]]  # (verification label, pushes made in the period)
    discrepancies: list[tuple[str, int, int, int]]  # (kind label, opened, resolved, open at the end)
    alerts: list[tuple[str, int, int]]  # (kind label, raised, acknowledged)


def delivery_counts(scope: PeriodScope) -> DeliveryCounts:
    start, end = scope.start, scope.end
    pushed = dict(
        SyncPush.objects.filter(created_at__gte=start, created_at__lt=end)
        .values_list("verification")
        .annotate(n=Count("id"))
        .order_by()
    )
    pushes = [(label, pushed.get(value, 0)) for value, label in SyncPush.Verification.choices]
    opened = dict(
        Discrepancy.objects.filter(opened_at__gte=start, opened_at__lt=end)
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    resolved = dict(
        Discrepancy.objects.filter(resolved_at__gte=start, resolved_at__lt=end)
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    still_open = dict(
        Discrepancy.objects.filter(opened_at__lt=end)
        .filter(Q(resolved_at__isnull=True) | Q(resolved_at__gte=end))
        .values_list("kind")
        .annotate(n=Count("id"))
        .order_by()
    )
    discrepancies = [
        (label, opened.get(value, 0), resolved.get(value, 0), still_open.get(value, 0))
        for value, label in Discrepancy.Kind.choices
        if opened.get(value) or resolved.get(value) or still_open.get(value)
    ]
    raised = Alert.objects.filter(created_at__gte=start, created_at__lt=end)
    alert_rows = (
        raised.values_list("kind")
        .annotate(n=Count("id"), acked=Count("id", filter=Q(acknowledged_at__isnull=False)))
        .order_by()
    )
    kinds = dict(Alert.Kind.choices)
    alerts = [(kinds.get(kind, kind), count, acked) for kind, count, acked in alert_rows]
    return DeliveryCounts(pushes, discrepancies, alerts)


# -- integrity ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealFacts:
    sequence: int
    hash: str
    created_at: datetime
    last_event_id: int

    def as_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "hash": self.hash,
            "created_at": self.created_at.isoformat(timespec="microseconds"),
            "last_event_id": self.last_event_id,
        }


def _seal_facts(seal: Seal | None) -> SealFacts | None:
    return SealFacts(seal.sequence, seal.hash, seal.created_at, seal.last_event_id) if seal else None


def seal_log_entries(path: Path) -> dict[int, str]:
    """The seal log outside the database (LEDGER_SEAL_LOG): sequence -> hash; unreadable lines are skipped."""
    entries: dict[int, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return entries
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            entries[int(parts[0])] = parts[1]
    return entries


@dataclass(frozen=True)
class Integrity:
    verdict: Verdict | None  # None: the whole ledger was not verified (evidence packs, samples)
    head: SealFacts | None
    head_in_log: bool | None  # None: no seal yet
    log_path: str
    sealed_events: int
    unsealed_events: int
    scope_unsealed: int
    covering: SealFacts | None  # the first seal covering every event in scope (None: not all sealed)


def integrity_check(
    *, events_in_scope: QuerySet[ConsentEvent] | None, max_event_id: int | None, whole_ledger: bool
) -> Integrity:
    """The seal head and how much of the ledger (and of the scope) seals cover; with
    `whole_ledger`, verify_ledger over everything too (the period report: it takes seconds over a
    million events, which an evidence pack's budget has not got; a pack recomputes its own events)."""
    log_path = Path(settings.LEDGER_SEAL_LOG)
    verdict = ledger_verify(seal_log=log_path) if whole_ledger else None
    head = Seal.objects.order_by("-sequence").first()
    facts = _seal_facts(head)
    head_in_log = None if head is None else seal_log_entries(log_path).get(head.sequence) == head.hash
    covered_to = head.last_event_id if head else 0
    sealed = ConsentEvent.objects.filter(id__lte=covered_to).count()
    unsealed = ConsentEvent.objects.filter(id__gt=covered_to).count()
    scope_unsealed = events_in_scope.filter(id__gt=covered_to).count() if events_in_scope is not None else 0
    covering = None
    if max_event_id is not None and scope_unsealed == 0:
        covering = _seal_facts(
            Seal.objects.filter(last_event_id__gte=max_event_id).order_by("sequence").first()
        )
    return Integrity(verdict, facts, head_in_log, str(log_path), sealed, unsealed, scope_unsealed, covering)


def manifest_seal(integrity: Integrity) -> dict[str, Any] | None:
    """The seal the manifest names: the first one covering the whole scope, which later seals do not
    change (so a report made again names it again); while some events in scope are not sealed
    yet, the head at the time and how many are not."""
    if integrity.covering is not None:
        return {"covers_scope": True, **integrity.covering.as_json()}
    if integrity.head is not None:
        return {
            "covers_scope": False,
            "unsealed_events_in_scope": integrity.scope_unsealed,
            **integrity.head.as_json(),
        }
    return None


# -- policy versions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyRow:
    label: str
    effective_at: date
    sha256: str
    url: str
    in_force_during_period: bool


def policies_in_force(scope: PeriodScope) -> list[PolicyRow]:
    policies = list(
        PolicyVersion.objects.filter(effective_at__lte=scope.date_to).order_by("effective_at", "label")
    )
    rows = []
    for index, policy in enumerate(policies):
        following = policies[index + 1].effective_at if index + 1 < len(policies) else None
        overlaps = following is None or following > scope.date_from
        rows.append(PolicyRow(policy.label, policy.effective_at, policy.sha256, policy.url, overlaps))
    return rows


# -- one person's evidence ----------------------------------------------------------------------


@dataclass
class EventEvidence:
    event: ConsentEvent
    hash_recomputed: str
    hash_matches: bool
    chained: bool  # prev_hash is the hash of the event before it in its chain

    @property
    def evidence_json(self) -> str:
        return json.dumps(self.event.shown_evidence, ensure_ascii=False, sort_keys=True)


@dataclass
class PurposeDelivery:
    purpose: Purpose
    crm_fields: list[str]
    pushes: list[dict[str, Any]]  # newest first: when, versions, sent/read-back per field, verification
    more: int


@dataclass
class EvidencePack:
    contact: Contact
    states: list[ConsentState]
    events: list[EventEvidence]
    policies: list[PolicyVersion]
    deliveries: list[PurposeDelivery]
    suppressions: list[Suppression]
    crm_link: CrmLink | None
    all_hashes_match: bool

    @property
    def pushed_anything(self) -> bool:
        return any(d.pushes for d in self.deliveries)


PUSHES_PER_PURPOSE = 10


def evidence_pack(*, contact_id: int) -> EvidencePack:
    contact = Contact.objects.get(pk=contact_id)
    states = list(
        ConsentState.objects.filter(contact=contact, version__gt=0)
        .select_related("purpose", "event__policy_version")
        .order_by("purpose__code")
    )
    events = list(
        ConsentEvent.objects.filter(contact=contact)
        .select_related("purpose", "policy_version", "api_client", "actor_user", "personal")
        .order_by("occurred_at", "id")
    )
    hashed = {
        row[0]: row[1:]
        for row in ConsentEvent.objects.filter(contact=contact).values_list(
            "id", "prev_hash", *chain.EVENT_HASHED_COLUMNS
        )
    }
    chain_heads: dict[tuple[int, int], str] = {}
    by_chain = sorted(events, key=lambda e: (e.purpose_id, e.version))
    chained: dict[int, bool] = {}
    for event in by_chain:
        key = (event.purpose_id, event.version - 1)
        expected = GENESIS_HASH if event.version == 1 else chain_heads.get(key)
        chained[event.id] = event.prev_hash == expected
        chain_heads[(event.purpose_id, event.version)] = event.hash
    evidence = []
    for event in events:
        prev_hash, *values = hashed[event.id]
        recomputed = chain.event_hash(prev_hash, chain.event_values(tuple(values)))
        evidence.append(EventEvidence(event, recomputed, recomputed == event.hash, chained[event.id]))
    policy_ids = {e.policy_version_id for e in events if e.policy_version_id}
    policies = list(PolicyVersion.objects.filter(id__in=policy_ids).order_by("effective_at"))
    mappings: dict[int, list[str]] = defaultdict(list)
    for purpose_id, crm_field in FieldMapping.objects.filter(is_active=True).values_list(
        "purpose_id", "crm_field"
    ):
        mappings[purpose_id].append(crm_field)
    pushes = list(SyncPush.objects.filter(contact=contact).order_by("-created_at", "-id"))
    deliveries = []
    for purpose in Purpose.objects.order_by("code"):
        fields = sorted(mappings.get(purpose.id, []))
        if not fields and not any(e.purpose_id == purpose.id for e in events):
            continue
        rows = []
        for push in pushes:
            if purpose.code not in (push.ledger_versions or {}):
                continue
            rows.append(
                {
                    "created_at": push.created_at,
                    "version": push.ledger_versions.get(purpose.code),
                    "fields": [
                        (f, _field_value(push.sent, f), _field_value(push.readback, f)) for f in fields
                    ],
                    "verification": push.get_verification_display(),
                    "verified_at": push.verified_at,
                    "zoho_id": push.zoho_id,
                }
            )
        deliveries.append(
            PurposeDelivery(
                purpose, fields, rows[:PUSHES_PER_PURPOSE], max(0, len(rows) - PUSHES_PER_PURPOSE)
            )
        )
    return EvidencePack(
        contact=contact,
        states=states,
        events=evidence,
        policies=policies,
        deliveries=deliveries,
        suppressions=list(Suppression.objects.filter(contact=contact).order_by("created_at")),
        crm_link=CrmLink.objects.filter(contact=contact).first(),
        all_hashes_match=all(e.hash_matches and e.chained for e in evidence),
    )


def _field_value(values: dict[str, Any] | None, crm_field: str) -> Any:
    """A CRM field's value in a push or read-back; "A.B" is key B of the object in field A."""
    if not values:
        return None
    if crm_field in values:
        return values[crm_field]
    head, _, key = crm_field.partition(".")
    inner = values.get(head)
    return inner.get(key) if key and isinstance(inner, dict) else None


# -- the auditor's sample -----------------------------------------------------------------------


SAMPLE_METHOD = (
    "The candidates are the ids of every contact with at least one event in scope, in ascending "
    "order. Python's random.Random(seed), seeded with the seed text as printed (random's version 2 "
    "string seeding: SHA-512 of the UTF-8 text), picks the sample with random.sample(candidates, "
    "size); the picked ids are then listed in ascending order. The same seed over the same "
    "candidates always picks the same people."
)


def sample_candidates(period: PeriodScope | None, *, upto: int | None = None) -> list[int]:
    events = scope_events(period, upto=upto) if period else ConsentEvent.objects.filter(id__lte=upto or 0)
    return list(events.order_by("contact_id").values_list("contact_id", flat=True).distinct())


def sample_pick(*, candidates: list[int], size: int, seed: str) -> list[int]:
    rng = random.Random(seed)
    return sorted(rng.sample(candidates, min(size, len(candidates))))


def contact_events(contact_ids: list[int]) -> QuerySet[ConsentEvent]:
    return ConsentEvent.objects.filter(contact_id__in=contact_ids)


def iter_chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for offset in range(0, len(items), size):
        yield items[offset : offset + size]
