"""Retention (GDPR Art. 5(1)(e)): a contact's data is kept RETENTION_YEARS (default 7) after the
end of its last consent, a withdrawal or an expiry, then erased as a request would erase it.

Not erased: a contact with a consent still given or pending, one under a legal hold, and one that
a receiver of `retention_holds` holds (the sync: an open discrepancy, which may still need the
person's data). compliance never imports sync, so it asks through that signal.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db.models import Count, Max, Q
from django.dispatch import Signal
from django.utils import timezone

from compliance.erasure_models import ErasureRequest, LegalHold
from compliance.models import ConsentStatus, Contact
from compliance.services.erasure import LegalHoldActive, erasure_request

logger = logging.getLogger(__name__)

# Sent with contact_ids (a list): each receiver returns the ids among them it holds.
retention_holds = Signal()


def retention_cutoff(now: datetime) -> datetime:
    """The moment before which a last consent's end puts a contact past retention."""
    years = settings.RETENTION_YEARS
    try:
        return now.replace(year=now.year - years)
    except ValueError:  # 29 February
        return now.replace(year=now.year - years, day=28)


def retention_due(*, now: datetime | None = None, limit: int = 1000, after: int = 0) -> list[int]:
    """Ids above `after` of the contacts past retention, in id order, but those under a legal hold
    (before the holds of other apps are asked)."""
    cutoff = retention_cutoff(now or timezone.now())
    live = [ConsentStatus.OPTED_IN, ConsentStatus.PENDING]
    held = LegalHold.objects.filter(lifted_at__isnull=True).values("contact_id")
    return list(
        Contact.objects.filter(erased_at__isnull=True, merged_into__isnull=True, pk__gt=after)
        .exclude(pk__in=held)
        .annotate(
            last_end=Max("states__occurred_at"),
            live=Count("states", filter=Q(states__status__in=live)),
        )
        .filter(live=0, last_end__lte=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )


def retention_erase(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Erase up to `limit` contacts past retention, but those held; returns how many were erased.

    The due contacts are read a page at a time in id order, each page asked of the holds, until
    `limit` are erased or none is left: contacts held for good (an open discrepancy) never fill
    every page, so the ones after them are still reached."""
    erased = held_count = 0
    years = settings.RETENTION_YEARS
    after = 0
    while erased < limit:
        due = retention_due(now=now, limit=limit, after=after)
        if not due:
            break
        after = due[-1]
        held: set[int] = set()
        for _receiver, answer in retention_holds.send(sender=Contact, contact_ids=due):
            held.update(int(pk) for pk in (answer or []))
        held_count += len(held)
        free = [pk for pk in due if pk not in held]
        for contact in Contact.objects.filter(pk__in=free).order_by("id"):
            if erased >= limit:
                break
            try:
                result = erasure_request(
                    contact=contact,
                    channel=ErasureRequest.Channel.RETENTION,
                    reason=f"{years} years after the end of the last consent",
                    now=now,
                )
            except LegalHoldActive:  # set since the page was read
                continue
            erased += int(result.created)
    logger.info("Retention: %s contacts erased, %s held", erased, held_count)
    return erased
