"""Outgoing lifecycle mail: recorded before it is sent, sent through Django's email backend
(the file backend of the demo, a real SMTP server that fails first), retried by Celery."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core import mail as outbox
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from compliance import services
from compliance.lifecycle import mail
from compliance.lifecycle.services import lifecycle_cycle
from compliance.lifecycle.tasks import send_message
from compliance.models import ConsentEvent, ErasureRequest, LifecycleMessage, PolicyVersion
from tests.lifecycle.conftest import confirm_path, free_port, record, smtp_server


class FailingFirst:
    """An SMTP server's handler that refuses the first `failures` messages (451), then takes them."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.failures > 0:
            self.failures -= 1
            return "451 4.3.0 Try again later"
        self.received.append(envelope.content)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(settings: Any) -> Iterator[FailingFirst]:
    handler = FailingFirst(failures=1)
    with smtp_server(settings, handler):
        yield handler


def queued(pending: ConsentEvent) -> LifecycleMessage:
    message = mail.message_queue(kind=LifecycleMessage.Kind.CONFIRMATION, event=pending)
    assert message is not None
    return message


def test_the_confirmation_mail_carries_the_company_purpose_policy_and_link(pending: ConsentEvent) -> None:
    message = queued(pending)
    mail.message_send(message_pk=message.pk)

    (sent,) = outbox.outbox
    assert sent.to == ["ana@example.com"]
    assert sent.extra_headers["Message-ID"] == message.message_id
    body = sent.body
    for text in (
        "Consent Desk demo organisation",
        "Email marketing",
        "version 2026-03",
        "http://testserver/policy/2026-03",
    ):
        assert text in body
    assert "http://testserver/c/" in body
    assert "http://testserver/c/" in sent.alternatives[0].content  # type: ignore[union-attr]
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 1)


def test_the_file_backend_keeps_each_mail_in_a_file(
    pending: ConsentEvent, settings: Any, tmp_path: Path
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")

    message = queued(pending)
    mail.message_send(message_pk=message.pk)

    (written,) = list((tmp_path / "mail").iterdir())
    parsed = message_from_bytes(written.read_bytes())
    assert parsed["Message-ID"] == message.message_id
    assert parsed["To"] == "ana@example.com"
    assert "/c/" in written.read_text()


def _file_backend_mails(
    settings: Any, tmp_path: Path, pending: ConsentEvent
) -> tuple[LifecycleMessage, dict[str, Path]]:
    """Ana's confirmation and Ben's, each sent through the file backend: the files by address."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    anas = queued(pending)
    for message in (anas, queued(record(None, "email_marketing", "pending", email="ben@example.com"))):
        mail.message_send(message_pk=message.pk)
    files = {message_from_bytes(path.read_bytes())["To"]: path for path in (tmp_path / "mail").iterdir()}
    assert sorted(files) == ["ana@example.com", "ben@example.com"]
    return anas, files


def test_the_erasure_deletes_the_file_backends_copies_of_the_persons_mail(
    pending: ConsentEvent, settings: Any, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    anas, files = _file_backend_mails(settings, tmp_path, pending)

    with django_capture_on_commit_callbacks(execute=True):
        services.erasure_request(contact=anas.contact, channel=ErasureRequest.Channel.API)

    assert list((tmp_path / "mail").iterdir()) == [files["ben@example.com"]]  # Ben's mail stays
    assert LifecycleMessage.objects.filter(pk=anas.pk, to_email="").exists()  # the record stays


def test_the_daily_job_deletes_the_mail_files_an_erasure_missed(
    pending: ConsentEvent, settings: Any, tmp_path: Path
) -> None:
    from compliance.tasks import retention_erase

    anas, files = _file_backend_mails(settings, tmp_path, pending)
    # Erased, but the process died before what follows the commit ran.
    services.erasure_request(contact=anas.contact, channel=ErasureRequest.Channel.API)
    assert files["ana@example.com"].exists()

    assert retention_erase() == 0  # nobody is past retention; the sweep runs all the same
    assert list((tmp_path / "mail").iterdir()) == [files["ben@example.com"]]


def test_a_file_holding_several_mails_goes_when_it_holds_the_persons(tmp_path: Path, settings: Any) -> None:
    from compliance.erasure_files import _mail_files_delete

    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path)
    with outbox.get_connection() as connection:  # one connection: Django writes one file for both
        for to in ("ana@example.com", "ben@example.com"):
            outbox.EmailMessage(
                "Hello", "Body", to=[to], headers={"Message-ID": f"<{to}>"}, connection=connection
            ).send()
    (written,) = list(tmp_path.iterdir())

    assert _mail_files_delete(["<nobody@example.com>"]) == 0 and written.exists()
    assert _mail_files_delete(["<ben@example.com>"]) == 1 and not written.exists()
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert _mail_files_delete(["<ben@example.com>"]) == 0  # no file backend, no copies to look for


def test_a_send_that_the_smtp_server_refuses_first_is_retried_by_the_task(
    pending: ConsentEvent, smtp: FailingFirst
) -> None:
    message = queued(pending)

    send_message.apply(args=[message.pk])  # eager: the retry runs at once, its countdown aside

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    (received,) = smtp.received
    assert message_from_bytes(received)["Message-ID"] == message.message_id


def test_lifecycle_now_sends_queued_mail_and_retries_after_the_backoff(
    pending: ConsentEvent, smtp: FailingFirst, capsys: Any
) -> None:
    message = queued(pending)
    before = ConsentEvent.objects.count()

    call_command("lifecycle_now")
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("queued", 1)
    assert "451" in message.last_error
    assert "send failures: 1" in capsys.readouterr().out

    call_command("lifecycle_now")  # the backoff has not passed: no attempt
    message.refresh_from_db()
    assert message.attempts == 1

    with time_machine.travel(timezone.now() + timedelta(minutes=2), tick=False):
        call_command("lifecycle_now")
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == ("sent", 2, "")
    assert len(smtp.received) == 1
    # a mail that could not be delivered is not a withdrawal: the ledger did not move
    assert ConsentEvent.objects.count() == before


def test_a_mail_that_never_goes_through_ends_failed_and_records_no_withdrawal(
    pending: ConsentEvent, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2
    settings.LIFECYCLE_MAIL_MAX_ATTEMPTS = 2
    message = queued(pending)

    send_message.apply(args=[message.pk])

    message.refresh_from_db()
    assert (message.status, message.attempts) == ("failed", 2)
    assert "ConnectionRefusedError" in message.last_error
    assert list(ConsentEvent.objects.filter(contact=pending.contact).values_list("status", flat=True)) == [
        "pending"
    ]


def test_one_reminder_goes_out_after_doi_reminder_hours(pending: ConsentEvent) -> None:
    message = queued(pending)
    mail.message_send(message_pk=message.pk)

    lifecycle_cycle(send_grace_s=0)
    assert not LifecycleMessage.objects.filter(kind="reminder").exists()

    for hours in (49, 60):
        with time_machine.travel(timezone.now() + timedelta(hours=hours), tick=False):
            lifecycle_cycle(send_grace_s=0)

    (reminder,) = LifecycleMessage.objects.filter(kind="reminder")
    assert reminder.status == "sent" and reminder.event_id == pending.pk
    assert reminder.subject.startswith("Reminder:")
    assert len(outbox.outbox) == 2


def test_no_reminder_once_confirmed(pending: ConsentEvent, client: Any) -> None:
    message = queued(pending)
    mail.message_send(message_pk=message.pk)
    message.refresh_from_db()
    client.post(confirm_path(message))

    with time_machine.travel(timezone.now() + timedelta(hours=49), tick=False):
        lifecycle_cycle(send_grace_s=0)

    assert not LifecycleMessage.objects.filter(kind="reminder").exists()


# -- the ingest API queues the confirmation, unless the client runs its own ----------------------


def pending_body(email: str, **overrides: Any) -> dict[str, Any]:
    return {
        "contact": {"email": email},
        "purpose": "email_marketing",
        "status": "pending",
        "source": "web_portal",
        "policy_version": "2026-03",
        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
        "idempotency_key": f"pending-{email}",
        **overrides,
    }


def test_recording_pending_through_the_api_queues_a_confirmation(
    api: APIClient, policy: PolicyVersion, django_capture_on_commit_callbacks: Any
) -> None:
    response = api.post("/api/v1/consent-events", pending_body("cy@example.com"), format="json")
    assert response.status_code == 201

    (message,) = LifecycleMessage.objects.all()
    assert (message.kind, message.to_email, message.event_id) == (
        "confirmation",
        "cy@example.com",
        response.json()["id"],
    )
    # a replay of the request queues nothing more
    api.post("/api/v1/consent-events", pending_body("cy@example.com"), format="json")
    assert LifecycleMessage.objects.count() == 1


def test_a_client_running_its_own_double_opt_in_says_send_confirmation_false(
    api: APIClient, policy: PolicyVersion
) -> None:
    single = api.post(
        "/api/v1/consent-events", pending_body("dee@example.com", send_confirmation=False), format="json"
    )
    batch = api.post(
        "/api/v1/consent-events/batch",
        {
            "events": [
                pending_body("eve@example.com", send_confirmation=False),
                pending_body("fay@example.com"),
            ]
        },
        format="json",
    )

    assert single.status_code == 201 and batch.json()["created"] == 2
    assert list(LifecycleMessage.objects.values_list("to_email", flat=True)) == ["fay@example.com"]


def test_an_opt_in_or_a_purpose_without_double_opt_in_queues_no_mail(
    api: APIClient, policy: PolicyVersion
) -> None:
    sms = pending_body("gil@example.com", purpose="sms_marketing", status="opted_in", idempotency_key="k1")
    confirmed = pending_body(
        "gil@example.com",
        status="opted_in",
        idempotency_key="k2",
        evidence={"double_opt_in_confirmed_at": "2026-03-02T10:00:00Z"},
    )

    for body in (sms, confirmed):
        assert api.post("/api/v1/consent-events", body, format="json").status_code == 201

    assert not LifecycleMessage.objects.exists()
