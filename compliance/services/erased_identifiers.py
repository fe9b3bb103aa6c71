"""The hashed identifiers an erasure leaves: an erased person's email addresses and phone numbers
as HMACs under the suppression secret (settings.ERASURE_SUPPRESSION_SECRETS, the first makes new
ones, all are checked, so a secret is rotated by putting a new one first). A new contact that one
of them names is held by a suppression "do not contact", its only effect."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError

from compliance.erasure_models import ErasedIdentifier
from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import Contact, Suppression


def suppression_secrets() -> list[bytes]:
    configured = [secret.encode() for secret in settings.ERASURE_SUPPRESSION_SECRETS if secret]
    if configured:
        return configured
    return [
        hmac.new(settings.SECRET_KEY.encode(), b"consent-desk erasure suppression", hashlib.sha256).digest()
    ]


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"key-id:" + secret).hexdigest()[:16]


def digest(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def erased_identifier_digests(kind: str, value: str) -> list[str]:
    """The digests of a normalised identifier under every suppression secret (newest first)."""
    return [digest(secret, kind, value) for secret in suppression_secrets()]


def erased_identifiers_match(*, email: str | None = None, phone: str | None = None) -> bool:
    """Whether an erased person had this email address or phone number (normalised or not)."""
    digests: list[str] = []
    for kind, value, normalise in (
        (ErasedIdentifier.Kind.EMAIL, email, normalise_email),
        (ErasedIdentifier.Kind.PHONE, phone, normalise_phone),
    ):
        if value:
            try:
                normal = normalise(value)
            except ValidationError:
                continue  # an identifier that does not normalise was no one's
            digests += erased_identifier_digests(kind, normal)
    return bool(digests) and ErasedIdentifier.objects.filter(digest__in=digests).exists()


def erased_suppressions_add(contacts: Iterable[Contact], *, source: str) -> int:
    """Hold new contacts that an erased person's email or phone names: a suppression "erased
    before: do not contact" on each. One query for all of them; returns how many were held."""
    wanted: dict[str, list[Contact]] = {}
    secrets = suppression_secrets()
    for contact in contacts:
        for kind, value in (
            (ErasedIdentifier.Kind.EMAIL, contact.email),
            (ErasedIdentifier.Kind.PHONE, contact.phone),
        ):
            if value:
                for secret in secrets:
                    wanted.setdefault(digest(secret, kind, value), []).append(contact)
    if not wanted:
        return 0
    found = set(ErasedIdentifier.objects.filter(digest__in=list(wanted)).values_list("digest", flat=True))
    held: dict[int, Contact] = {}
    for value_digest in found:
        for contact in wanted[value_digest]:
            held[contact.pk] = contact
    Suppression.objects.bulk_create(
        [
            Suppression(
                contact=contact,
                channel=Suppression.ERASED_CHANNEL,
                kind=Suppression.Kind.ERASED,
                source=source,
                detail="An erased person had this address or number: do not contact.",
            )
            for contact in held.values()
        ],
        ignore_conflicts=True,
    )
    return len(held)
