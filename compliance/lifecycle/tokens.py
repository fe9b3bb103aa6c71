"""The tokens of the public links: signed, unguessable, no personal data in clear.

A token is `django.core.signing` output (HMAC-SHA256) over a small JSON object: the kind of link
(confirm, unsubscribe, preferences), the contact's id, a purpose code (or "*" for all email
purposes), the contact's link generation, an expiry, and optionally the campaign and the message
that carried it. It is signed with the first of LINK_SIGNING_KEYS and accepted under any of them,
so a key is rotated by putting the new one first and dropping the old one once its links lapse.
Revoking a contact's links moves its generation on (`links_revoke`); every older token is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from compliance.models import Contact, LinkGeneration

SALT = "consent-desk.lifecycle.link"
# Longest token read at all: anything longer is not ours (and not worth a signature check).
MAX_TOKEN_LENGTH = 400
ALL_PURPOSES = "*"


class Kind:
    CONFIRM = "c"
    UNSUBSCRIBE = "u"
    PREFERENCES = "p"


class TokenInvalid(Exception):
    """A link that records nothing. `reason`: tampered, expired, revoked or unknown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LinkToken:
    kind: str
    contact_id: int
    purpose: str
    generation: int
    expires_at: datetime
    campaign: str = ""
    message_id: int | None = None
    # The contact, read with its link generation when the token was checked.
    contact: Contact | None = field(default=None, compare=False, repr=False)

    @property
    def all_purposes(self) -> bool:
        return self.purpose == ALL_PURPOSES


def signing_keys() -> list[str]:
    return list(settings.LINK_SIGNING_KEYS) or [settings.SECRET_KEY]


def token_hash(token: str) -> str:
    """What the ledger's evidence keeps of a token: never the token itself, which is a bearer secret."""
    return hashlib.sha256(token.encode()).hexdigest()


def link_generation(contact_id: int) -> int:
    current = (
        LinkGeneration.objects.filter(contact_id=contact_id).values_list("generation", flat=True).first()
    )
    return current or 0


def link_generations(contact_ids: Iterable[int]) -> dict[int, int]:
    """Many contacts' link generations in one query (0 for a contact never revoked)."""
    ids = list(contact_ids)
    found = dict(LinkGeneration.objects.filter(contact_id__in=ids).values_list("contact_id", "generation"))
    return {contact_id: found.get(contact_id, 0) for contact_id in ids}


def token_make(
    *,
    kind: str,
    contact: Contact,
    purpose: str,
    ttl: timedelta,
    campaign: str = "",
    message_id: int | None = None,
    now: datetime | None = None,
    generation: int | None = None,
    expires_at: datetime | None = None,
    signed_at: datetime | None = None,
) -> str:
    """A signed token. ``generation``: the contact's link generation when the caller read it
    already (`link_generations`); ``expires_at``: a fixed expiry instead of now + ``ttl``;
    ``signed_at``: a fixed signing time, for a token that must come out the same each time."""
    expires = expires_at or (now or timezone.now()) + ttl
    payload: dict[str, Any] = {
        "k": kind,
        "c": contact.pk,
        "p": purpose,
        "g": link_generation(contact.pk) if generation is None else generation,
        "e": int(expires.timestamp()),
    }
    if campaign:
        payload["cp"] = campaign
    if message_id is not None:
        payload["m"] = message_id
    if signed_at is not None:
        # A token the same whenever it is made with the same content (the CRM field's link).
        signer: signing.TimestampSigner = _FixedTimeSigner(signed_at, key=signing_keys()[0], salt=SALT)
        return signer.sign_object(payload, compress=True)
    return signing.dumps(payload, key=signing_keys()[0], salt=SALT, compress=True)


class _FixedTimeSigner(signing.TimestampSigner):
    """django.core.signing's signer with a given signing time instead of now."""

    def __init__(self, at: datetime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._at = at

    def timestamp(self) -> str:
        return signing.b62_encode(int(self._at.timestamp()))


def token_unsigned(token: str, *, kind: str, now: datetime | None = None) -> LinkToken:
    """The token's content when its signature, shape, kind and expiry hold (no database read),
    or TokenInvalid: tampered, unknown (another kind) or expired."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise TokenInvalid("tampered")
    keys: list[str | bytes] = list(signing_keys())
    try:
        payload = signing.loads(token, key=keys[0], fallback_keys=keys[1:], salt=SALT)
    except (signing.BadSignature, ValueError):
        raise TokenInvalid("tampered") from None
    try:
        link = LinkToken(
            kind=str(payload["k"]),
            contact_id=int(payload["c"]),
            purpose=str(payload["p"]),
            generation=int(payload["g"]),
            expires_at=datetime.fromtimestamp(int(payload["e"]), tz=timezone.get_current_timezone()),
            campaign=str(payload.get("cp", "")),
            message_id=int(payload["m"]) if "m" in payload else None,
        )
    except (KeyError, TypeError, ValueError):
        raise TokenInvalid("tampered") from None
    if link.kind != kind:
        raise TokenInvalid("unknown")
    if link.expires_at <= (now or timezone.now()):
        raise TokenInvalid("expired")
    return link


def token_read(token: str, *, kind: str, now: datetime | None = None) -> LinkToken:
    """The token's content, or TokenInvalid: a bad signature or shape (tampered), a link of
    another kind or for a contact that is gone (unknown), past its expiry (expired), made before
    the contact's links were revoked (revoked)."""
    link = token_unsigned(token, kind=kind, now=now)
    # The contact and its link generation in one query (a click is one request among many).
    generation = LinkGeneration.objects.filter(contact_id=OuterRef("pk")).values("generation")[:1]
    contact = (
        Contact.objects.filter(pk=link.contact_id, merged_into__isnull=True)
        .annotate(link_generation=Coalesce(Subquery(generation), 0))
        .first()
    )
    if contact is None:
        raise TokenInvalid("unknown")
    if link.generation != contact.link_generation:
        raise TokenInvalid("revoked")
    return replace(link, contact=contact)


def links_revoke(*, contact: Contact, now: datetime | None = None) -> int:
    """Refuse every link made for this contact so far; returns the new generation."""
    now = now or timezone.now()
    with transaction.atomic():
        row, created = LinkGeneration.objects.select_for_update().get_or_create(
            contact=contact, defaults={"generation": 1, "revoked_at": now}
        )
        if not created:
            LinkGeneration.objects.filter(pk=row.pk).update(generation=F("generation") + 1, revoked_at=now)
            row.refresh_from_db()
    return row.generation
