"""The links a sending system puts in its mails (`GET /api/v1/contacts/{id}/links`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.urls import reverse

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
