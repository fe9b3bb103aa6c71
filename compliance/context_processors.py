"""Template context shared by every page: which roles the signed-in person holds, and whether
this is the embedded demo (its sent-mail page is in the nav then)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from compliance.roles import roles_of


def roles(request: HttpRequest) -> dict[str, Any]:
    user = getattr(request, "user", None)
    return {
        "user_roles": roles_of(user) if user is not None else frozenset(),
        "demo_mode": settings.DEMO_MODE,
    }
