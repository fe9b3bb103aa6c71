"""`ZohoTask`: the base class of every task that calls Zoho (``@shared_task(base=ZohoTask)``).

Zoho refusing our credentials for good (a revoked refresh token, a wrong client or
data centre) is not the task's failure to retry: an admin must fix the ZOHO_*
settings. The task raises the auth alert (one open at a time, see
`sync.alerts.alert_auth`) and ends; the periodic tasks try again on their next round.
An auth error that may pass (``permanent=False``) is raised like any other error.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task

from sync.alerts import alert_auth
from sync.zoho import ZohoAuthError

logger = logging.getLogger(__name__)


class ZohoTask(Task):
    """Turns a permanent `ZohoAuthError` into an auth alert and an ``{"auth_error": 1}`` result."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ZohoAuthError as exc:
            if not exc.permanent:
                raise
            logger.error("Zoho refused our credentials in %s: %s", self.name, exc)
            alert_auth(message=f"Zoho refused Consent Desk's credentials: {exc}. Check ZOHO_* settings.")
            return {"auth_error": 1}
