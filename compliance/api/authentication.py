"""`Authorization: Bearer <key>` for API clients. Keys are stored as SHA-256 only.

Each process keeps the API client it read for a key prefix for `CLIENT_CACHE_S` seconds,
so a busy client costs one query per process every 30 s instead of one per request. The
key itself is checked against the stored hash, and the client's expiry against the clock,
on every request. The services that revoke, rotate, expire or change a client also change
the reference generation token in the shared cache (`compliance.services.reference`); every
request reads it (one cache read) and a process that sees it change forgets the clients (and
purposes and policy versions) it kept, so those act at once in every process. Only a client changed in the database by hand (not through
the services) may still be let in for up to `CLIENT_CACHE_S` seconds.
"""

from __future__ import annotations

import hmac
import time
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from compliance.models import ApiClient
from compliance.services import api_client_mark_used, api_key_hash
from compliance.services.reference import reference_fresh

LAST_USED_RESOLUTION = timedelta(minutes=1)
CLIENT_CACHE_S = 30.0


def _active_client(prefix: str) -> ApiClient | None:
    _clients = reference_fresh().clients
    now = time.time()
    cached = _clients.get(prefix)
    if cached is not None and cached[0] > now:
        return cached[1]
    client = ApiClient.objects.filter(
        Q(key_prefix=prefix) | Q(previous_key_prefix=prefix), is_active=True
    ).first()
    if client is None:
        _clients.pop(prefix, None)
    else:
        _clients[prefix] = (now + CLIENT_CACHE_S, client)
    return client


class ApiKeyAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, key = header.partition(" ")
        if keyword != self.keyword:
            return None
        key = key.strip()
        parts = key.split("_")
        if len(parts) < 3 or parts[0] != "cd":
            raise exceptions.AuthenticationFailed("Malformed API key.")
        client = _active_client(parts[1])
        now = timezone.now()
        if client is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        previous = client.key_prefix != parts[1]
        if previous and not client.previous_key_valid(now):
            raise exceptions.AuthenticationFailed("This API key was rotated and its grace period is over.")
        stored = client.previous_key_hash if previous else client.key_hash
        if not hmac.compare_digest(stored, api_key_hash(key)):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        if client.is_expired(now):
            raise exceptions.AuthenticationFailed("This API key has expired.")
        last_used = client.previous_key_last_used_at if previous else client.last_used_at
        if last_used is None or now - last_used > LAST_USED_RESOLUTION:
            api_client_mark_used(client=client, previous_key=previous, at=now)
        return client, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


# drf-spectacular registers extensions in an untyped __init_subclass__.
class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "compliance.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "Key from `manage.py create_api_client`."}
