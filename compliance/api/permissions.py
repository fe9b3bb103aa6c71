from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from compliance.models import ApiClient


class IsApiClient(BasePermission):
    """Only systems with an API key write consent through the API."""

    message = "Only API clients (Authorization: Bearer <key>) may record consent."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.user, ApiClient)


class CanReadConsent(BasePermission):
    """API clients, and signed-in people allowed to browse history."""

    message = "You may not read consent records."

    def has_permission(self, request: Request, view: APIView) -> bool:
        principal = request.user
        if isinstance(principal, ApiClient):
            return True
        return bool(
            principal and principal.is_authenticated and principal.has_perm("compliance.view_history")
        )
