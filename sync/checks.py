"""System checks: the sync's time limits must agree, or work is done twice or waits for hours.

- A push holds its outbox rows for ``SYNC_OUTBOX_LEASE_S`` from its last renewal, which comes
  just before its write; the write may then wait in the quota gate (``ZOHO_QUOTA_MAX_WAIT_S``)
  and for Zoho's answer (``ZOHO_TIMEOUT_S``). A shorter lease lets another worker take the
  rows of a push still alive (it then writes nothing, but the work is repeated).
- With Redis as the broker, a task whose worker died is delivered again after the visibility
  timeout, and a countdown longer than it is delivered twice.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register

# The longest countdown a sync task asks for (the reconciliation's off-peak re-check).
LONGEST_COUNTDOWN_S = 3600


@register()
def sync_time_limits(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    warnings = []
    needed = settings.ZOHO_QUOTA_MAX_WAIT_S + settings.ZOHO_TIMEOUT_S
    if needed >= settings.SYNC_OUTBOX_LEASE_S:
        warnings.append(
            Warning(
                f"SYNC_OUTBOX_LEASE_S ({settings.SYNC_OUTBOX_LEASE_S} s) is not longer than "
                f"ZOHO_QUOTA_MAX_WAIT_S + ZOHO_TIMEOUT_S ({needed:g} s): a push waiting for its "
                "write can lose its outbox rows to another worker.",
                hint="Raise SYNC_OUTBOX_LEASE_S, or lower the quota wait or the timeout.",
                id="sync.W001",
            )
        )
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout")
    if (
        settings.CELERY_BROKER_URL.startswith(("redis", "rediss"))
        and (visibility or 3600) < LONGEST_COUNTDOWN_S
    ):
        warnings.append(
            Warning(
                f"CELERY_VISIBILITY_TIMEOUT_S ({visibility} s) is shorter than the longest countdown "
                f"of the sync's tasks ({LONGEST_COUNTDOWN_S} s): Redis would deliver those twice.",
                hint=f"Set CELERY_VISIBILITY_TIMEOUT_S to at least {LONGEST_COUNTDOWN_S}.",
                id="sync.W002",
            )
        )
    return warnings
