"""`Authorization: Bearer <key>` for API clients. Keys are stored as SHA-256 only.

Each process keeps the API client it read for a key prefix for `CLIENT_CACHE_S` seconds,
so a busy client costs one query per process every 30 s instead of one per request. The
key itself is checked against the stored hash on every request. The price: a client
deactivated in the database (`is_active=False`, the only revocation there is) is still
let in for up to `CLIENT_CACHE_S` seconds by a process that had read it; a revocation
that must act at once also calls `api_client_cache_clear()` in that process (or restarts
the workers).
"""

from __future__ import annotations

import hmac
import time
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from compliance.models import ApiClient
from compliance.services import api_key_hash

LAST_USED_RESOLUTION = timedelta(minutes=1)
CLIENT_CACHE_S = 30.0

# key prefix -> (read again after this time.time(), the active client)
_clients: dict[str, tuple[float, ApiClient]] = {}


def api_client_cache_clear() -> None:
    """Forget every API client this process has read (after revoking a key, for instance)."""
    _clients.clear()


def _active_client(prefix: str) -> ApiClient | None:
    now = time.time()
    cached = _clients.get(prefix)
    if cached is not None and cached[0] > now:
        return cached[1]
    client = ApiClient.objects.filter(key_prefix=prefix, is_active=True).first()
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
        if client is None or not hmac.compare_digest(client.key_hash, api_key_hash(key)):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
            client.last_used_at = now
        return client, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "compliance.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "Key from `manage.py create_api_client`."}
