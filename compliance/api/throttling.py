from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.views import APIView

from compliance.models import ApiClient


class ApiClientRateThrottle(SimpleRateThrottle):
    """One budget per API client (or signed-in user); API_THROTTLE_RATE sets it."""

    scope = "api_client"

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        principal = request.user
        if isinstance(principal, ApiClient):
            ident = f"client-{principal.pk}"
        elif principal is not None and getattr(principal, "is_authenticated", False):
            ident = f"user-{principal.pk}"
        else:
            ident = self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
