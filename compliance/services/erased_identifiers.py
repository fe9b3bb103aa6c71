"""The hashed identifiers an erasure leaves: an erased person's email addresses and phone numbers
as HMACs under the suppression secret (settings.ERASURE_SUPPRESSION_SECRETS, the first makes new
ones, all are checked, so a secret is rotated by putting a new one first). A new contact that one
of them names is held by a suppression "do not contact", its only effect.

Without ERASURE_SUPPRESSION_SECRETS the secret is derived from SECRET_KEY. The ones derived from
SECRET_KEY and from each of SECRET_KEY_FALLBACKS are always checked too, so neither rotating
SECRET_KEY the documented way nor setting ERASURE_SUPPRESSION_SECRETS later lets an erased person
back in unnoticed; a digest no checked secret made is reported (`orphaned_key_ids`, the database
check compliance.E011)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count

from compliance.erasure_models import ErasedIdentifier
from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import Contact, Suppression


def suppression_secrets(*, fallbacks: bool = True) -> list[bytes]:
    """The secrets checked, the one that makes new digests first: those configured, then the ones
    derived from SECRET_KEY and (unless not `fallbacks`) from SECRET_KEY_FALLBACKS."""
    configured = [secret.encode() for secret in settings.ERASURE_SUPPRESSION_SECRETS if secret]
    keys = [settings.SECRET_KEY, *(settings.SECRET_KEY_FALLBACKS if fallbacks else ())]
    derived = [
        hmac.new(key.encode(), b"consent-desk erasure suppression", hashlib.sha256).digest()
        for key in keys
        if key
    ]
    return list(dict.fromkeys([*configured, *derived]))


def orphaned_key_ids(*, fallbacks: bool = True) -> dict[str, int]:
    """The erased identifiers hashed under a secret not checked (by key id, how many): a re-import
    of one of those addresses or numbers would not be held. Not `fallbacks`: those that only a
    secret derived from SECRET_KEY_FALLBACKS still matches."""
    checked = {key_id(secret) for secret in suppression_secrets(fallbacks=fallbacks)}
    counts = (
        ErasedIdentifier.objects.exclude(key_id__in=checked)
        .values_list("key_id")
        .annotate(count=Count("id"))
        .order_by("key_id")
    )
    return dict(counts)


def key_id(secret: bytes) -> str:
    return hashlib.sha256(b"key-id:" + secret).hexdigest()[:16]


def digest(secret: bytes, kind: str, value: str) -> str:
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


def erased_identifier_digests(kind: str, value: str, secrets: list[bytes] | None = None) -> list[str]:
    """The digests of a normalised identifier under every suppression secret (newest first), or
    under `secrets` (suppression_secrets(), taken once by a caller that asks for many)."""
    return [digest(secret, kind, value) for secret in secrets or suppression_secrets()]


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
