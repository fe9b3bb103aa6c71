"""Keyed tokens that stand for a person's address in the ledger's hashed, non-personal columns.

An event's idempotency key (and the identity event's request key made from it) is covered by
the chain's hash and can never be removed, so it must not hold an email address, a phone number
or an app user id (docs/erasure.md). Where a key has to name an address, so that the same
unsubscribe seen again is the same event, it names its token instead: HMAC-SHA256, under a key
derived from SECRET_KEY for this purpose alone, of the identifier's kind and normalised value.
The token is the same for the same address on every pull and import, and tells nothing of it
without the secret.

The key is not the erasure's suppression secret (compliance/services/erased_identifiers.py), so
no token in the ledger equals a suppression row's digest.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

PURPOSE = b"consent-desk ledger address token"
TOKEN_HEX = 40  # 160 bits: as the lifecycle's keys keep of a token's hash


def token_secret() -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), PURPOSE, hashlib.sha256).digest()


def address_token(kind: str, value: str) -> str:
    """The token of a normalised identifier (`kind`: "email", "phone" or "app_user_id")."""
    return hmac.new(token_secret(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:TOKEN_HEX]


def email_token(email: str) -> str:
    """The token of a normalised email address (compliance.identifiers.normalise_email)."""
    return address_token("email", email)
