"""The systems that call the ingest API, their keys and their rights.

A key is `cd_<prefix>_<secret>`; only its prefix (to find the client) and its SHA-256 are
stored. Every change to a client's keys or rights also changes the reference generation in the
shared cache (`compliance.services.reference`), so that every process drops the clients it keeps
in memory on its next request: a revocation acts at once everywhere.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from compliance.models import ApiClient, Source
from compliance.services.errors import ConsentRejected
from compliance.services.reference import reference_changed


def _new_key() -> tuple[str, str]:
    prefix = secrets.token_hex(4)
    return prefix, f"cd_{prefix}_{secrets.token_urlsafe(32)}"


def _checked_rights(sources: Iterable[str], scopes: Iterable[str]) -> tuple[list[str], list[str]]:
    sources, scopes = sorted(set(sources)), sorted(set(scopes))
    unknown = sorted(set(sources) - set(Source.values))
    if unknown:
        raise ConsentRejected("source", f"Unknown source(s): {', '.join(unknown)}.")
    unknown = sorted(set(scopes) - set(ApiClient.Scope.values))
    if unknown:
        known = ", ".join(ApiClient.Scope.values)
        raise ConsentRejected("scope", f"Unknown scope(s): {', '.join(unknown)}; known: {known}.")
    if not sources and not scopes:
        raise ConsentRejected("source", "Give at least one source the client may write, or a scope.")
    return sources, scopes


def api_client_create(
    *,
    name: str,
    sources: Iterable[str],
    scopes: Iterable[str] = (),
    expires_at: datetime | None = None,
) -> tuple[ApiClient, str]:
    """Create an API client; returns it with its key, which is shown once and stored hashed.

    It may write events for `sources` and do what `scopes` grant; reading is a scope, off
    unless given.
    """
    sources, scopes = _checked_rights(sources, scopes)
    prefix, key = _new_key()
    client = ApiClient.objects.create(
        name=name,
        key_prefix=prefix,
        key_hash=api_key_hash(key),
        sources=sources,
        scopes=scopes,
        expires_at=expires_at,
    )
    return client, key


def api_client_update(
    *, client: ApiClient, sources: Iterable[str], scopes: Iterable[str], expires_at: datetime | None
) -> ApiClient:
    """Change what a client may do, and when its keys expire (None: never)."""
    client.sources, client.scopes = _checked_rights(sources, scopes)
    client.expires_at = expires_at
    with transaction.atomic():
        client.save(update_fields=["sources", "scopes", "expires_at"])
        reference_changed()
    return client


def api_client_revoke(*, client: ApiClient) -> ApiClient:
    """Refuse every key of this client from now on, for good."""
    now = timezone.now()
    with transaction.atomic():
        ApiClient.objects.filter(pk=client.pk, is_active=True).update(is_active=False, revoked_at=now)
        reference_changed()
    client.refresh_from_db()
    return client


def api_client_expire(*, client: ApiClient, at: datetime | None = None) -> ApiClient:
    """Let every key of this client expire `at` (now when not given); a revocation that can wait."""
    client.expires_at = at or timezone.now()
    with transaction.atomic():
        client.save(update_fields=["expires_at"])
        reference_changed()
    return client


def api_client_rotate(*, client: ApiClient, grace: timedelta) -> tuple[ApiClient, str]:
    """Give the client a new key; the current one stays valid for `grace` beside it.

    A key still in its grace period from an earlier rotation is dropped: two keys at most.
    Returns the client and its new key, shown once.
    """
    if not client.is_active:
        raise ConsentRejected("client", f"API client {client.name!r} is revoked; make a new one.")
    now = timezone.now()
    prefix, key = _new_key()
    with transaction.atomic():
        client.previous_key_prefix = client.key_prefix if grace > timedelta(0) else None
        client.previous_key_hash = client.key_hash if grace > timedelta(0) else ""
        client.previous_key_expires_at = now + grace if grace > timedelta(0) else None
        client.previous_key_last_used_at = client.last_used_at if grace > timedelta(0) else None
        client.key_prefix, client.key_hash = prefix, api_key_hash(key)
        client.last_used_at = None
        client.rotated_at = now
        # Free the old prefix first: the new previous_key_prefix may be the old key_prefix.
        ApiClient.objects.filter(pk=client.pk).update(previous_key_prefix=None)
        client.save(
            update_fields=[
                "key_prefix",
                "key_hash",
                "last_used_at",
                "rotated_at",
                "previous_key_prefix",
                "previous_key_hash",
                "previous_key_expires_at",
                "previous_key_last_used_at",
            ]
        )
        reference_changed()
    return client, key


def api_client_mark_used(*, client: ApiClient, previous_key: bool, at: datetime) -> None:
    """Record that one of the client's keys was used `at` (the caller keeps writes rare)."""
    if previous_key:
        ApiClient.objects.filter(pk=client.pk).update(previous_key_last_used_at=at)
        client.previous_key_last_used_at = at
    else:
        ApiClient.objects.filter(pk=client.pk).update(last_used_at=at)
        client.last_used_at = at


def api_key_hash(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no guessing to slow down).
    return hashlib.sha256(key.encode()).hexdigest()
