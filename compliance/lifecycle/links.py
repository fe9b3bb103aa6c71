"""The links a sending system puts in its mails (`GET /api/v1/contacts/{id}/links`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from compliance.lifecycle import tokens
from compliance.lifecycle.mail import public_url
from compliance.models import Contact, Purpose


def _ttl() -> timedelta:
    return timedelta(days=settings.LINK_TTL_DAYS)


def unsubscribe_url(*, contact: Contact, purpose: str = tokens.ALL_PURPOSES, campaign: str = "") -> str:
    token = tokens.token_make(
        kind=tokens.Kind.UNSUBSCRIBE, contact=contact, purpose=purpose, ttl=_ttl(), campaign=campaign
    )
    return public_url(reverse("lifecycle:unsubscribe", args=[token]))


def preferences_path(*, contact: Contact, message_id: int | None = None) -> str:
    """The preference centre's path (our own pages link to it relatively)."""
    token = tokens.token_make(
        kind=tokens.Kind.PREFERENCES,
        contact=contact,
        purpose=tokens.ALL_PURPOSES,
        ttl=_ttl(),
        message_id=message_id,
    )
    return reverse("lifecycle:preferences", args=[token])


def preferences_url(*, contact: Contact, message_id: int | None = None) -> str:
    return public_url(preferences_path(contact=contact, message_id=message_id))


# A CRM field's preference link changes once a quarter: the same within one (a push that changes
# nothing else writes nothing), valid for LINK_TTL_DAYS after its quarter ends.
CRM_LINK_PERIOD_S = 91 * 86400


def preferences_url_for_crm(*, contact_id: int, generation: int, now: datetime | None = None) -> str:
    """The preference centre's URL written into a CRM field (a merge tag for Campaigns mails):
    the same token for every push within a period, so the projection stays stable."""
    moment = int((now or timezone.now()).timestamp())
    period_start = moment // CRM_LINK_PERIOD_S * CRM_LINK_PERIOD_S
    period_end = period_start + CRM_LINK_PERIOD_S
    token = tokens.token_make(
        kind=tokens.Kind.PREFERENCES,
        contact=Contact(pk=contact_id),
        purpose=tokens.ALL_PURPOSES,
        ttl=_ttl(),
        generation=generation,
        expires_at=datetime.fromtimestamp(period_end, tz=UTC) + _ttl(),
        signed_at=datetime.fromtimestamp(period_start, tz=UTC),
    )
    return public_url(reverse("lifecycle:preferences", args=[token]))


def contact_links(*, contact: Contact, campaign: str = "") -> dict[str, Any]:
    """An "all email purposes" unsubscribe URL, one per purpose, the preference centre's URL, and
    the RFC 8058 headers for a marketing mail to this contact."""
    everything = unsubscribe_url(contact=contact, campaign=campaign)
    targets = [f"<{everything}>"]
    if settings.LIFECYCLE_UNSUBSCRIBE_MAILTO:
        targets.append(f"<mailto:{settings.LIFECYCLE_UNSUBSCRIBE_MAILTO}?subject=unsubscribe>")
    return {
        "contact_id": contact.pk,
        "unsubscribe_url": everything,
        "unsubscribe_urls": {
            code: unsubscribe_url(contact=contact, purpose=code, campaign=campaign)
            for code in Purpose.objects.order_by("code").values_list("code", flat=True)
        },
        "preferences_url": preferences_url(contact=contact),
        "headers": {
            "List-Unsubscribe": ", ".join(targets),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
