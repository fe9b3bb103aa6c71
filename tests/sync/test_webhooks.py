"""API clients' webhooks (sync.webhooks): told when their changes are verified in Zoho or fail,
signed with HMAC-SHA256 over the body, retried with backoff, every attempt recorded.

The receiver is a real HTTP server on loopback (a thread running http.server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.utils import timezone

from compliance import services
from compliance.models import ApiClient
from sync import webhooks
from sync.models import Discrepancy, SyncPush, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.tasks.webhooks import webhook_deliver_task
from sync.verify import discrepancies_retry_due, pushes_verify_due

pytestmark = pytest.mark.django_db


class Receiver:
    """A webhook receiver: records each request; answers the codes in ``answers`` in turn, then 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"try later")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/consent"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def app_client(receiver: Receiver) -> tuple[ApiClient, WebhookEndpoint]:
    client, _ = services.api_client_create(name="mobile-app", sources=["mobile_app"])
    endpoint = WebhookEndpoint.objects.create(api_client=client, url=receiver.url)
    return client, endpoint


@pytest.fixture
def queued(monkeypatch: Any) -> list[int]:
    sent: list[int] = []
    monkeypatch.setattr(webhooks, "_enqueue", sent.append)
    return sent


def record(client: ApiClient, email: str, zoho_id: str, purpose: str = "sms_marketing") -> Any:
    decision = services.ConsentDecision(
        purpose=purpose,
        status="opted_in",
        source="mobile_app",
        occurred_at=timezone.now() - timedelta(minutes=1),
        idempotency_key=f"hook-{email}-{purpose}",
        policy_version="2026-03",
    )
    return services.consent_ingest(
        identity=services.ContactIdentity(email=email, zoho_id=zoho_id), decision=decision, api_client=client
    ).event


def push_and_verify(zoho: Any, capture: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)
    with capture(execute=True):
        pushes_verify_due(zoho=zoho, ignore_delay=True)


def test_a_verified_change_is_posted_signed_to_the_client_s_webhook(
    ledger: Any,
    crm: Any,
    zoho: Any,
    engine_settings: Any,
    receiver: Receiver,
    app_client: Any,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client, endpoint = app_client
    event = record(client, "ana@example.com", crm("ana@example.com"))

    push_and_verify(zoho, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert queued == [delivery.pk]
    assert (delivery.event, delivery.outcome) == (event, "verified")
    webhook_deliver_task.apply(args=[delivery.pk])

    (request,) = receiver.requests
    body, headers = request["body"], request["headers"]
    assert (
        headers["X-ConsentDesk-Signature"]
        == "sha256=" + __import__("hmac").new(endpoint.secret.encode(), body, "sha256").hexdigest()
    )
    assert webhooks.signature_valid(
        secret=endpoint.secret, body=body, header=headers["X-ConsentDesk-Signature"]
    )
    assert not webhooks.signature_valid(
        secret="another secret", body=body, header=headers["X-ConsentDesk-Signature"]
    )
    message = json.loads(body)
    assert message["type"] == "consent.verified"
    assert message["event"]["id"] == event.pk and message["event"]["purpose"] == "sms_marketing"
    assert message["event"]["idempotency_key"] == event.idempotency_key
    assert message["zoho"]["status"] == "verified" and message["zoho"]["verified_at"]
    assert str(message["sent_at"]) == headers["X-ConsentDesk-Timestamp"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
    attempt = WebhookAttempt.objects.get()
    assert (attempt.number, attempt.status, attempt.response_code, attempt.error) == (1, "ok", 200, "")

    # Read back again: the change is told once.
    with django_capture_on_commit_callbacks(execute=True):
        pushes_verify_due(zoho=zoho, ignore_delay=True)
    assert WebhookDelivery.objects.count() == 1


def test_a_change_zoho_did_not_apply_is_posted_as_failed_with_the_discrepancy_s_kind(
    ledger: Any,
    crm: Any,
    zoho: Any,
    sim: Any,
    engine_settings: Any,
    receiver: Receiver,
    app_client: Any,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client, _ = app_client
    sim.fault("field_no_permission", field="SMS_Opt_In", mode="silent")
    event = record(client, "bo@example.com", crm("bo@example.com"))

    push_and_verify(zoho, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.event, delivery.outcome) == (event, "failed")
    webhook_deliver_task.apply(args=[delivery.pk])
    message = json.loads(receiver.requests[0]["body"])
    assert message["type"] == "consent.failed"
    assert message["zoho"]["status"] == "discrepancy"
    assert message["zoho"]["kind"] == "not_applied" and message["zoho"]["crm_field"] == "SMS_Opt_In"


def test_one_read_back_tells_each_purpose_its_own_outcome(
    ledger: Any,
    crm: Any,
    zoho: Any,
    sim: Any,
    engine_settings: Any,
    app_client: Any,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client, _ = app_client
    sim.fault("field_no_permission", field="SMS_Opt_In", mode="silent")
    record_id = crm("cleo@example.com")
    sms = record(client, "cleo@example.com", record_id)
    phone = record(client, "cleo@example.com", record_id, purpose="phone_marketing")

    push_and_verify(zoho, django_capture_on_commit_callbacks)

    told = {(d.event_id, d.outcome) for d in WebhookDelivery.objects.all()}
    assert told == {(sms.pk, "failed"), (phone.pk, "verified")}


def test_changes_of_other_clients_and_people_are_not_posted(
    ledger: Any,
    crm: Any,
    zoho: Any,
    engine_settings: Any,
    app_client: Any,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    other, _ = services.api_client_create(name="web-portal", sources=["mobile_app"])
    record(other, "cy@example.com", crm("cy@example.com"))
    ledger.change("di@example.com", "sms_marketing", "opted_in", zoho_id=crm("di@example.com"))

    push_and_verify(zoho, django_capture_on_commit_callbacks)

    assert not WebhookDelivery.objects.exists() and not queued


def test_a_failing_receiver_is_retried_and_every_attempt_recorded(
    receiver: Receiver, app_client: Any, ledger: Any, queued: list[int]
) -> None:
    client, endpoint = app_client
    event = record(client, "ed@example.com", "5725767000000999001")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event=event, outcome="verified", payload={"type": "consent.verified"}
    )
    receiver.answers = [500, 503]

    webhook_deliver_task.apply(args=[delivery.pk])

    attempts = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.status, a.response_code) for a in attempts] == [
        (1, "error", 500),
        (2, "error", 503),
        (3, "ok", 200),
    ]
    assert "HTTP 500" in attempts[0].error
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    # Each attempt is signed afresh, for its own body; the delivery id stays.
    bodies = [json.loads(r["body"]) for r in receiver.requests]
    assert [b["attempt"] for b in bodies] == [1, 2, 3]
    assert {r["headers"]["X-ConsentDesk-Delivery"] for r in receiver.requests} == {str(delivery.pk)}
    for r in receiver.requests:
        assert webhooks.signature_valid(
            secret=endpoint.secret, body=r["body"], header=r["headers"]["X-ConsentDesk-Signature"]
        )


def test_a_receiver_that_never_answers_2xx_is_given_up_after_the_last_attempt(
    receiver: Receiver, app_client: Any, ledger: Any, settings: Any
) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 4
    client, endpoint = app_client
    event = record(client, "flo@example.com", "5725767000000999002")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event=event, outcome="verified", payload={"type": "consent.verified"}
    )
    receiver.answers = [500] * 10

    webhook_deliver_task.apply(args=[delivery.pk])

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 4)
    assert WebhookAttempt.objects.filter(delivery=delivery, status="error").count() == 4
    assert len(receiver.requests) == 4


def test_an_unreachable_receiver_records_the_error(app_client: Any, ledger: Any, settings: Any) -> None:
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    client, endpoint = app_client
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url="http://127.0.0.1:9/nothing-listens")
    event = record(client, "gus@example.com", "5725767000000999003")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint, event=event, outcome="verified", payload={"type": "consent.verified"}
    )

    webhook_deliver_task.apply(args=[delivery.pk])

    attempts = list(WebhookAttempt.objects.filter(delivery=delivery))
    assert len(attempts) == 2
    assert all(
        a.status == "error" and a.response_code is None and "ConnectError" in a.error for a in attempts
    )


def test_the_task_retries_with_exponential_backoff() -> None:
    assert webhook_deliver_task.autoretry_for == (webhooks.WebhookFailed,)
    assert webhook_deliver_task.retry_backoff == 2 and webhook_deliver_task.retry_jitter


# -- a change Zoho refuses at push time: told when the push learns it, not at a read-back --------


def test_a_change_zoho_refuses_at_push_time_is_posted_as_failed_at_once_and_only_once(
    ledger: Any,
    crm: Any,
    zoho: Any,
    sim: Any,
    engine_settings: Any,
    receiver: Receiver,
    app_client: Any,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client, endpoint = app_client
    # Zoho answers the update with a per-record NO_PERMISSION on SMS_Opt_In: a permanent error.
    sim.fault("field_no_permission", field="SMS_Opt_In")
    event = record(client, "hal@example.com", crm("hal@example.com"))

    # When the push runs, and nothing reads it back
    with django_capture_on_commit_callbacks(execute=True):
        while claim := outbox_claim(worker="test"):
            outbox_batch_push(claim=claim, zoho=zoho)

    push = SyncPush.objects.get()
    assert (push.verification, push.verified_at) == ("rejected", None)
    discrepancy = Discrepancy.objects.get()
    assert (discrepancy.kind, discrepancy.crm_field) == ("permission_denied", "SMS_Opt_In")
    # Then the failure is told already: one delivery, queued
    delivery = WebhookDelivery.objects.get()
    assert queued == [delivery.pk]
    assert (delivery.event, delivery.outcome) == (event, "failed")

    # and delivered as every delivery is: signed, retried with its attempts recorded
    receiver.answers = [503]
    webhook_deliver_task.apply(args=[delivery.pk])
    assert [(a.number, a.status, a.response_code) for a in delivery.attempt_rows.order_by("number")] == [
        (1, "error", 503),
        (2, "ok", 200),
    ]
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    last = receiver.requests[-1]
    assert webhooks.signature_valid(
        secret=endpoint.secret, body=last["body"], header=last["headers"]["X-ConsentDesk-Signature"]
    )
    message = json.loads(last["body"])
    assert message["type"] == "consent.failed" and message["event"]["id"] == event.pk
    assert message["zoho"]["status"] == "discrepancy"
    assert message["zoho"]["kind"] == "permission_denied"
    assert message["zoho"]["crm_field"] == "SMS_Opt_In"
    assert message["zoho"]["discrepancy_id"] == discrepancy.pk
    assert message["zoho"]["zoho_code"] == "NO_PERMISSION"
    assert message["zoho"]["record_id"] == push.zoho_id

    # When the retry is refused again and the read-backs run, the change is not told twice
    with django_capture_on_commit_callbacks(execute=True):
        discrepancies_retry_due(zoho=zoho, now=timezone.now() + timedelta(hours=1))
        while claim := outbox_claim(worker="test"):
            outbox_batch_push(claim=claim, zoho=zoho)
        pushes_verify_due(zoho=zoho, ignore_delay=True)
    assert SyncPush.objects.filter(verification="rejected").count() == 2
    assert WebhookDelivery.objects.count() == 1 and queued == [delivery.pk]


def test_a_push_zoho_accepts_is_told_only_by_its_read_back(
    ledger: Any,
    crm: Any,
    zoho: Any,
    engine_settings: Any,
    app_client: Any,
    queued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    client, _ = app_client
    record(client, "ida@example.com", crm("ida@example.com"))

    with django_capture_on_commit_callbacks(execute=True):
        while claim := outbox_claim(worker="test"):
            outbox_batch_push(claim=claim, zoho=zoho)

    assert not WebhookDelivery.objects.exists() and not queued


@pytest.mark.django_db(transaction=True)
def test_workers_post_a_refused_change_to_the_webhook_without_any_read_back(
    workers: Any, ledger: Any, crm: Any, sim: Any, receiver: Receiver
) -> None:
    # Given a worker, an app with a webhook, and Zoho refusing SMS_Opt_In (NO_PERMISSION)
    client, _ = services.api_client_create(name="mobile-app", sources=["mobile_app"])
    endpoint = WebhookEndpoint.objects.create(api_client=client, url=receiver.url)
    sim.fault("field_no_permission", field="SMS_Opt_In")
    workers.start(1)
    workers.wait_ready()

    # When the app records a change (its commit queues the push; no beat: no read-back runs)
    event = record(client, "jo@example.com", crm("jo@example.com"))

    # Then the worker's push learns the refusal and a worker POSTs consent.failed
    workers.wait_until(lambda: len(receiver.requests) >= 1, "the webhook POST", beat=False)
    workers.wait_until(workers.drained, "the workers to finish", beat=False)
    (request,) = receiver.requests
    assert webhooks.signature_valid(
        secret=endpoint.secret, body=request["body"], header=request["headers"]["X-ConsentDesk-Signature"]
    )
    message = json.loads(request["body"])
    assert (message["type"], message["event"]["id"]) == ("consent.failed", event.pk)
    assert message["zoho"]["kind"] == "permission_denied"
    assert SyncPush.objects.get().verified_at is None  # never read back
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)
