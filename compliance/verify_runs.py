"""The nightly ledger check, recorded: `verify_ledger`'s check, run by beat, with its verdict kept.

`ledger_verify_run()` writes its `VerifyRun` row before the check starts (so a run that never
finishes still shows, started and unfinished) and its verdict after. The check is the command's
own (`compliance.verification.ledger_verify`, with the seal log when there is one): what the
overview shows is what `manage.py verify_ledger` would have said at that moment.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone

from compliance.models import VerifyRun
from compliance.verification import ledger_verify


def ledger_verify_run() -> VerifyRun:
    """Verify the whole ledger and record the verdict; a check that fails to run is recorded too
    (ok unknown, why in `problem`) and its error raised again."""
    run = VerifyRun.objects.create(started_at=timezone.now())
    seal_log = settings.LEDGER_SEAL_LOG if settings.LEDGER_SEAL_LOG.exists() else None
    # In parallel in a Celery (prefork) worker's process too: that process is a daemon, which
    # `multiprocessing` forbids children, but the check forks its workers itself
    # (verification._WorkerGroup).
    try:
        verdict = ledger_verify(seal_log=seal_log)
    except Exception as exc:
        run.finished_at = timezone.now()
        run.problem = f"the check did not finish: {type(exc).__name__}: {exc}"[:2000]
        run.save(update_fields=["finished_at", "problem"])
        raise
    run.finished_at = timezone.now()
    run.ok = verdict.ok
    run.events_checked = verdict.events_checked
    run.chains_checked = verdict.chains_checked
    run.seals_checked = verdict.seals_checked
    run.identity_events_checked = verdict.identity_events_checked
    run.problem = verdict.problem
    run.save()
    return run


def verify_run_latest() -> VerifyRun | None:
    return VerifyRun.objects.order_by("-started_at", "-id").first()
