"""Tasks: the Zoho part of erasures (`sync.erasure_zoho`). Thin: ids in, the service does the work.

`erasure_zoho_run` is queued right after an erasure commits; `erasure_zoho_due` (beat, every
minute) runs every job that is due: one whose queued run was lost (a crash, a broker down) or
whose last run left work (the job's own backoff). The retries live in the job row, not in Celery:
a run that fails stores its next attempt, so a message lost with its worker loses nothing. Zoho
refusing our credentials raises the auth alert (`ZohoTask`). `erased_calls_mask` (beat, daily)
masks an erased person's address or number that the Zoho call log still holds (`sync.masking`).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from sync.erasure_zoho import erasure_zoho_job_run, erasure_zoho_jobs_due
from sync.masking import erased_calls_mask as calls_sweep
from sync.tasks.base import ZohoTask
from sync.zoho import ZohoClient


@shared_task(bind=True, base=ZohoTask, name="sync.erasure_zoho_run", acks_late=True)
def erasure_zoho_run(self: Any, job_id: int) -> dict[str, Any]:
    with ZohoClient.from_settings() as zoho:
        job = erasure_zoho_job_run(job_id=job_id, zoho=zoho)
    return {"job": job_id, "ran": job is not None, "done": bool(job and job.done_at)}


@shared_task(bind=True, base=ZohoTask, name="sync.erasure_zoho_due", acks_late=True)
def erasure_zoho_due(self: Any) -> dict[str, int]:
    ran = done = 0
    ids = erasure_zoho_jobs_due()
    if ids:
        with ZohoClient.from_settings() as zoho:
            for job_id in ids:
                job = erasure_zoho_job_run(job_id=job_id, zoho=zoho)
                ran += job is not None
                done += bool(job and job.done_at)
    return {"ran": ran, "done": done}


@shared_task(name="sync.erased_calls_mask")
def erased_calls_mask() -> int:
    return calls_sweep()
