"""Outgoing lifecycle mail: each message is a `LifecycleMessage` row before it is sent.

`message_queue` renders the mail (its templates in templates/lifecycle/mail/) and stores it with
its Message-ID; once that commits, the `lifecycle.send_message` task sends it through Django's
email backend (EMAIL_* settings) with `message_send`, which counts the attempt before the call and
finishes the row after it. A failed send is retried by the task with a backoff; one that never got
its task (a broker down) is sent by the lifecycle cycle. Nothing here touches the ledger: a mail
that bounces or cannot be sent is not a withdrawal of consent.

A contact held by "do not contact" (`compliance.lifecycle.suppressions`: an erased person's address
came back) is never mailed: its message is recorded unrendered as failed, saying why, and a queued
one is failed the same way when its send comes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import make_msgid
from typing import Any
from urllib.parse import urlsplit

from celery import current_app
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation

from compliance.lifecycle import tokens
from compliance.lifecycle.policies import policy_in_force, policy_url
from compliance.lifecycle.suppressions import DO_NOT_CONTACT, do_not_contact
from compliance.models import ConsentEvent, LifecycleMessage, PolicyVersion

logger = logging.getLogger(__name__)

SEND_TASK = "lifecycle.send_message"


def public_url(path: str) -> str:
    return f"{settings.PUBLIC_BASE_URL}{path}"


def _message_domain() -> str:
    return urlsplit(settings.PUBLIC_BASE_URL).hostname or "localhost"


def message_queue(*, kind: str, event: ConsentEvent, now: datetime | None = None) -> LifecycleMessage | None:
    """Record a confirmation (or its reminder) of this pending event, or a refresh request of this
    opt-in, and send it once that commits.

    None when the contact has no email address. Asked twice for the same event and kind, it
    answers the message made the first time (one confirmation and one reminder per event). A
    contact held by "do not contact" gets a message that says so (status failed), never a mail.
    """
    contact = event.contact
    if not contact.email:
        return None
    existing = LifecycleMessage.objects.filter(event=event, kind=kind).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            (message,) = _messages_make(
                [_Ask(kind=kind, event=event, policy=_policy_of(kind, event))], now=now
            )
    except IntegrityError:
        # Made concurrently for the same event and kind.
        return LifecycleMessage.objects.get(event=event, kind=kind)
    return message


@dataclass(frozen=True)
class _Ask:
    """One mail to make: its kind, the event it asks about (its contact and purpose), the policy
    it cites, and whether the message row names the event (not a re-permission's: its target does)."""

    kind: str
    event: ConsentEvent
    policy: PolicyVersion | None
    names_event: bool = True


def _policy_of(kind: str, event: ConsentEvent, in_force: PolicyVersion | None = None) -> PolicyVersion | None:
    # A refresh asks under the policy in force now; a confirmation under the one the person saw.
    if kind == LifecycleMessage.Kind.REFRESH:
        return in_force or policy_in_force() or event.policy_version
    return event.policy_version or in_force or policy_in_force()


def _messages_make(asks: Sequence[_Ask], *, now: datetime | None) -> list[LifecycleMessage]:
    """Insert the messages (one INSERT), sign their links, render them (one UPDATE), and queue
    their sends once the transaction commits. The caller holds the transaction. The message of a
    contact held by "do not contact" is inserted failed, saying why: no link, no body, no send."""
    if not asks:
        return []
    now = now or timezone.now()
    contact_ids = {ask.event.contact_id for ask in asks}
    held = set(do_not_contact().filter(contact_id__in=contact_ids).values_list("contact_id", flat=True))
    generations = tokens.link_generations(contact_ids - held)
    domain = _message_domain()
    messages = LifecycleMessage.objects.bulk_create(
        [
            LifecycleMessage(
                kind=ask.kind,
                contact=ask.event.contact,
                purpose=ask.event.purpose,
                event=ask.event if ask.names_event else None,
                message_id=make_msgid(domain=domain),
                to_email=ask.event.contact.email or "",
                subject="",
                body_text="",
                status=(
                    LifecycleMessage.Status.FAILED
                    if ask.event.contact_id in held
                    else LifecycleMessage.Status.QUEUED
                ),
                last_error=DO_NOT_CONTACT if ask.event.contact_id in held else "",
            )
            for ask in asks
        ]
    )
    rendered = []
    for message, ask in zip(messages, asks, strict=True):
        if ask.event.contact_id in held:
            continue
        rendered.append(message)
        generation = generations[ask.event.contact_id]
        token = tokens.token_make(
            kind=tokens.Kind.CONFIRM,
            contact=ask.event.contact,
            purpose=ask.event.purpose.code,
            ttl=link_ttl(ask.kind),
            message_id=message.pk,
            now=now,
            generation=generation,
        )
        _render(message, token=token, event=ask.event, policy=ask.policy, now=now, generation=generation)
    if rendered:
        LifecycleMessage.objects.bulk_update(rendered, ["subject", "body_text", "body_html"])
        pks = [message.pk for message in rendered]
        transaction.on_commit(lambda: messages_send_soon(pks))
    return messages


def confirmation_messages_queue(
    *, events: Sequence[ConsentEvent], now: datetime | None = None
) -> list[LifecycleMessage]:
    """The confirmation mails of many pending events at once (a batch ingest): a constant number
    of queries, whatever the number of events. Events whose contact has no address, or whose
    confirmation exists already, are left out (as `message_queue` does)."""
    events = [e for e in events if e.contact.email]
    if not events:
        return []
    kind = LifecycleMessage.Kind.CONFIRMATION
    made = set(
        LifecycleMessage.objects.filter(event__in=events, kind=kind).values_list("event_id", flat=True)
    )
    events = [e for e in events if e.pk not in made]
    policy_ids = {e.policy_version_id for e in events if e.policy_version_id}
    policies = {p.pk: p for p in PolicyVersion.objects.filter(pk__in=policy_ids)}
    in_force = policy_in_force() if any(e.policy_version_id is None for e in events) else None
    asks = [
        _Ask(kind=kind, event=e, policy=policies.get(e.policy_version_id or 0) or in_force) for e in events
    ]
    try:
        with transaction.atomic():
            return _messages_make(asks, now=now)
    except IntegrityError:
        # One was made concurrently: one by one (each answers the one made first).
        found = [message_queue(kind=kind, event=e, now=now) for e in events]
        return [m for m in found if m is not None]


def repermission_messages_queue(
    *, targets: Sequence[Any], policy: PolicyVersion, now: datetime | None = None
) -> list[LifecycleMessage]:
    """A re-permission mail per target (`RepermissionTarget`, its contact with an address): asks
    the person to opt in again under ``policy``. The caller links each target to its message."""
    asks = [
        _Ask(kind=LifecycleMessage.Kind.REPERMISSION, event=t.event, policy=policy, names_event=False)
        for t in targets
    ]
    for target, ask in zip(targets, asks, strict=True):
        # The event's contact and purpose as the target read them (one query for them all).
        ask.event.contact = target.contact
        ask.event.purpose = target.purpose
    return _messages_make(asks, now=now)


def link_ttl(kind: str) -> timedelta:
    """A confirmation link lives DOI_LINK_TTL_HOURS; a refresh link until the refresh date at
    least; a re-permission link as long as unsubscribe links do."""
    if kind == LifecycleMessage.Kind.REFRESH:
        return timedelta(days=settings.REFRESH_NOTICE_DAYS)
    if kind == LifecycleMessage.Kind.REPERMISSION:
        return timedelta(days=settings.LINK_TTL_DAYS)
    return timedelta(hours=settings.DOI_LINK_TTL_HOURS)


def _render(
    message: LifecycleMessage,
    *,
    token: str,
    event: ConsentEvent,
    policy: PolicyVersion | None,
    now: datetime,
    generation: int,
) -> None:
    is_refresh = message.kind == LifecycleMessage.Kind.REFRESH
    context = {
        "company": settings.LIFECYCLE_COMPANY_NAME,
        "purpose": event.purpose,
        "policy": policy,
        "policy_url": policy_url(policy),
        "confirm_url": public_url(reverse("lifecycle:confirm", args=[token])),
        # Carries the message: an opt-in made from it counts as confirmed (it came to this address).
        "preferences_url": public_url(
            reverse(
                "lifecycle:preferences",
                args=[
                    tokens.token_make(
                        kind=tokens.Kind.PREFERENCES,
                        contact=event.contact,
                        purpose=tokens.ALL_PURPOSES,
                        ttl=timedelta(days=settings.LINK_TTL_DAYS),
                        message_id=message.pk,
                        now=now,
                        generation=generation,
                    )
                ],
            )
        ),
        "expires_at": now + link_ttl(message.kind),
        "is_reminder": message.kind == LifecycleMessage.Kind.REMINDER,
        "is_refresh": is_refresh,
        "is_repermission": message.kind == LifecycleMessage.Kind.REPERMISSION,
        "name": event.contact.first_name,
    }
    # The person's language is not known: the mails are in English (the pages follow the browser).
    with translation.override("en"):
        message.subject = " ".join(
            render_to_string("lifecycle/mail/confirmation_subject.txt", context).split()
        )
        message.body_text = render_to_string("lifecycle/mail/confirmation.txt", context)
        message.body_html = render_to_string("lifecycle/mail/confirmation.html", context)


def messages_send_soon(message_pks: Sequence[int]) -> None:
    """Queue the send tasks of many messages over one broker connection (after the commit)."""
    if not settings.LIFECYCLE_SEND_ON_COMMIT or not message_pks:
        return
    try:
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
            for pk in message_pks:
                current_app.send_task(SEND_TASK, args=[pk], retry=False, connection=connection)
    except Exception:
        logger.warning("Could not queue lifecycle mails; the lifecycle cycle will send them", exc_info=True)


def message_send_soon(message_pk: int) -> None:
    """Queue the send task (after the commit). A broker that is down loses nothing: the
    lifecycle cycle sends every message still queued."""
    if not settings.LIFECYCLE_SEND_ON_COMMIT:
        return
    try:
        with current_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=0)
            current_app.send_task(SEND_TASK, args=[message_pk], retry=False, connection=connection)
    except Exception:
        logger.warning("Could not queue a lifecycle mail; the lifecycle cycle will send it", exc_info=True)


class SendFailed(Exception):
    """The backend refused or could not reach the server; `final` when no attempt is left."""

    def __init__(self, error: str, *, final: bool) -> None:
        super().__init__(error)
        self.final = final


def message_send(*, message_pk: int, now: datetime | None = None) -> LifecycleMessage | None:
    """Send one queued message: the attempt is counted (and committed) before the call, the
    outcome stored after it. Returns the row (None when it is gone), raises SendFailed when
    the send failed. A message already sent or failed for good is left alone; one whose contact
    is held by "do not contact" (since it was queued) is failed, saying why, and not sent."""
    with transaction.atomic():
        message = LifecycleMessage.objects.select_for_update().filter(pk=message_pk).first()
        if message is None or message.status != LifecycleMessage.Status.QUEUED:
            return message
        if do_not_contact().filter(contact_id=message.contact_id).exists():
            message.status = LifecycleMessage.Status.FAILED
            message.last_error = DO_NOT_CONTACT
            message.save(update_fields=["status", "last_error"])
            return message
        message.attempts += 1
        message.last_attempt_at = now or timezone.now()
        message.save(update_fields=["attempts", "last_attempt_at"])
    mail = EmailMultiAlternatives(
        subject=message.subject,
        body=message.body_text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[message.to_email],
        headers={"Message-ID": message.message_id, "Auto-Submitted": "auto-generated"},
    )
    if message.body_html:
        mail.attach_alternative(message.body_html, "text/html")
    try:
        mail.send(fail_silently=False)
    except Exception as exc:  # any backend's failure: SMTP, socket, file system
        final = message.attempts >= settings.LIFECYCLE_MAIL_MAX_ATTEMPTS
        error = f"{type(exc).__name__}: {exc}"[:500]
        LifecycleMessage.objects.filter(pk=message.pk).update(
            last_error=error,
            status=LifecycleMessage.Status.FAILED if final else LifecycleMessage.Status.QUEUED,
        )
        raise SendFailed(error, final=final) from exc
    message.status = LifecycleMessage.Status.SENT
    message.sent_at = timezone.now()
    message.last_error = ""
    message.save(update_fields=["status", "sent_at", "last_error"])
    return message


def retry_delay(attempts: int) -> int:
    """Seconds before the next attempt: LIFECYCLE_MAIL_RETRY_BASE_S, doubled each time (at most a day)."""
    return int(min(settings.LIFECYCLE_MAIL_RETRY_BASE_S * 2 ** max(attempts - 1, 0), 86400))
