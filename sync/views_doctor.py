"""The doctor page: an admin runs the Zoho setup diagnostics (`sync.diagnostics`) and reads each
failure with its fix. The page shows the last run; running again is a POST (it calls Zoho)."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from sync.diagnostics import WARN, Check, zoho_diagnose
from sync.zoho import ZohoClient

# Only admins change Zoho's setup, so only they run the checks (the FIX permission is theirs alone).
DOCTOR_PERMISSION = "compliance.fix_discrepancies"
LAST_RUN_KEY = "sync:doctor:last-run"
# A probe from the page waits this long between its write and its read-back.
PAGE_PROBE_WAIT_S = 5.0


@login_required
@permission_required(DOCTOR_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def zoho_doctor(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        probe = request.POST.get("probe") == "1" and bool(settings.ZOHO_DIAGNOSTIC_RECORD_ID)
        with ZohoClient.from_settings() as zoho:
            diagnosis = zoho_diagnose(
                zoho=zoho,
                probe_record_id=None if probe else "",
                probe_wait_s=PAGE_PROBE_WAIT_S,
            )
        cache.set(
            LAST_RUN_KEY,
            {
                "ran_at": timezone.now().isoformat(),
                "by": request.user.get_username(),
                "checks": [dataclasses.asdict(c) for c in diagnosis.checks],
            },
            None,
        )
        return redirect("sync:doctor")
    last = cache.get(LAST_RUN_KEY)
    checks = [Check(**c) for c in last["checks"]] if last else []
    ran_at = datetime.fromisoformat(last["ran_at"]) if last else None
    return render(
        request,
        "sync/doctor.html",
        {
            "last": last,
            "ran_at": ran_at,
            "checks": checks,
            "failures": [c for c in checks if c.failed],
            "warnings": [c for c in checks if c.status == WARN],
            "probe_record": settings.ZOHO_DIAGNOSTIC_RECORD_ID,
            "probe_wait_s": PAGE_PROBE_WAIT_S,
        },
    )
