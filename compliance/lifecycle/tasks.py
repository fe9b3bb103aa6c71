"""The lifecycle's Celery tasks: thin, by id, the work in `mail` and `services`."""

from __future__ import annotations

from celery import shared_task
from celery.app.task import Task

from compliance.lifecycle import mail, repermission, services


@shared_task(bind=True, name=mail.SEND_TASK, ignore_result=True, max_retries=None)  # type: ignore[untyped-decorator]
def send_message(self: Task, message_pk: int) -> None:
    """Send one recorded message; a failure is retried with a doubling backoff until
    LIFECYCLE_MAIL_MAX_ATTEMPTS attempts are spent (the row then says failed)."""
    try:
        mail.message_send(message_pk=message_pk)
    except mail.SendFailed as exc:
        if exc.final:
            return
        attempts = self.request.retries + 1
        raise self.retry(countdown=mail.retry_delay(attempts), exc=exc) from exc


@shared_task(name="lifecycle.cycle", ignore_result=True)  # type: ignore[untyped-decorator]
def cycle() -> None:
    """Beat's round of the lifecycle jobs (reminders, mails whose send never ran)."""
    services.lifecycle_cycle()


@shared_task(  # type: ignore[untyped-decorator]
    bind=True,
    name=repermission.RUN_TASK,
    ignore_result=True,
    autoretry_for=(Exception,),
    retry_backoff=30,
    max_retries=8,
)
def repermission_run(self: Task, run_pk: int) -> None:
    """An admin's re-permission run, in the background (progress on its page). A failure (a
    transient Zoho error in the Campaigns action) is retried: the run resumes where it stopped.
    The last attempt's failure ends the run as failed, saying why, instead of leaving it
    "running" for good."""
    try:
        repermission.repermission_run_execute(run_pk=run_pk)
    except Exception as exc:
        if self.request.retries >= self.max_retries:
            repermission.repermission_run_stopped(run_pk=run_pk, attempts=self.request.retries + 1, error=exc)
        raise
