"""Consent tallies per day: written here, by beat, never by a page.

`consent_day_tally()` (task ``workbench.consent_day_tally``, every 5 minutes) adds the events
recorded since its mark to `ConsentDay`, one row per day (occurred_at, UTC), purpose, source and
status change, moves each event's contact from its previous status to its new one in
`ConsentCount` (when the event became the current decision: one that occurred before the
current one is recorded but changes nothing) (consents per purpose and status: `ConsentState`'s counts, as each chain's head
is its newest event), and moves the mark (`ConsentDayMark`) to the last event it counted. It reads the
events by id, from the mark up to the safe high-water mark (every event at or below it has
committed, `compliance.services.seals`), so no event is counted twice or missed, whatever the
order writers commit in. The write path is not touched: a consent write takes no extra lock.

`consent_days_live()` counts the events past the mark the same way, for the pages: beat a few
minutes late costs them a few thousand rows read by primary key, and the figures are the same.

`OptInCount` is kept the same way: each event that became the current decision moves its
contact's opt-in from the group of the previous event (purpose, the version it cited, whether it
was imported without the person's own evidence) to its own (`optin_moves`), so the policies
pages and the re-permission view read a few rows, not millions of current opt-ins.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import TruncDate

from compliance.models import (
    ConsentCount,
    ConsentDay,
    ConsentDayMark,
    ConsentEvent,
    ConsentStatus,
    OptInCount,
)
from compliance.services.seals import committed_high_water_mark

# Events counted per transaction: a first run over a large ledger moves in steps that each commit.
CHUNK_EVENTS = 500_000
GROUP = ("day", "purpose_id", "source", "previous_status", "status", "moved")


def _occurred_later() -> QuerySet[ConsentEvent]:
    """An earlier event of the outer event's chain that occurred after it (then the outer event
    did not become the current decision, as `advance_state` decides it)."""
    return ConsentEvent.objects.filter(
        contact_id=OuterRef("contact_id"),
        purpose_id=OuterRef("purpose_id"),
        version__lt=OuterRef("version"),
        occurred_at__gt=OuterRef("occurred_at"),
    )


def _tally(events: QuerySet[ConsentEvent]) -> list[dict[str, Any]]:
    """Events per group. `moved`: the event became its chain's current decision, as
    `advance_state` decides it: no earlier event of the chain occurred after it. Read through
    the chain's (contact, purpose, version) index."""
    occurred_later = _occurred_later()
    return list(
        events.annotate(day=TruncDate("occurred_at", tzinfo=UTC), moved=~Exists(occurred_later))
        .values(*GROUP)
        .annotate(events=Count("id"))
        .order_by()
    )


# An opt-in group: (purpose id, policy version id or 0, legacy).
OptInGroup = tuple[int, int, bool]


def _legacy() -> ExpressionWrapper[Q]:
    """Whether an event's evidence says it was imported without the person's own (``legacy: true``)."""
    return ExpressionWrapper(Q(evidence__legacy=True), output_field=BooleanField())


def optin_moves(events: QuerySet[ConsentEvent]) -> dict[OptInGroup, int]:
    """How these events change the current opt-ins per group: {(purpose, policy or 0, legacy): net}.

    An event that became its chain's current decision adds one to its own group when it is an
    opt-in, and takes one from the group of the event before it when that was an opt-in (as
    `ConsentCount` moves statuses; the previous event read through the chain index). One query.
    """
    previous = ConsentEvent.objects.filter(
        contact_id=OuterRef("contact_id"),
        purpose_id=OuterRef("purpose_id"),
        version=OuterRef("version") - 1,
    )
    opted_in = ConsentStatus.OPTED_IN
    rows = (
        events.filter(Q(status=opted_in) | Q(previous_status=opted_in))
        .annotate(
            moved=~Exists(_occurred_later()),
            previous_policy=Subquery(previous.values("policy_version_id")[:1]),
            previous_legacy=Subquery(previous.annotate(is_legacy=_legacy()).values("is_legacy")[:1]),
            cited=F("policy_version_id"),
            is_legacy=_legacy(),
        )
        .filter(moved=True)
        .values(
            "purpose_id",
            "status",
            "previous_status",
            "cited",
            "is_legacy",
            "previous_policy",
            "previous_legacy",
        )
        .annotate(events=Count("id"))
        .order_by()
    )
    net: dict[OptInGroup, int] = {}
    for row in rows:
        if row["status"] == opted_in:
            group = (row["purpose_id"], row["cited"] or 0, bool(row["is_legacy"]))
            net[group] = net.get(group, 0) + row["events"]
        if row["previous_status"] == opted_in:
            group = (row["purpose_id"], row["previous_policy"] or 0, bool(row["previous_legacy"]))
            net[group] = net.get(group, 0) - row["events"]
    return {group: n for group, n in net.items() if n}


def optin_counts() -> dict[OptInGroup, int]:
    """The current opt-ins per group: the counts beat keeps plus the moves of the events past its
    mark (a few rows and a few thousand events read by primary key, whatever the ledger's size);
    the same figures as `ConsentState`'s opt-ins."""
    counts: dict[OptInGroup, int] = {
        (purpose_id, policy, legacy): n
        for purpose_id, policy, legacy, n in OptInCount.objects.values_list(
            "purpose_id", "policy", "legacy", "opted_in"
        )
    }
    for group, n in optin_moves(ConsentEvent.objects.filter(id__gt=consent_day_mark())).items():
        counts[group] = counts.get(group, 0) + n
    return {group: n for group, n in counts.items() if n}


def consent_day_mark() -> int:
    """The id of the last event `ConsentDay` counts (0 before the first run)."""
    return ConsentDayMark.objects.values_list("last_event_id", flat=True).first() or 0


def consent_day_stamp() -> tuple[int, datetime | None]:
    """What changes whenever `ConsentDay` does (the tally moves the mark in the same transaction
    as it adds): the mark's event id and time (`compliance.tally_memo`'s stamp)."""
    mark = ConsentDayMark.objects.values_list("last_event_id", "updated_at").first()
    return mark if mark is not None else (0, None)


def consent_days_live(*, since: date | None = None) -> list[dict[str, Any]]:
    """The tallies of the events past the mark (day, purpose_id, source, previous_status, status,
    events), from `since` on: what `ConsentDay` does not hold yet."""
    events = ConsentEvent.objects.filter(id__gt=consent_day_mark())
    if since is not None:
        events = events.filter(Q(occurred_at__date__gte=since))
    return _tally(events)


def consent_day_tally(*, chunk: int = CHUNK_EVENTS) -> int:
    """Add the events recorded since the mark to `ConsentDay`; how many events were counted."""
    high = committed_high_water_mark()
    counted = 0
    while True:
        with transaction.atomic():
            # One run at a time: a second waits here, then starts from the first one's mark.
            mark, _ = ConsentDayMark.objects.select_for_update().get_or_create(pk=1)
            start = mark.last_event_id
            if start >= high:
                return counted
            end = min(high, start + chunk)
            chunk_events = ConsentEvent.objects.filter(id__gt=start, id__lte=end)
            rows = _tally(chunk_events)
            _add(rows)
            _add_optin_moves(optin_moves(chunk_events))
            counted += sum(row["events"] for row in rows)
            mark.last_event_id = end
            mark.save(update_fields=["last_event_id", "updated_at"])


def _add(rows: list[dict[str, Any]]) -> None:
    """Add these counts to the stored ones (an insert, or an addition where the group exists)."""
    if not rows:
        return
    table = ConsentDay._meta.db_table
    columns = ", ".join(GROUP)
    sql = (
        f"INSERT INTO {table} ({columns}, events) VALUES (%s, %s, %s, %s, %s, %s, %s) "  # noqa: S608
        f"ON CONFLICT ({columns}) DO UPDATE SET events = {table}.events + EXCLUDED.events"
    )
    moved: dict[tuple[int, str], int] = {}
    for row in rows:
        if not row["moved"]:
            continue
        key = (row["purpose_id"], row["status"])
        moved[key] = moved.get(key, 0) + row["events"]
        if row["previous_status"]:
            key = (row["purpose_id"], row["previous_status"])
            moved[key] = moved.get(key, 0) - row["events"]
    counts = ConsentCount._meta.db_table
    count_sql = (
        f"INSERT INTO {counts} (purpose_id, status, contacts) VALUES (%s, %s, %s) "  # noqa: S608
        f"ON CONFLICT (purpose_id, status) DO UPDATE SET contacts = {counts}.contacts + EXCLUDED.contacts"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [[row[name] for name in GROUP] + [row["events"]] for row in rows])
        cursor.executemany(count_sql, [[p, s, n] for (p, s), n in sorted(moved.items()) if n])


def _add_optin_moves(moves: dict[OptInGroup, int]) -> None:
    """Add these net moves to the stored opt-in counts (an insert, or an addition)."""
    if not moves:
        return
    table = OptInCount._meta.db_table
    sql = (
        f"INSERT INTO {table} (purpose_id, policy, legacy, opted_in) VALUES (%s, %s, %s, %s) "  # noqa: S608
        f"ON CONFLICT (purpose_id, policy, legacy) DO UPDATE SET opted_in = {table}.opted_in + EXCLUDED.opted_in"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, [[*group, n] for group, n in sorted(moves.items())])
