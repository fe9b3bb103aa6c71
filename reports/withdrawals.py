"""How fast each withdrawal in a period took effect in Zoho.

A withdrawal is an `opted_out` event. It has taken effect when
- CRM: a push carrying exactly its version (SyncPush.ledger_versions) was verified by read-back;
- Campaigns (email purposes, when ZOHO_CAMPAIGNS_LIST_KEYS lists any): the Campaigns pull has seen
  the address unsubscribed in every configured list (a sighting before the withdrawal counts
  from the withdrawal: the address was unsubscribed already).
Measured from when Consent Desk recorded it. The deadline is OPT_OUT_DEADLINE_BUSINESS_DAYS
business days (Monday to Friday, without the public holidays of COMPLIANCE_HOLIDAYS_COUNTRY:
`sync.optout_clock`, which the opt-out clock page uses too) after that.

Withdrawals are read in chunks in id order and each chunk's pushes, links and sightings in
three queries, so a period with a million events runs in bounded memory: the durations are
kept as an array of floats for the median and the 95th percentile.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings

from compliance.models import ConsentStatus, Contact, Purpose
from reports.scopes import PeriodScope
from reports.selectors import scope_events
from sync.models import CampaignsObservation, CrmLink, FieldMapping, SyncPush
from sync.optout_clock import business_days_between, deadline_after

CHUNK = 2000
EMAIL = Purpose.Channel.EMAIL


class Outcome:
    IN_TIME = "in time"
    LATE = "late"
    OVERDUE = "overdue"  # not in effect, deadline passed
    PENDING = "pending"  # not in effect yet, deadline ahead
    SUPERSEDED = "superseded"  # a newer decision was delivered instead
    NOT_IN_CRM = "not in CRM"  # nothing to deliver: no CRM record
    NO_MAPPING = "no CRM field"  # nothing to deliver: the purpose maps to no CRM field

    SLOW = (LATE, OVERDUE)


@dataclass(frozen=True)
class Withdrawal:
    event_id: int
    contact_id: int
    purpose: str
    recorded_at: datetime
    deadline: datetime
    crm_verified_at: datetime | None
    campaigns_at: datetime | None
    effective_at: datetime | None
    outcome: str

    @property
    def hours(self) -> float | None:
        return _hours_since(self.recorded_at, self.effective_at)

    @property
    def crm_hours(self) -> float | None:
        return _hours_since(self.recorded_at, self.crm_verified_at)

    @property
    def campaigns_hours(self) -> float | None:
        return _hours_since(self.recorded_at, self.campaigns_at)

    @property
    def business_days(self) -> float | None:
        return business_days_between(self.recorded_at, self.effective_at) if self.effective_at else None


def _hours_since(start: datetime, end: datetime | None) -> float | None:
    return (end - start).total_seconds() / 3600 if end else None


WITHDRAWAL_COLUMNS = (
    "event_id",
    "contact_id",
    "purpose",
    "recorded_at",
    "deadline",
    "crm_verified_at",
    "campaigns_unsubscribed_at",
    "effective_at",
    "hours_to_effect",
    "business_days_to_effect",
    "outcome",
)


def withdrawal_row(w: Withdrawal) -> list[object]:
    def instant(value: datetime | None) -> str:
        return value.isoformat(timespec="microseconds") if value else ""

    return [
        w.event_id,
        w.contact_id,
        w.purpose,
        instant(w.recorded_at),
        instant(w.deadline),
        instant(w.crm_verified_at),
        instant(w.campaigns_at),
        instant(w.effective_at),
        f"{w.hours:.3f}" if w.hours is not None else "",
        f"{w.business_days:.3f}" if w.business_days is not None else "",
        w.outcome,
    ]


def withdrawals(scope: PeriodScope, *, now: datetime, upto: int | None = None) -> Iterator[Withdrawal]:
    days = settings.OPT_OUT_DEADLINE_BUSINESS_DAYS
    purposes = {p.id: p for p in Purpose.objects.all()}
    mapped = set(
        FieldMapping.objects.filter(
            is_active=True, direction__in=[FieldMapping.Direction.TO_ZOHO, FieldMapping.Direction.BOTH]
        ).values_list("purpose_id", flat=True)
    )
    list_keys = list(settings.ZOHO_CAMPAIGNS_LIST_KEYS)
    rows = (
        scope_events(scope, upto=upto)
        .filter(status=ConsentStatus.OPTED_OUT)
        .order_by("id")
        .values_list("id", "contact_id", "purpose_id", "version", "recorded_at")
        .iterator(chunk_size=CHUNK)
    )
    chunk: list[tuple] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            yield from _chunk(chunk, purposes, mapped, list_keys, days, now)
            chunk = []
    if chunk:
        yield from _chunk(chunk, purposes, mapped, list_keys, days, now)


def _chunk(
    chunk: list[tuple],
    purposes: dict[int, Purpose],
    mapped: set[int],
    list_keys: list[str],
    days: int,
    now: datetime,
) -> Iterator[Withdrawal]:
    contact_ids = {row[1] for row in chunk}
    verified: dict[int, list[tuple[datetime, dict]]] = defaultdict(list)
    for contact_id, versions, verified_at in (
        SyncPush.objects.filter(
            contact_id__in=contact_ids, verification=SyncPush.Verification.VERIFIED, verified_at__isnull=False
        )
        .order_by("verified_at")
        .values_list("contact_id", "ledger_versions", "verified_at")
    ):
        if verified_at is not None:
            verified[contact_id].append((verified_at, versions or {}))
    not_in_crm = set(
        CrmLink.objects.filter(contact_id__in=contact_ids, state=CrmLink.State.NOT_IN_CRM).values_list(
            "contact_id", flat=True
        )
    )
    sightings: dict[int, dict[str, datetime]] = defaultdict(dict)
    if list_keys and any(purposes[row[2]].channel == EMAIL for row in chunk):
        emails = dict(
            Contact.objects.filter(id__in=contact_ids, email__isnull=False).values_list("email", "id")
        )
        for email, list_key, seen_at in CampaignsObservation.objects.filter(
            email__in=list(emails),
            status=CampaignsObservation.Status.UNSUBSCRIBED,
            campaign_key="",
            list_key__in=list_keys,
        ).values_list("email", "list_key", "first_seen_at"):
            sightings[emails[email]][list_key] = seen_at
    for event_id, contact_id, purpose_id, version, recorded_at in chunk:
        purpose = purposes[purpose_id]
        deadline = deadline_after(recorded_at, days)
        crm_at = None
        superseded = False
        for verified_at, versions in verified.get(contact_id, ()):
            carried = versions.get(purpose.code, 0)
            if carried == version:
                crm_at = verified_at
                break
            if carried > version:
                superseded = True
                break
        campaigns_at = None
        needs_campaigns = bool(list_keys) and purpose.channel == EMAIL
        if needs_campaigns:
            seen = sightings.get(contact_id, {})
            if all(key in seen for key in list_keys):
                campaigns_at = max(max(seen[key], recorded_at) for key in list_keys)
        if purpose_id not in mapped and not needs_campaigns:
            outcome, effective = Outcome.NO_MAPPING, None
        elif contact_id in not_in_crm and not needs_campaigns:
            outcome, effective = Outcome.NOT_IN_CRM, None
        elif superseded:
            outcome, effective = Outcome.SUPERSEDED, None
        else:
            legs = []
            if purpose_id in mapped and contact_id not in not_in_crm:
                legs.append(crm_at)
            if needs_campaigns:
                legs.append(campaigns_at)
            effective = max(legs) if legs and all(legs) else None  # type: ignore[type-var]
            if effective is not None:
                outcome = Outcome.IN_TIME if effective <= deadline else Outcome.LATE
            else:
                outcome = Outcome.OVERDUE if now > deadline else Outcome.PENDING
        yield Withdrawal(
            event_id,
            contact_id,
            purpose.code,
            recorded_at,
            deadline,
            crm_at,
            campaigns_at,
            effective,
            outcome,
        )


@dataclass
class WithdrawalStats:
    """Tallies of the withdrawals streamed through `add`, and the slowest ones for the PDF."""

    keep: int
    count: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    hours: array = field(default_factory=lambda: array("d"))
    crm_hours: array = field(default_factory=lambda: array("d"))
    campaigns_hours: array = field(default_factory=lambda: array("d"))
    slow: list[Withdrawal] = field(default_factory=list)
    slow_count: int = 0

    def add(self, w: Withdrawal) -> None:
        self.count += 1
        self.outcomes[w.outcome] = self.outcomes.get(w.outcome, 0) + 1
        for hours, values in (
            (w.hours, self.hours),
            (w.crm_hours, self.crm_hours),
            (w.campaigns_hours, self.campaigns_hours),
        ):
            if hours is not None:
                values.append(hours)
        if w.outcome in Outcome.SLOW:
            self.slow_count += 1
            if len(self.slow) < self.keep:
                self.slow.append(w)

    def summary(self) -> dict[str, float | None]:
        """Median, 95th percentile and maximum from recorded to in effect everywhere."""
        return _summary(self.hours)

    def stages(self) -> list[tuple[str, dict[str, float | None]]]:
        """The same for each leg: recorded to verified in CRM, to unsubscribed in every
        Campaigns list, and to in effect everywhere (the later of the two that apply)."""
        return [
            ("Recorded → verified in Zoho CRM (read-back)", _summary(self.crm_hours)),
            ("Recorded → unsubscribed in every Campaigns list", _summary(self.campaigns_hours)),
            ("Recorded → in effect everywhere", _summary(self.hours)),
        ]


def _summary(hours: array) -> dict[str, float | None]:
    values = sorted(hours)
    if not values:
        return {"median": None, "p95": None, "max": None, "measured": 0}

    def percentile(q: float) -> float:
        # Nearest rank: the smallest value with at least q of all values at or below it.
        rank = max(1, math.ceil(q * len(values)))
        return values[min(len(values), rank) - 1]

    return {
        "median": percentile(0.5),
        "p95": percentile(0.95),
        "max": values[-1],
        "measured": len(values),
    }
