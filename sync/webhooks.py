"""API clients' webhooks: tell the calling app when each change it made reached Zoho, or failed.

An API client with a `WebhookEndpoint` hears about every consent event it recorded (since the
endpoint was set up) once per outcome:

- ``consent.verified``: a push carrying the event's version (or a later one of the same
  purpose) was read back from Zoho and matched;
- ``consent.failed``: Zoho refused the push carrying it (a permanent per-record error at push
  time: a field without permission, INVALID_DATA, a record that no longer exists), or the
  read-back of such a push opened or confirmed a discrepancy on a field of the event's purpose
  (or on the whole record); the discrepancy's kind says why. A later matching read-back still
  sends ``consent.verified``.

`webhooks_after_push` runs after the transaction that stored Zoho's answers to a push commits
(`sync.push` registers it through `webhooks_on_push_commit`): a change Zoho refused is told at
once, not at the next read-back. `webhooks_after_verify` runs after the read-back's settle
transaction commits (`sync.verify` queues it with ``transaction.on_commit``). Both write one
`WebhookDelivery` per event and outcome (a unique constraint keeps it to one, however often a
push is refused again or read back) and queue its delivery. `webhook_deliver` makes one attempt: the `WebhookAttempt` row is written before
the POST and finished after it. The Celery task ``sync.webhook_deliver`` retries a failed
attempt with exponential backoff, up to ``WEBHOOK_MAX_ATTEMPTS`` attempts; then the delivery
is marked as given up.

Every POST is JSON, signed with HMAC-SHA256 over the exact body with the endpoint's secret::

    X-ConsentDesk-Signature: sha256=<hex>
    X-ConsentDesk-Timestamp: <unix seconds, also the body's "sent_at">
    X-ConsentDesk-Delivery: <delivery id, the same on every attempt>

A receiver recomputes the HMAC over the raw body, compares in constant time, and refuses a
timestamp too far from its clock (a replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from functools import partial
from typing import Any

import httpx
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from compliance.models import ConsentEvent
from sync.models import (
    Discrepancy,
    FieldMapping,
    SyncPush,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-ConsentDesk-Signature"
TIMESTAMP_HEADER = "X-ConsentDesk-Timestamp"
DELIVERY_HEADER = "X-ConsentDesk-Delivery"
USER_AGENT = "ConsentDesk-Webhooks/1"
# What a receiver's answer may say in an attempt row (its body is not ours to keep).
ERROR_MAX = 500


class WebhookFailed(Exception):
    """An attempt that did not get a 2xx answer; the task retries it with backoff."""


def signature(*, secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of the body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(*, secret: str, body: bytes, header: str) -> bool:
    """What a receiver does (and the tests): recompute and compare in constant time."""
    return hmac.compare_digest(signature(secret=secret, body=body), header or "")


# -- what to tell ------------------------------------------------------------------------------


def _event_body(event: ConsentEvent) -> dict[str, Any]:
    return {
        "id": event.pk,
        "contact_id": event.contact_id,
        "purpose": event.purpose.code,
        "version": event.version,
        "status": event.status,
        "idempotency_key": event.idempotency_key,
        "occurred_at": event.occurred_at.isoformat(),
    }


def _endpoints() -> dict[int, WebhookEndpoint]:
    """The active endpoints, by API client id."""
    return {e.api_client_id: e for e in WebhookEndpoint.objects.filter(is_active=True)}


def _client_events(
    pushes: list[SyncPush], endpoints: dict[int, WebhookEndpoint]
) -> dict[tuple[int, str], list[ConsentEvent]]:
    """(contact, purpose code) -> the events these pushes' contacts' clients recorded since
    their endpoint was set up."""
    events: dict[tuple[int, str], list[ConsentEvent]] = {}
    for event in ConsentEvent.objects.filter(
        contact_id__in={p.contact_id for p in pushes}, api_client_id__in=list(endpoints)
    ).select_related("purpose"):
        if event.recorded_at >= endpoints[event.api_client_id].created_at:  # type: ignore[index]
            events.setdefault((event.contact_id, event.purpose.code), []).append(event)
    return events


def _told(events: dict[tuple[int, str], list[ConsentEvent]]) -> set[tuple[int, str]]:
    """(event id, outcome) of the deliveries written already."""
    return set(
        WebhookDelivery.objects.filter(
            event_id__in=[e.pk for group in events.values() for e in group]
        ).values_list("event_id", "outcome")
    )


def webhooks_on_push_commit(*, pushes: Iterable[SyncPush]) -> None:
    """The push's hook (`sync.push`, where it stores Zoho's per-record answers): once that
    transaction commits, tell the clients about the changes Zoho refused (`webhooks_after_push`).
    Nothing for the pushes Zoho accepted: their read-back tells."""
    refused = [p.pk for p in pushes if p.verification == SyncPush.Verification.REJECTED]
    if refused:
        transaction.on_commit(partial(webhooks_after_push, push_ids=refused), robust=True)


def webhooks_after_push(*, push_ids: Iterable[int]) -> list[int]:
    """Write and queue ``consent.failed`` for the changes these refused pushes carried; their ids.

    Zoho refused the whole record (a permanent per-record error), so no change the push carried
    reached Zoho: each is told failed, with the discrepancy the push opened or confirmed (its
    kind, field and hint). A change told verified already (by an earlier push) is not told
    again; a change already told failed (the same refusal on a retry) neither.
    """
    endpoints = _endpoints()
    if not endpoints:
        return []
    pushes = list(SyncPush.objects.filter(pk__in=list(push_ids), verification=SyncPush.Verification.REJECTED))
    if not pushes:
        return []
    events = _client_events(pushes, endpoints)
    if not events:
        return []
    told = _told(events)
    causes: dict[int, Discrepancy] = {}
    by_id = {p.pk: p for p in pushes}
    for d in Discrepancy.objects.filter(contact_id__in={p.contact_id for p in pushes}).defer(
        "actual", "expected"
    ):
        push_id = (d.evidence or {}).get("push")
        if isinstance(push_id, int) and push_id in by_id:
            causes.setdefault(push_id, d)
    created: list[int] = []
    for push in pushes:
        cause = causes.get(push.pk)
        response = push.response or {}
        zoho: dict[str, Any] = {
            "status": "discrepancy",
            "kind": cause.kind if cause else Discrepancy.Kind.REJECTED,
            "crm_field": cause.crm_field if cause else "",
            "discrepancy_id": cause.pk if cause else None,
            "hint": cause.hint if cause else str(response.get("message", "")),
            "record_id": push.zoho_id,
            "zoho_code": response.get("code", ""),
        }
        for code, pushed_version in push.ledger_versions.items():
            for event in events.get((push.contact_id, code), []):
                if (
                    event.version > int(pushed_version)
                    or (event.pk, WebhookDelivery.Outcome.FAILED) in told
                    or (event.pk, WebhookDelivery.Outcome.VERIFIED) in told
                ):
                    continue
                told.add((event.pk, WebhookDelivery.Outcome.FAILED))
                endpoint = endpoints[event.api_client_id]  # type: ignore[index]
                delivery = _delivery_create(endpoint, event, WebhookDelivery.Outcome.FAILED, zoho)
                if delivery is not None:
                    created.append(delivery.pk)
    for delivery_id in created:
        _enqueue(delivery_id)
    return created


def webhooks_after_verify(*, push_ids: Iterable[int]) -> list[int]:
    """Write and queue the deliveries that these settled pushes call for; their ids."""
    endpoints = _endpoints()
    if not endpoints:
        return []
    pushes = list(
        SyncPush.objects.filter(
            pk__in=list(push_ids),
            verification__in=[SyncPush.Verification.VERIFIED, SyncPush.Verification.MISMATCH],
        )
    )
    if not pushes:
        return []
    events = _client_events(pushes, endpoints)
    if not events:
        return []
    told = _told(events)
    failures = _failures(pushes)
    fields_of: dict[str, list[str]] = {}
    for crm_field, code in FieldMapping.objects.filter(is_active=True).values_list(
        "crm_field", "purpose__code"
    ):
        fields_of.setdefault(code, []).append(crm_field)
    created: list[int] = []
    for push in pushes:
        verified: dict[str, Any] = {
            "status": "verified",
            "verified_at": push.verified_at.isoformat() if push.verified_at else None,
            "record_id": push.zoho_id,
        }
        failed = failures.get(push.pk, {})
        told_now: list[tuple[str, str, dict[str, Any]]] = []
        for code in push.ledger_versions:
            if code in failed:
                told_now.append((code, WebhookDelivery.Outcome.FAILED, failed[code]))
            elif push.verification == SyncPush.Verification.VERIFIED or _matched(
                push, fields_of.get(code, [])
            ):
                # (A mismatch on another purpose's field leaves this one's read-back matching.)
                told_now.append((code, WebhookDelivery.Outcome.VERIFIED, verified))
        for code, outcome, zoho in told_now:
            version = int(push.ledger_versions.get(code, 0))
            for event in events.get((push.contact_id, code), []):
                if event.version > version or (event.pk, outcome) in told:
                    continue
                told.add((event.pk, outcome))
                endpoint = endpoints[event.api_client_id]  # type: ignore[index]
                delivery = _delivery_create(endpoint, event, outcome, zoho)
                if delivery is not None:
                    created.append(delivery.pk)
    for delivery_id in created:
        _enqueue(delivery_id)
    return created


def _matched(push: SyncPush, names: list[str]) -> bool:
    sent = [name for name in names if name in push.sent]
    readback = push.readback or {}
    return bool(sent) and all(name in readback and readback[name] == push.sent[name] for name in sent)


def _failures(pushes: list[SyncPush]) -> dict[int, dict[str, dict[str, Any]]]:
    """push id -> purpose code -> the discrepancy its read-back opened or confirmed."""
    mismatched = {p.pk: p for p in pushes if p.verification == SyncPush.Verification.MISMATCH}
    if not mismatched:
        return {}
    purpose_of = dict(FieldMapping.objects.filter(is_active=True).values_list("crm_field", "purpose__code"))
    out: dict[int, dict[str, dict[str, Any]]] = {}
    open_rows = Discrepancy.objects.filter(
        status=Discrepancy.Status.OPEN, contact_id__in={p.contact_id for p in mismatched.values()}
    ).defer("actual", "expected")
    for d in open_rows:
        push_id = (d.evidence or {}).get("push")
        push = mismatched.get(push_id) if isinstance(push_id, int) else None
        if push is None:
            continue
        zoho = {
            "status": "discrepancy",
            "kind": d.kind,
            "crm_field": d.crm_field,
            "discrepancy_id": d.pk,
            "hint": d.hint,
            "record_id": d.zoho_id or push.zoho_id,
        }
        codes = list(push.ledger_versions) if not d.crm_field else [purpose_of.get(d.crm_field, "")]
        for code in codes:
            if code:
                out.setdefault(push.pk, {}).setdefault(code, zoho)
    return out


def _delivery_create(
    endpoint: WebhookEndpoint, event: ConsentEvent, outcome: str, zoho: dict[str, Any]
) -> WebhookDelivery | None:
    payload = {
        "type": f"consent.{outcome}",
        "event": _event_body(event),
        "zoho": zoho,
    }
    try:
        with transaction.atomic():
            return WebhookDelivery.objects.create(
                endpoint=endpoint, event=event, outcome=outcome, payload=payload
            )
    except IntegrityError:
        return None  # told already (another read-back of the same change, at the same time)


def _enqueue(delivery_id: int) -> None:
    from config.celery import app

    try:
        # By name: the task module imports this one.
        app.send_task("sync.webhook_deliver", args=[delivery_id])
    except Exception:
        logger.warning("Could not queue webhook delivery %s", delivery_id, exc_info=True)


# -- telling -----------------------------------------------------------------------------------


def webhook_body(delivery: WebhookDelivery, *, attempt: int, sent_at: datetime) -> bytes:
    body = {
        **delivery.payload,
        "delivery": delivery.pk,
        "attempt": attempt,
        "sent_at": int(sent_at.timestamp()),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def webhook_deliver(*, delivery_id: int, http: httpx.Client | None = None) -> WebhookAttempt | None:
    """Make the delivery's next attempt. Raises WebhookFailed when it failed and attempts remain.

    None when there is nothing to do (delivered already, given up, or its endpoint is off).
    """
    now = timezone.now()
    with transaction.atomic():
        delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery_id)
        if delivery.status != WebhookDelivery.Status.PENDING:
            return None
        if not delivery.endpoint.is_active:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.save(update_fields=["status"])
            return None
        delivery.attempts += 1
        delivery.save(update_fields=["attempts"])
        attempt = WebhookAttempt.objects.create(delivery=delivery, number=delivery.attempts, started_at=now)
    body = webhook_body(delivery, attempt=attempt.number, sent_at=now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: signature(secret=delivery.endpoint.secret, body=body),
        TIMESTAMP_HEADER: str(int(now.timestamp())),
        DELIVERY_HEADER: str(delivery.pk),
    }
    try:
        if http is None:
            with httpx.Client(timeout=settings.WEBHOOK_TIMEOUT_S, follow_redirects=False) as client:
                response = client.post(delivery.endpoint.url, content=body, headers=headers)
        else:
            response = http.post(delivery.endpoint.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
    else:
        attempt.response_code = response.status_code
        if not 200 <= response.status_code < 300:
            attempt.error = f"HTTP {response.status_code}: {response.text[:200]}"[:ERROR_MAX]
    ok = attempt.response_code is not None and 200 <= attempt.response_code < 300
    finished = timezone.now()
    attempt.status = WebhookAttempt.Status.OK if ok else WebhookAttempt.Status.ERROR
    attempt.finished_at = finished
    attempt.save(update_fields=["status", "response_code", "error", "finished_at"])
    if ok:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            status=WebhookDelivery.Status.DELIVERED, delivered_at=finished
        )
        return attempt
    if attempt.number >= settings.WEBHOOK_MAX_ATTEMPTS:
        WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.FAILED)
        logger.warning("Webhook delivery %s gave up after %s attempts", delivery.pk, attempt.number)
        return attempt
    raise WebhookFailed(f"delivery {delivery.pk} attempt {attempt.number}: {attempt.error}")
