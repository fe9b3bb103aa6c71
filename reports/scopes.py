"""What a report covers, and the one place that decides whether a scope may be asked for.

The request form, the three commands and the task all build a scope here, so a reversed,
future or too long date range gets the same message everywhere (a form error, exit status 2).
A scope turns into JSON for the Report row and the manifest, and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from compliance import selectors
from compliance.models import Contact, Purpose, Source


class ScopeError(ValueError):
    """A scope that may not be asked for; `field` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _today() -> date:
    return timezone.now().astimezone(UTC).date()


def period_validate(date_from: date, date_to: date) -> None:
    """A period runs from `date_from` to `date_to`, both included, in UTC."""
    if date_from > date_to:
        raise ScopeError("date_to", f"The period ends ({date_to}) before it starts ({date_from}).")
    today = _today()
    if date_to > today:
        raise ScopeError("date_to", f"The period ends in the future ({date_to}; today is {today} UTC).")
    days = (date_to - date_from).days + 1
    if days > settings.REPORT_MAX_DAYS:
        raise ScopeError(
            "date_from",
            f"The period is {days} days long; a report covers at most {settings.REPORT_MAX_DAYS}.",
        )


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class PeriodScope:
    """Events whose person acted (occurred_at) within the period, optionally of some purposes and sources."""

    date_from: date
    date_to: date
    purposes: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def start(self) -> datetime:
        return _day_start(self.date_from)

    @property
    def end(self) -> datetime:
        """The first instant after the period."""
        return _day_start(self.date_to + timedelta(days=1))

    def as_json(self) -> dict[str, Any]:
        return {
            "from": self.date_from.isoformat(),
            "to": self.date_to.isoformat(),
            "purposes": list(self.purposes),
            "sources": list(self.sources),
        }

    def describe(self) -> str:
        text = f"events that occurred from {self.date_from} to {self.date_to} (UTC, both days included)"
        if self.purposes:
            text += f"; purposes {', '.join(self.purposes)}"
        if self.sources:
            text += f"; sources {', '.join(self.sources)}"
        return text


def period_scope(
    *,
    date_from: date,
    date_to: date,
    purposes: list[str] | tuple[str, ...] = (),
    sources: list[str] | tuple[str, ...] = (),
) -> PeriodScope:
    period_validate(date_from, date_to)
    known = set(Purpose.objects.values_list("code", flat=True))
    unknown = sorted(set(purposes) - known)
    if unknown:
        raise ScopeError(
            "purposes", f"Unknown purpose {', '.join(unknown)}; known: {', '.join(sorted(known))}."
        )
    bad_sources = sorted(set(sources) - set(Source.values))
    if bad_sources:
        raise ScopeError(
            "sources", f"Unknown source {', '.join(bad_sources)}; known: {', '.join(Source.values)}."
        )
    return PeriodScope(date_from, date_to, tuple(sorted(set(purposes))), tuple(sorted(set(sources))))


@dataclass(frozen=True)
class ContactScope:
    """Everything about one person."""

    contact_id: int

    def as_json(self) -> dict[str, Any]:
        return {"contact": self.contact_id}

    def describe(self) -> str:
        return f"every event, state and delivery of contact {self.contact_id}"


def contact_scope(*, email: str = "", contact_id: int | None = None) -> ContactScope:
    """The person named by an email address or a contact id; an unknown one is a ScopeError."""
    from django.core.exceptions import ValidationError

    if contact_id is not None:
        if not Contact.objects.filter(pk=contact_id).exists():
            raise ScopeError("contact", f"No contact has the id {contact_id}.")
        return ContactScope(contact_id)
    if not email.strip():
        raise ScopeError("email", "Give the person's email address or contact id.")
    try:
        found = selectors.contact_find(email=email).values_list("id", flat=True).first()
    except ValidationError as exc:
        raise ScopeError("email", f"{email!r} is not an email address ({'; '.join(exc.messages)}).") from exc
    if found is None:
        raise ScopeError("email", f"No contact has the email address {email.strip()}.")
    return ContactScope(found)


@dataclass(frozen=True)
class SampleScope:
    """`size` people picked at random (reproducibly from `seed`) among those with events in the period."""

    size: int
    seed: str
    period: PeriodScope | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "seed": self.seed,
            "period": self.period.as_json() if self.period else None,
        }

    def describe(self) -> str:
        among = f"people with {self.period.describe()}" if self.period else "every person with an event"
        return f"{self.size} people picked with seed {self.seed!r} among {among}"


def sample_scope(
    *, size: int, seed: str, date_from: date | None = None, date_to: date | None = None
) -> SampleScope:
    if not 1 <= size <= settings.REPORT_SAMPLE_MAX_SIZE:
        raise ScopeError(
            "size", f"A sample holds from 1 to {settings.REPORT_SAMPLE_MAX_SIZE} people, not {size}."
        )
    seed = seed.strip()
    if not seed or len(seed) > 100:
        raise ScopeError("seed", "Give a seed of 1 to 100 characters: the same seed picks the same people.")
    if (date_from is None) != (date_to is None):
        raise ScopeError(
            "date_to" if date_to is None else "date_from", "Give both dates of the period, or neither."
        )
    period = period_scope(date_from=date_from, date_to=date_to) if date_from and date_to else None
    return SampleScope(size, seed, period)


def scope_from_json(kind: str, data: dict[str, Any]) -> PeriodScope | ContactScope | SampleScope:
    """The scope a Report row stores (reports.models.Report.scope), as it was validated when asked."""

    def period(values: dict[str, Any]) -> PeriodScope:
        return PeriodScope(
            date.fromisoformat(values["from"]),
            date.fromisoformat(values["to"]),
            tuple(values.get("purposes", ())),
            tuple(values.get("sources", ())),
        )

    if kind == "period":
        return period(data)
    if kind == "evidence":
        return ContactScope(int(data["contact"]))
    if kind == "sample":
        return SampleScope(
            int(data["size"]), str(data["seed"]), period(data["period"]) if data.get("period") else None
        )
    raise ValueError(f"unknown report kind {kind!r}")
