"""Template context shared by every page: the alert banner for the people who watch the sync."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from sync.selectors import AlertBanner, alert_banner

BANNER_PERMISSION = "compliance.view_dashboards"


def alerts(request: HttpRequest) -> dict[str, Any]:
    """``alert_banner``: unacknowledged alerts (count and newest) for officers and admins, else None.

    Lazy: the one query runs only when a template shows the banner, and only for a
    person who may see it (the permission check reuses the permissions the nav loads).
    """

    def banner() -> AlertBanner | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not user.has_perm(BANNER_PERMISSION):
            return None
        return alert_banner()

    return {"alert_banner": SimpleLazyObject(banner)}
