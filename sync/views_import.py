"""The import page: the runs of ``manage.py import_zoho_consent`` with their progress, counts and
problems (`sync.imports_zoho`). Read-only: the import runs from the command line, where an admin
sees its dry run first; the page reloads itself while a run is going."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from sync.import_models import ImportRun
from sync.imports_zoho import run_alive
from sync.views_doctor import DOCTOR_PERMISSION

# The page lists this many runs, newest first, and this many problems of each.
RUNS_SHOWN = 20
PROBLEMS_SHOWN = 50


@login_required
@permission_required(DOCTOR_PERMISSION, raise_exception=True)
@require_GET
def import_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    runs = list(ImportRun.objects.order_by("-started_at")[:RUNS_SHOWN])
    rows = []
    for run in runs:
        state = run.status
        if run.status == ImportRun.Status.RUNNING and not run_alive(run, now):
            state = "stopped"
        rows.append(
            {
                "run": run,
                "state": state,
                "problems": run.problems[:PROBLEMS_SHOWN],
                "more_problems": max(0, len(run.problems) - PROBLEMS_SHOWN),
            }
        )
    response = render(request, "sync/import_list.html", {"rows": rows})
    if any(row["state"] == ImportRun.Status.RUNNING for row in rows):
        response["Refresh"] = "3"
    return response
