"""The opt-out clock: how long each withdrawal takes to be in effect in Zoho, against its deadline.

A withdrawal is an event less permissive than the one before it in its chain (``opted_in`` or
``pending``, then ``opted_out`` or ``expired``). It is in effect everywhere when
- CRM: a read-back verified a push carrying its version or a later one (`SyncPush.ledger_versions`),
  unless no active mapping carries the purpose to CRM or the contact is not in CRM;
- Campaigns (email purposes of a contact with an address, when ``ZOHO_CAMPAIGNS_LIST_KEYS`` lists
  any): the address was unsubscribed from every configured list, by the push's "write to both" or
  as the Campaigns pull saw it (a sighting older than the withdrawal counts from the withdrawal:
  the address was unsubscribed already).
A newer opt-in of the same chain before that supersedes it: the clock stops, and it counts nowhere.

Its deadline is ``OPT_OUT_DEADLINE_BUSINESS_DAYS`` business days after it was recorded: Mondays to
Fridays that are not public holidays of ``COMPLIANCE_HOLIDAYS_COUNTRY`` (the `holidays` package).

Each withdrawal has a `WithdrawalClock` row, written by `withdrawal_clocks_open` (beat, and the
Campaigns hook, from a cursor over new events) and completed as its legs happen:
`withdrawal_clocks_verified` (the verify step) and `withdrawal_clocks_unsubscribed` (the push's
Campaigns unsubscribes). `withdrawal_clocks_settle` re-reads the evidence of open clocks (beat), so
a leg a hook missed is still found. Everything works on sets of clocks, a few queries per chunk;
the page reads only open clocks (few), and the median and p95 time to effect over the window's
completed ones as the last run computed them (`time_to_effect_store`, kept with the cursor).
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta

import holidays
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone

from compliance.models import ConsentEvent, ConsentStatus, Contact, Purpose
from compliance.services.seals import committed_high_water_mark
from sync.models import (
    OPEN_CLOCK,
    Alert,
    CampaignsObservation,
    CrmLink,
    FieldMapping,
    SyncPush,
    WithdrawalClock,
    WithdrawalClockMark,
)

WITHDRAWN = (ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED)
PERMISSIVE = (ConsentStatus.OPTED_IN, ConsentStatus.PENDING)
# Events read per step of the cursor (by primary key), and open clocks settled per chunk.
SCAN_IDS = 20_000
CHUNK = 1000
# The first run starts the clocks of the withdrawals recorded in this many days (the backfill).
BACKFILL_DAYS = 90
MARK = 1  # the cursor's one row
# The page's median and p95: withdrawals that took effect in this many days.
WINDOW_DAYS = 90
# The page shows the clock run's figures (beat: each minute) while they are this recent; older
# (beat stopped), it computes its own.
FIGURES_FRESH = timedelta(minutes=5)


# -- business days -----------------------------------------------------------------------------


@functools.cache
def _holidays(country: str) -> holidays.HolidayBase | None:
    if not country:
        return None
    try:
        return holidays.country_holidays(country)
    except NotImplementedError as exc:
        raise ImproperlyConfigured(
            f"COMPLIANCE_HOLIDAYS_COUNTRY={country!r} is not a country the holidays package knows."
        ) from exc


def is_business_day(day: date, *, country: str | None = None) -> bool:
    """Monday to Friday and not a public holiday of `country` (default: the setting)."""
    return _is_business_day(day, settings.COMPLIANCE_HOLIDAYS_COUNTRY if country is None else country)


@functools.lru_cache(maxsize=8192)
def _is_business_day(day: date, country: str) -> bool:
    # Kept per day and country: a page's ages and deadlines ask about the same few weeks of days
    # again and again, and a holiday look-up converts its argument each time (the opt-out
    # clock's CSV of 1,000 open withdrawals spent most of its time here).
    calendar = _holidays(country)
    return day.weekday() < 5 and (calendar is None or day not in calendar)


def deadline_after(moment: datetime, business_days: int, *, country: str | None = None) -> datetime:
    """`business_days` business days after `moment`, at the same local time of day."""
    day = timezone.localtime(moment)
    left = business_days
    while left > 0:
        day += timedelta(days=1)
        if is_business_day(day.date(), country=country):
            left -= 1
    return day


def business_days_between(start: datetime, end: datetime, *, country: str | None = None) -> float:
    """The business time from `start` to `end`, in days: weekends and holidays do not count."""
    total = 0.0
    moment = timezone.localtime(start)
    end = timezone.localtime(end)
    while moment < end:
        next_midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        step_end = min(next_midnight, end)
        if is_business_day(moment.date(), country=country):
            total += (step_end - moment).total_seconds() / 86400
        moment = step_end
    return total


# -- starting clocks ---------------------------------------------------------------------------


def _mark_start(now: datetime) -> int:
    """Where a first run starts: just before the oldest event of the backfill window (once, at the
    first run: it reads the window's range of compliance_event_recent)."""
    first = ConsentEvent.objects.filter(recorded_at__gte=now - timedelta(days=BACKFILL_DAYS)).aggregate(
        first=Min("id")
    )["first"]
    if first is not None:
        return int(first) - 1
    newest = ConsentEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return int(newest or 0)


def withdrawal_clocks_open(*, now: datetime | None = None, max_steps: int | None = None) -> int:
    """Start the clock of every withdrawal recorded since the last run; returns how many started.

    Reads new events by primary key from the cursor (`WithdrawalClockMark`) up to the ledger's
    safe high-water mark (every event at or below it has committed, whatever the order writers
    commit in: none is skipped), `SCAN_IDS` at a time, each step in a transaction holding the
    cursor's row (two callers take turns). A new clock is settled at once against the evidence
    already there (a push verified before the clock started).
    """
    now = now or timezone.now()
    newest = committed_high_water_mark()
    if not WithdrawalClockMark.objects.filter(pk=MARK).exists():
        try:
            with transaction.atomic():
                WithdrawalClockMark.objects.create(pk=MARK, last_event_id=_mark_start(now))
        except IntegrityError:
            pass  # another caller made it first
    started = 0
    steps = 0
    while max_steps is None or steps < max_steps:
        steps += 1
        with transaction.atomic():
            mark = WithdrawalClockMark.objects.select_for_update().get(pk=MARK)
            if mark.last_event_id >= newest:
                break
            upto = min(mark.last_event_id + SCAN_IDS, newest)
            clocks = _clocks_start(
                ConsentEvent.objects.filter(id__gt=mark.last_event_id, id__lte=upto), now=now
            )
            started += len(clocks)
            for start in range(0, len(clocks), CHUNK):
                _settle(clocks[start : start + CHUNK], now=now)
            mark.last_event_id = upto
            mark.save(update_fields=["last_event_id", "updated_at"])
    return started


def _clocks_start(events: QuerySet[ConsentEvent], *, now: datetime) -> list[WithdrawalClock]:
    """Start the clocks of the withdrawals among `events` (those started already are kept) and
    return the open ones."""
    rows = list(
        events.filter(status__in=WITHDRAWN, previous_status__in=PERMISSIVE)
        .order_by("id")
        .values_list("id", "contact_id", "purpose_id", "version", "recorded_at")
    )
    if not rows:
        return []
    purposes = {p.pk: p for p in Purpose.objects.all()}
    mapped = _mapped_purposes()
    list_keys = list(settings.ZOHO_CAMPAIGNS_LIST_KEYS)
    with_email = (
        set(
            Contact.objects.filter(id__in={r[1] for r in rows}, email__isnull=False).values_list(
                "id", flat=True
            )
        )
        if list_keys
        else set()
    )
    days = settings.OPT_OUT_DEADLINE_BUSINESS_DAYS
    alert_days = max(0, days - settings.OPT_OUT_ALERT_BUSINESS_DAYS)
    clocks = [
        WithdrawalClock(
            event_id=event_id,
            contact_id=contact_id,
            purpose_id=purpose_id,
            version=version,
            recorded_at=recorded_at,
            started_at=now,
            deadline_at=deadline_after(recorded_at, days),
            alert_at=deadline_after(recorded_at, alert_days),
            crm_required=purpose_id in mapped,
            lists_required=list_keys
            if purposes[purpose_id].channel == Purpose.Channel.EMAIL and contact_id in with_email
            else [],
        )
        for event_id, contact_id, purpose_id, version, recorded_at in rows
    ]
    WithdrawalClock.objects.bulk_create(clocks, ignore_conflicts=True)
    # Re-read: ignore_conflicts leaves no primary keys, and a row may have been there already.
    return list(WithdrawalClock.objects.filter(OPEN_CLOCK, event_id__in=[r[0] for r in rows]))


def _mapped_purposes() -> set[int]:
    return set(
        FieldMapping.objects.filter(
            is_active=True, direction__in=[FieldMapping.Direction.TO_ZOHO, FieldMapping.Direction.BOTH]
        ).values_list("purpose_id", flat=True)
    )


# -- settling: the evidence of open clocks -----------------------------------------------------


def _settle(clocks: list[WithdrawalClock], *, now: datetime) -> int:
    """Find each open clock's legs in the evidence (verified pushes, Campaigns sightings, newer
    opt-ins, CRM links), complete or supersede it, and save the changed ones in one statement.
    Returns how many took effect."""
    clocks = [c for c in clocks if c.effective_at is None and c.superseded_at is None]
    if not clocks:
        return 0
    contact_ids = {c.contact_id for c in clocks}
    since = min(c.recorded_at for c in clocks)
    codes = dict(Purpose.objects.values_list("id", "code"))
    reopened: dict[tuple[int, int], list[tuple[int, datetime]]] = defaultdict(list)
    for contact_id, purpose_id, version, recorded_at in ConsentEvent.objects.filter(
        contact_id__in=contact_ids, status__in=PERMISSIVE, recorded_at__gte=since
    ).values_list("contact_id", "purpose_id", "version", "recorded_at"):
        reopened[(contact_id, purpose_id)].append((version, recorded_at))
    verified: dict[int, list[SyncPush]] = defaultdict(list)
    for push in SyncPush.objects.filter(
        contact_id__in=contact_ids,
        verification=SyncPush.Verification.VERIFIED,
        verified_at__gte=since,
    ).order_by("verified_at", "id"):
        verified[push.contact_id].append(push)
    not_in_crm = set(
        CrmLink.objects.filter(contact_id__in=contact_ids, state=CrmLink.State.NOT_IN_CRM).values_list(
            "contact_id", flat=True
        )
    )
    sightings: dict[int, dict[str, datetime]] = defaultdict(dict)
    if any(c.lists_required for c in clocks):
        emails = dict(
            Contact.objects.filter(
                id__in={c.contact_id for c in clocks if c.lists_required}, email__isnull=False
            ).values_list("email", "id")
        )
        for email, list_key, seen_at in CampaignsObservation.objects.filter(
            email__in=list(emails),
            status=CampaignsObservation.Status.UNSUBSCRIBED,
            campaign_key="",
        ).values_list("email", "list_key", "first_seen_at"):
            sightings[emails[email]][list_key] = seen_at
    changed: list[WithdrawalClock] = []
    effective = 0
    for clock in clocks:
        before = _state(clock)
        newer_opt_ins = sorted(
            (version, at)
            for version, at in reopened.get((clock.contact_id, clock.purpose_id), ())
            if version > clock.version
        )
        # A push counts when it carries this version or a later one short of the next opt-in.
        ceiling = newer_opt_ins[0][0] if newer_opt_ins else None
        if clock.crm_required and clock.contact_id in not_in_crm:
            clock.crm_required = False
        if clock.crm_required and clock.crm_verified_at is None:
            code = codes[clock.purpose_id]
            for push in verified.get(clock.contact_id, ()):
                carried = (push.ledger_versions or {}).get(code, 0)
                if carried >= clock.version and (ceiling is None or carried < ceiling):
                    clock.crm_verified_at = push.verified_at
                    clock.crm_push_id = push.pk
                    break
        for list_key in clock.lists_required:
            seen = sightings.get(clock.contact_id, {}).get(list_key)
            if list_key not in clock.lists_unsubscribed and seen is not None:
                clock.lists_unsubscribed[list_key] = max(seen, clock.recorded_at).isoformat()
        if _complete(clock):
            clock.effective_at = max(
                [clock.recorded_at]
                + ([clock.crm_verified_at] if clock.crm_required and clock.crm_verified_at else [])
                + [datetime.fromisoformat(at) for at in clock.lists_unsubscribed.values()]
            )
            clock.business_days_to_effect = business_days_between(clock.recorded_at, clock.effective_at)
            effective += 1
        elif newer_opt_ins:
            clock.superseded_at = newer_opt_ins[0][1]
        if _state(clock) != before:
            changed.append(clock)
    if changed:
        WithdrawalClock.objects.bulk_update(
            changed,
            [
                "crm_required",
                "crm_verified_at",
                "crm_push",
                "lists_unsubscribed",
                "effective_at",
                "business_days_to_effect",
                "superseded_at",
            ],
        )
    return effective


def _state(clock: WithdrawalClock) -> tuple[object, ...]:
    return (
        clock.crm_required,
        clock.crm_verified_at,
        tuple(sorted(clock.lists_unsubscribed.items())),
        clock.effective_at,
        clock.superseded_at,
    )


def _complete(clock: WithdrawalClock) -> bool:
    crm_done = not clock.crm_required or clock.crm_verified_at is not None
    return crm_done and all(key in clock.lists_unsubscribed for key in clock.lists_required)


def withdrawal_clocks_settle(*, now: datetime | None = None) -> int:
    """Settle every open clock against the evidence (beat); returns how many took effect."""
    now = now or timezone.now()
    effective = 0
    after = 0
    while True:
        clocks = list(WithdrawalClock.objects.filter(OPEN_CLOCK, id__gt=after).order_by("id")[:CHUNK])
        if not clocks:
            return effective
        with transaction.atomic():
            effective += _settle(clocks, now=now)
        after = clocks[-1].pk


# -- the hooks ---------------------------------------------------------------------------------


def withdrawal_clocks_verified(*, pushes: Iterable[SyncPush]) -> int:
    """The verify step's hook: these pushes were just verified; stop their contacts' CRM clocks."""
    contact_ids = {p.contact_id for p in pushes}
    if not contact_ids:
        return 0
    clocks = list(WithdrawalClock.objects.filter(OPEN_CLOCK, contact_id__in=contact_ids))
    return _settle(clocks, now=timezone.now())


def withdrawal_clocks_unsubscribed(*, done: Iterable[tuple[str, str]], at: datetime | None = None) -> int:
    """The push's hook: these (email, list key) were unsubscribed (or were not in the list) at `at`.

    The push runs seconds after a withdrawal is recorded, before beat may have started its clock:
    the clocks of these contacts' withdrawals past the cursor are started here (read through the
    chain index; the cursor finds them started), without the cursor's table lock.
    """
    done = list(done)
    if not done:
        return 0
    at = at or timezone.now()
    lists_by_email: dict[str, set[str]] = defaultdict(set)
    for email, list_key in done:
        lists_by_email[email].add(list_key)
    emails: dict[int, str] = {
        contact_id: email
        for contact_id, email in Contact.objects.filter(email__in=list(lists_by_email)).values_list(
            "id", "email"
        )
        if email
    }
    mark = WithdrawalClockMark.objects.filter(pk=MARK).values_list("last_event_id", flat=True).first()
    events = ConsentEvent.objects.filter(contact_id__in=list(emails))
    if mark is not None:
        events = events.filter(id__gt=mark)
    else:  # before the cursor's first run: the window its backfill will read
        events = events.filter(recorded_at__gte=at - timedelta(days=BACKFILL_DAYS))
    _clocks_start(events, now=at)
    with transaction.atomic():
        clocks = list(
            WithdrawalClock.objects.select_for_update().filter(OPEN_CLOCK, contact_id__in=list(emails))
        )
        for clock in clocks:
            for list_key in lists_by_email[emails[clock.contact_id]]:
                if list_key in clock.lists_required and list_key not in clock.lists_unsubscribed:
                    clock.lists_unsubscribed[list_key] = max(at, clock.recorded_at).isoformat()
        WithdrawalClock.objects.bulk_update(clocks, ["lists_unsubscribed"])
        return _settle(clocks, now=at)


# -- reading: the page, its export and the alerts ----------------------------------------------


def withdrawal_clocks_for_events(event_ids: Iterable[int]) -> dict[int, WithdrawalClock]:
    """{event id: its clock} for these events (those that are withdrawals with a clock): one query
    through the event's unique index, for callers that walk events in chunks (the PDF report)."""
    return {clock.event_id: clock for clock in WithdrawalClock.objects.filter(event_id__in=list(event_ids))}


def clock_missing(clock: WithdrawalClock) -> tuple[str, ...]:
    """What the withdrawal still waits for: "CRM verify" and each list not unsubscribed."""
    missing = []
    if clock.crm_required and clock.crm_verified_at is None:
        missing.append("CRM verify")
    missing += [f"list {key}" for key in clock.lists_required if key not in clock.lists_unsubscribed]
    return tuple(missing)


def clock_state(clock: WithdrawalClock, *, now: datetime) -> str:
    """ "overdue" past the deadline, "due soon" past the alert time, else "on time"."""
    if now >= clock.deadline_at:
        return "overdue"
    if now >= clock.alert_at:
        return "due soon"
    return "on time"


def clock_age(clock: WithdrawalClock, *, now: datetime) -> float:
    """Business days since the withdrawal was recorded."""
    return business_days_between(clock.recorded_at, now)


def withdrawal_clocks_pending() -> QuerySet[WithdrawalClock]:
    """Withdrawals not yet in effect everywhere, oldest first (read off sync_wclock_open)."""
    return (
        WithdrawalClock.objects.filter(OPEN_CLOCK)
        .select_related("purpose", "contact")
        .order_by("recorded_at", "id")
    )


def withdrawal_clocks_pending_counts(*, now: datetime) -> dict[str, int]:
    """How many withdrawals are not in effect yet, and how many of them are past their deadline."""
    return WithdrawalClock.objects.filter(OPEN_CLOCK).aggregate(
        open=Count("id"), overdue=Count("id", filter=Q(deadline_at__lte=now))
    )


@dataclass(frozen=True)
class TimeToEffect:
    """Recorded to in effect everywhere, over the withdrawals that took effect in a window ending
    at `as_of`."""

    window_days: int
    count: int
    median_business_days: float | None
    p95_business_days: float | None
    median_hours: float | None
    p95_hours: float | None
    late: int
    as_of: datetime


def time_to_effect_store(*, now: datetime | None = None) -> TimeToEffect:
    """Compute the figures and keep them with the clock's cursor (the clock run, each minute):
    a percentile over a window of hundreds of thousands of clocks is a sort the page need not
    pay on every view (135 ms at 300,000 clocks)."""
    figures = time_to_effect(now=now)
    stored = {name: value for name, value in asdict(figures).items() if name != "as_of"}
    WithdrawalClockMark.objects.filter(pk=MARK).update(effect_figures=stored, effect_figures_at=figures.as_of)
    return figures


def time_to_effect_recent(*, now: datetime | None = None) -> TimeToEffect:
    """The clock run's figures when they are at most `FIGURES_FRESH` old, else computed now."""
    now = now or timezone.now()
    stored = (
        WithdrawalClockMark.objects.filter(
            pk=MARK,
            effect_figures__isnull=False,
            effect_figures_at__gt=now - FIGURES_FRESH,
            effect_figures_at__lte=now,
        )
        .values_list("effect_figures", "effect_figures_at")
        .first()
    )
    if stored is not None:
        figures, at = stored
        if isinstance(figures, dict) and at is not None and figures.get("window_days") == WINDOW_DAYS:
            return TimeToEffect(**figures, as_of=at)
    return time_to_effect(now=now)


def time_to_effect(*, now: datetime | None = None, window_days: int = WINDOW_DAYS) -> TimeToEffect:
    """Median and 95th percentile (nearest rank), computed by PostgreSQL from the window's rows
    (sync_withdrawalclock_effective holds every column it reads)."""
    now = now or timezone.now()
    since = now - timedelta(days=window_days)
    if connection.vendor != "postgresql":
        return _time_to_effect_in_python(now=now, since=since, window_days=window_days)
    table = WithdrawalClock._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT count(*),
                   percentile_disc(0.5) WITHIN GROUP (ORDER BY business_days_to_effect),
                   percentile_disc(0.95) WITHIN GROUP (ORDER BY business_days_to_effect),
                   percentile_disc(0.5) WITHIN GROUP (ORDER BY effective_at - recorded_at),
                   percentile_disc(0.95) WITHIN GROUP (ORDER BY effective_at - recorded_at),
                   count(*) FILTER (WHERE business_days_to_effect > %s)
            FROM {table}
            WHERE effective_at IS NOT NULL AND effective_at > %s AND effective_at <= %s
            """,  # noqa: S608 - the table name is ours, the values are parameters
            [settings.OPT_OUT_DEADLINE_BUSINESS_DAYS, since, now],
        )
        count, median_bd, p95_bd, median_span, p95_span, late = cursor.fetchone()

    def hours(span: timedelta | None) -> float | None:
        return None if span is None else span.total_seconds() / 3600

    return TimeToEffect(
        window_days=window_days,
        count=int(count),
        median_business_days=median_bd,
        p95_business_days=p95_bd,
        median_hours=hours(median_span),
        p95_hours=hours(p95_span),
        late=int(late or 0),
        as_of=now,
    )


def _time_to_effect_in_python(*, now: datetime, since: datetime, window_days: int) -> TimeToEffect:
    """`time_to_effect` where the database has no percentile_disc (SQLite: the embedded demo)."""
    rows = list(
        WithdrawalClock.objects.filter(
            effective_at__isnull=False, effective_at__gt=since, effective_at__lte=now
        )
        .values_list("business_days_to_effect", "recorded_at", "effective_at")
        .iterator()
    )
    days = [d for d, _, _ in rows if d is not None]
    hours = [(effective - recorded).total_seconds() / 3600 for _, recorded, effective in rows if effective]
    return TimeToEffect(
        window_days=window_days,
        count=len(rows),
        median_business_days=nearest_rank(days, 0.5),
        p95_business_days=nearest_rank(days, 0.95),
        median_hours=nearest_rank(hours, 0.5),
        p95_hours=nearest_rank(hours, 0.95),
        late=sum(1 for d in days if d > settings.OPT_OUT_DEADLINE_BUSINESS_DAYS),
        as_of=now,
    )


def nearest_rank(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile (what `time_to_effect` asks PostgreSQL for), for callers with
    their own values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered), max(1, math.ceil(q * len(ordered)))) - 1]


def withdrawal_clocks_alert_due(*, now: datetime) -> QuerySet[WithdrawalClock]:
    """Open clocks whose alert time has come and that have no deadline alert yet.

    Not those whose deadline had passed when their clock started (the first run's backfill of
    old withdrawals): the page lists them as overdue, but an alert each would be news of nothing.
    """
    alerted = Alert.objects.filter(kind=Alert.Kind.OPT_OUT_DEADLINE, withdrawal__isnull=False).values(
        "withdrawal_id"
    )
    return (
        WithdrawalClock.objects.filter(OPEN_CLOCK, alert_at__lte=now, deadline_at__gt=F("started_at"))
        .exclude(id__in=alerted)
        .select_related("purpose", "contact")
        .order_by("alert_at", "id")
    )
