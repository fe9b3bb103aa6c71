"""`Authorization: Bearer <key>` for API clients. Keys are stored as SHA-256 only."""

from __future__ import annotations

import hmac
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from compliance.models import ApiClient
from compliance.services import api_key_hash

LAST_USED_RESOLUTION = timedelta(minutes=1)


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
        client = ApiClient.objects.filter(key_prefix=parts[1], is_active=True).first()
        if client is None or not hmac.compare_digest(client.key_hash, api_key_hash(key)):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        if client.last_used_at is None or now - client.last_used_at > LAST_USED_RESOLUTION:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
        return client, key

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "compliance.api.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: object) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "Key from `manage.py create_api_client`."}
