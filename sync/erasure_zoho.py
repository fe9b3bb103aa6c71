"""The Zoho part of an erasure (docs/erasure.md): a durable job, written with the erasure.

- `erasure_zoho_job_create` (receiver of `contact_erasing`, inside the erasure's transaction):
  writes what Zoho must forget: every CRM record of the contact (its `CrmLinkRecord` rows, Contacts
  and Leads, and ``Contact.zoho_id``) to delete or anonymise as ``ERASURE_ZOHO_ACTION`` says
  (``none``: left as they are), and every (Campaigns list, address) pair to unsubscribe. A crash
  after the commit loses nothing: beat runs what is due.
- `erasure_zoho_job_run`: one run of one job, claimed by a conditional UPDATE (two workers never
  run it at once). Anonymise: one update per module and 100 records, personal fields to neutral
  values and the consent fields to the ledger's projection (every purpose opted out). Delete: one
  delete per module and 100 records, once the contact's last withdrawal is pushed and read back
  (a record deleted first would turn that push into a discrepancy); the deleted records' links go.
  A record Zoho no longer holds, or an address not in a list, is done. What is left waits
  ``SYNC_RETRY_BASE_S * 2**attempts`` (at most `BACKOFF_MAX`); after ``SYNC_MAX_RETRIES`` failed
  runs one alert goes out, and the job goes on until done.
- Once done, no address is left in the row; the calls the job made keep their path and error with
  the person's values masked, like every other call (`sync.masking.calls_mask`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from compliance.models import OutboxEntry
from sync import quota
from sync.alerts import alert_erasure_zoho
from sync.discrepancies import retry_delay
from sync.masking import MASK, calls_mask
from sync.models import CrmLink, CrmLinkRecord, ErasureZohoJob, SyncPush
from sync.projection import project, to_crm_record
from sync.push_campaigns import CAMPAIGNS_NOT_IN_LIST
from sync.zoho import RecordResult, ZohoClient
from sync.zoho.crm import MAX_RECORDS_PER_CALL
from sync.zoho.crm_erasure import crm_delete
from sync.zoho.errors import ZohoAuthError, ZohoError, ZohoRateLimited

logger = logging.getLogger(__name__)

RUN_TASK = "sync.erasure_zoho_run"
# A run holds its job this long (a few calls, each within ZOHO_TIMEOUT_S); a worker that died
# mid-run leaves it to the next beat run after that.
LEASE = timedelta(minutes=10)
# A delete waits this long for the contact's withdrawal to be pushed and read back.
PUSH_WAIT = timedelta(seconds=30)
# The longest wait between two runs of a failing job.
BACKOFF_MAX = timedelta(hours=6)
# What an anonymised record's personal fields hold (Last_Name is mandatory in Zoho).
NEUTRAL: dict[str, Any] = {
    "First_Name": None,
    "Last_Name": MASK,
    "Email": None,
    "Phone": None,
    "Mobile": None,
}


# -- the job, written with the erasure ----------------------------------------------------------


def erasure_zoho_job_create(
    *, contact_id: int, zoho_id: str | None, emails: list[str], **_: Any
) -> ErasureZohoJob:
    """Write the contact's job (inside the erasure's transaction) and queue its run after the commit."""
    action = settings.ERASURE_ZOHO_ACTION
    rows = CrmLinkRecord.objects.filter(contact_id=contact_id).order_by("module", "record_id")
    found = {(r.module, r.record_id): r.consent_id for r in rows}
    if zoho_id:
        found.setdefault(("Contacts", zoho_id), None)
    records = [{"module": module, "record_id": rid} for module, rid in sorted(found)]
    list_keys = [str(key) for key in settings.ZOHO_CAMPAIGNS_LIST_KEYS]
    job = ErasureZohoJob(
        contact_id=contact_id,
        action=action,
        records=records,
        records_left=[]
        if action == ErasureZohoJob.Action.NONE
        else [{**r, "consent_id": found[(r["module"], r["record_id"])]} for r in records],
        list_keys=list_keys,
        campaigns_left=[[key, email] for key in list_keys for email in emails],
        next_attempt_at=timezone.now(),
    )
    if not job.records_left and not job.campaigns_left:
        job.done_at = job.next_attempt_at
    job.save()
    if job.done_at is None:
        transaction.on_commit(lambda: _run_soon(job.pk))
    return job


def _run_soon(job_id: int) -> None:
    """Queue the job's run (by name: the task module imports this one). A broker that is down
    loses nothing: beat runs the job."""
    if not settings.SYNC_PUSH_ON_COMMIT:
        return
    try:
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
            current_app.send_task(RUN_TASK, args=[job_id], retry=False, connection=connection)
    except Exception:
        logger.warning("Could not queue erasure job %s; beat will run it", job_id, exc_info=True)


# -- running it --------------------------------------------------------------------------------


def erasure_zoho_jobs_due(*, now: datetime | None = None, limit: int = 100) -> list[int]:
    now = now or timezone.now()
    due = ErasureZohoJob.objects.filter(done_at__isnull=True, next_attempt_at__lte=now)
    return list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:limit])


def erasure_zoho_job_run(*, job_id: int, zoho: ZohoClient) -> ErasureZohoJob | None:
    """One run of one job; None when it is not due (done, waiting, or another run holds it)."""
    started = timezone.now()
    claimed = ErasureZohoJob.objects.filter(
        pk=job_id, done_at__isnull=True, next_attempt_at__lte=started
    ).update(next_attempt_at=started + LEASE)
    if not claimed:
        return None
    job = ErasureZohoJob.objects.get(pk=job_id)
    emails = sorted({email for _key, email in job.campaigns_left})
    errors: list[str] = []
    refused: ZohoAuthError | None = None
    with quota.urgency(quota.WITHDRAWAL):  # an erasure withdraws: the law's deadline applies
        # CRM and Campaigns each go as far as they can: a failure of one does not hold the other.
        for step in (_crm_forget, _campaigns_forget):
            try:
                step(job, zoho, errors)
            except ZohoError as exc:
                errors.append(str(exc))
                if isinstance(exc, ZohoAuthError) and exc.permanent:
                    refused = exc
    _finish(job, errors, emails, started)
    if refused is not None:
        raise refused  # `ZohoTask` raises the auth alert
    return job


def _crm_wait(job: ErasureZohoJob) -> bool:
    """A delete waits (without counting an attempt) while the contact's withdrawal is on its way."""
    if job.action != ErasureZohoJob.Action.DELETE:
        return False
    waiting = (
        OutboxEntry.objects.filter(contact_id=job.contact_id, processed_at__isnull=True).exists()
        or SyncPush.objects.filter(
            contact_id=job.contact_id, verification=SyncPush.Verification.PENDING
        ).exists()
    )
    if waiting:
        job.last_error = "waiting for the erasure's withdrawal to be pushed and read back"
    return waiting


def _anonymous(job: ErasureZohoJob) -> dict[str, Any]:
    """The anonymised values: neutral personal fields, the ledger's (opted-out) consent fields."""
    values = dict(project([job.contact_id])[job.contact_id].values)
    for name in (settings.ZOHO_FIELD_PREFERENCES_URL, settings.ZOHO_FIELD_APP_USER_ID):
        if name:
            values[name] = None  # the person's own link and identifier
    return {**values, **NEUTRAL}


def _crm_forget(job: ErasureZohoJob, zoho: ZohoClient, errors: list[str]) -> None:
    if not job.records_left or _crm_wait(job):
        return
    by_module: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in job.records_left:
        by_module[record["module"]].append(record)
    values = _anonymous(job) if job.action == ErasureZohoJob.Action.ANONYMISE else {}
    for module, records in by_module.items():
        for start in range(0, len(records), MAX_RECORDS_PER_CALL):
            chunk = records[start : start + MAX_RECORDS_PER_CALL]
            ids = [r["record_id"] for r in chunk]
            if job.action == ErasureZohoJob.Action.DELETE:
                results = crm_delete(zoho.crm, ids, module=module).results
            else:
                sent = [to_crm_record(r["record_id"], values, consent_id=r["consent_id"]) for r in chunk]
                results = zoho.crm.update(sent, module=module, trigger=[]).results
            forgotten = _forgotten(chunk, results, errors)
            _records_done(job, module, forgotten)


def _forgotten(chunk: list[dict[str, Any]], results: list[RecordResult], errors: list[str]) -> set[str]:
    done = set()
    for record, result in zip(chunk, results, strict=True):
        if result.ok or result.gone:
            done.add(record["record_id"])
        else:
            errors.append(f"{record['module']} {record['record_id']}: {result.code} {result.message}")
    return done


def _records_done(job: ErasureZohoJob, module: str, ids: set[str]) -> None:
    """Save the progress; a deleted record's link goes (the reconciliation must not miss it)."""
    job.records_left = [r for r in job.records_left if not (r["module"] == module and r["record_id"] in ids)]
    with transaction.atomic():
        ErasureZohoJob.objects.filter(pk=job.pk).update(records_left=job.records_left)
        if job.action == ErasureZohoJob.Action.DELETE and ids:
            CrmLinkRecord.objects.filter(contact_id=job.contact_id, module=module, record_id__in=ids).delete()
            if not CrmLinkRecord.objects.filter(contact_id=job.contact_id).exists():
                CrmLink.objects.filter(contact_id=job.contact_id).update(
                    state=CrmLink.State.NOT_IN_CRM, candidates=[], checked_at=timezone.now()
                )


def _campaigns_forget(job: ErasureZohoJob, zoho: ZohoClient, errors: list[str]) -> None:
    left: list[list[str]] = []
    pairs = list(job.campaigns_left)
    for index, (list_key, email) in enumerate(pairs):
        try:
            zoho.campaigns.unsubscribe(list_key, email)
        except (ZohoRateLimited, ZohoAuthError):
            job.campaigns_left = left + pairs[index:]  # locked or refused: the rest next time
            raise
        except ZohoError as exc:
            if exc.code != CAMPAIGNS_NOT_IN_LIST:
                errors.append(str(exc))
                left.append([list_key, email])
    job.campaigns_left = left


def _finish(job: ErasureZohoJob, errors: list[str], emails: list[str], started: datetime) -> None:
    """Store the run's outcome: done (no address left), or the next attempt and maybe the alert."""
    now = timezone.now()
    # The calls this run made keep their path and error, without the person's addresses.
    calls_mask(values=emails, since=started)
    text = "; ".join(errors)
    for email in emails:
        text = text.replace(email, MASK)
    with transaction.atomic():
        if not job.records_left and not job.campaigns_left:
            job.done_at, job.last_error, job.next_attempt_at = now, "", now
        elif not errors:  # waiting for the withdrawal's push, not a failure
            job.next_attempt_at = now + PUSH_WAIT
        else:
            job.attempts += 1
            job.last_error = text
            job.next_attempt_at = now + min(retry_delay(job.attempts - 1), BACKOFF_MAX)
        job.save(
            update_fields=[
                "records_left",
                "campaigns_left",
                "attempts",
                "last_error",
                "next_attempt_at",
                "done_at",
            ]
        )
        if job.attempts >= settings.SYNC_MAX_RETRIES and job.done_at is None:
            first = ErasureZohoJob.objects.filter(pk=job.pk, alerted_at__isnull=True).update(alerted_at=now)
            if first:
                job.alerted_at = now
                alert_erasure_zoho(job=job)
    if job.done_at is None:
        logger.warning("Erasure job %s left work for later: %s", job.pk, job.last_error)
