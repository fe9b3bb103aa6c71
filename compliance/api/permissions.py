"""Who may call what. API clients by their rights (`events:write` per source, checked by the
ledger's service; the scopes below); signed-in people by their role's permissions."""

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


class ScopeOrPermission(BasePermission):
    """API clients granted `scope`; signed-in people holding the Django permission `perm`."""

    scope: str
    perm: str

    @property
    def message(self) -> str:
        return f"This needs the '{self.scope}' scope (API clients) or the right to browse history."

    def has_permission(self, request: Request, view: APIView) -> bool:
        principal = request.user
        if isinstance(principal, ApiClient):
            return principal.has_scope(self.scope)
        return bool(principal and principal.is_authenticated and principal.has_perm(self.perm))


class CanReadConsent(ScopeOrPermission):
    """API clients with `contacts:read`, and people allowed to browse history."""

    scope = ApiClient.Scope.CONTACTS_READ
    perm = "compliance.view_history"


class CanReadLinks(ScopeOrPermission):
    """API clients with `links:read` (the sending system), and people allowed to browse history."""

    scope = ApiClient.Scope.LINKS_READ
    perm = "compliance.view_history"


class CanErase(ScopeOrPermission):
    """API clients with `erasure:write`; people allowed to erase contacts (admins)."""

    scope = ApiClient.Scope.ERASURE_WRITE
    perm = "compliance.erase_contacts"

    @property
    def message(self) -> str:
        return "This needs the 'erasure:write' scope (API clients) or the right to erase contacts."
