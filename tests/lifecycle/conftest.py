"""Fixtures of the lifecycle's tests: a published policy, a contact waiting for a double opt-in,
links made as a mail would carry them, a public client that checks CSRF like a browser, and a real
SMTP server (aiosmtpd) for Django's SMTP backend."""

from __future__ import annotations

import itertools
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from compliance import services
from compliance.lifecycle import links, mail
from compliance.models import ConsentEvent, Contact, LifecycleMessage, PolicyVersion

# The sync's zohosim and real-worker fixtures, for test_end_to_end.py.
from tests.sync.conftest import (  # noqa: F401
    crm,
    engine_broker_url,
    engine_settings,
    ledger,
    sim,
    sim_server,
    sim_settings,
    workers,
)

_keys = itertools.count(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(settings: Any, handler: Any) -> Iterator[None]:
    """An SMTP server on a free local port whose messages go to `handler` (aiosmtpd's handle_DATA),
    with Django's SMTP backend pointed at it, until the block ends."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    settings.EMAIL_TIMEOUT = 5
    try:
        yield
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def _lifecycle_settings(settings: Any) -> Any:
    settings.LINK_SIGNING_KEYS = ["link-key-new-0123456789abcdef", "link-key-old-0123456789abcdef"]
    settings.PUBLIC_BASE_URL = "http://testserver"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # No broker consumes in these tests: a mail is sent by the test (or the lifecycle cycle).
    settings.LIFECYCLE_SEND_ON_COMMIT = False
    settings.LINK_RATE_LIMIT_PER_MIN = 1000
    # The rate counters of each test of their own.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"lifecycle-{uuid.uuid4().hex}",
        }
    }
    return settings


@pytest.fixture
def policy(db: None) -> PolicyVersion:
    return services.policy_version_publish(
        label="2026-03", effective_at="2026-03-01", text="We use your data to send you offers you chose."
    )


def record(
    contact: Contact | None, purpose: str, status: str, *, email: str | None = None, **fields: Any
) -> ConsentEvent:
    """A decision recorded for `contact`; with none, ingested for the contact of `email` (by
    default Ana, ana@example.com)."""
    values: dict[str, Any] = {
        "purpose": purpose,
        "status": status,
        "source": "web_portal",
        "occurred_at": timezone.now() - timedelta(minutes=5),
        "idempotency_key": f"lifecycle-test-{next(_keys)}",
        "policy_version": "2026-03" if status in ("opted_in", "pending") else None,
    }
    values.update(fields)
    decision = services.ConsentDecision(**values)
    if contact is None:
        identity = (
            services.ContactIdentity(email=email)
            if email
            else services.ContactIdentity(email="ana@example.com", first_name="Ana")
        )
        return services.consent_ingest(identity=identity, decision=decision).event
    return services.consent_record(contact=contact, decision=decision).event


@pytest.fixture
def api(db: None) -> APIClient:
    """The web portal's API client (source web_portal)."""
    _, key = services.api_client_create(name="web-portal", sources=["web_portal"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def pending(policy: PolicyVersion) -> ConsentEvent:
    """Ana asked for the newsletter on the web portal: email_marketing is pending."""
    return record(None, "email_marketing", "pending")


@pytest.fixture
def confirmation(pending: ConsentEvent, django_capture_on_commit_callbacks: Any) -> LifecycleMessage:
    """The confirmation mail of Ana's pending opt-in, sent (to the locmem outbox)."""
    message = mail.message_queue(kind=LifecycleMessage.Kind.CONFIRMATION, event=pending)
    assert message is not None
    mail.message_send(message_pk=message.pk)
    message.refresh_from_db()
    return message


def path_of(url: str) -> str:
    return urlsplit(url).path


def confirm_path(message: LifecycleMessage) -> str:
    """The /c/<token> link in the mail's text, as the person would click it."""
    for word in message.body_text.split():
        if "/c/" in word:
            return path_of(word)
    raise AssertionError("no confirm link in the mail")


@pytest.fixture
def unsubscribe_path() -> Callable[..., str]:
    def make(contact: Contact, **kwargs: Any) -> str:
        return path_of(links.unsubscribe_url(contact=contact, **kwargs))

    return make


@pytest.fixture
def preferences_path() -> Callable[..., str]:
    def make(contact: Contact, **kwargs: Any) -> str:
        return path_of(links.preferences_url(contact=contact, **kwargs))

    return make


@pytest.fixture
def public() -> Client:
    """A browser that has never been here: checks CSRF as production does."""
    return Client(enforce_csrf_checks=True, HTTP_USER_AGENT="Mozilla/5.0 (Lifecycle test)")


def events_of(contact: Contact) -> list[ConsentEvent]:
    return list(ConsentEvent.objects.filter(contact=contact).order_by("id"))


# -- re-permission (test_repermission*.py) ------------------------------------------------------

CONFIRMED = {"double_opt_in_confirmed_at": "2026-04-01T10:00:00+00:00"}


@pytest.fixture
def people(policy: PolicyVersion) -> dict[str, Contact]:
    """Under 2026-03: Ana (newsletter and profiling), Ben (newsletter), Cem (newsletter, imported
    without his own evidence), Dora opted out. (An opt-in citing no version at all exists only in
    a ledger older than the rule that an opt-in names its version: the write path cannot make one.)"""
    ana = record(None, "email_marketing", "opted_in", evidence=CONFIRMED).contact
    record(ana, "profiling", "opted_in")
    ben = services.consent_ingest(
        identity=services.ContactIdentity(email="ben@example.com", first_name="Ben"),
        decision=services.ConsentDecision(
            purpose="email_marketing",
            status="opted_in",
            source="web_portal",
            occurred_at=timezone.now() - timedelta(days=30),
            idempotency_key="rp-ben",
            policy_version="2026-03",
            evidence=CONFIRMED,
        ),
    ).event.contact
    cem = services.consent_ingest(
        identity=services.ContactIdentity(email="cem@example.com"),
        decision=services.ConsentDecision(
            purpose="email_marketing",
            status="opted_in",
            source="import",
            occurred_at=timezone.now() - timedelta(days=30),
            idempotency_key="rp-cem",
            policy_version="2026-03",
            evidence={"legacy": True, "file": "zoho-export.csv", **CONFIRMED},
        ),
    ).event.contact
    dora = services.consent_ingest(
        identity=services.ContactIdentity(email="dora@example.com"),
        decision=services.ConsentDecision(
            purpose="email_marketing",
            status="opted_out",
            source="web_portal",
            occurred_at=timezone.now() - timedelta(days=30),
            idempotency_key="rp-dora",
        ),
    ).event.contact
    return {"ana": ana, "ben": ben, "cem": cem, "dora": dora}


@pytest.fixture
def new_policy(people: dict[str, Contact]) -> PolicyVersion:
    return services.policy_version_publish(
        label="2027-01", effective_at="2026-06-01", text="We now also use your data for surveys."
    )
