"""Ledger fixtures: a published policy, decisions, and an API client that sends a key."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.settings import api_settings
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from compliance import services
from compliance.models import ApiClient, PolicyVersion

_keys = itertools.count(1)


@pytest.fixture
def policy(db: None) -> PolicyVersion:
    return services.policy_version_publish(
        label="2026-03", effective_at="2026-03-01", text="We use your data to send you offers you chose."
    )


@pytest.fixture
def mobile_app(db: None) -> tuple[ApiClient, str]:
    return services.api_client_create(name="mobile-app", sources=["mobile_app", "web_portal"])


@pytest.fixture
def api(mobile_app: tuple[ApiClient, str]) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {mobile_app[1]}")
    return client


@pytest.fixture
def decide(policy: PolicyVersion) -> Callable[..., services.ConsentDecision]:
    def make(**overrides: Any) -> services.ConsentDecision:
        values: dict[str, Any] = {
            "purpose": "sms_marketing",
            "status": "opted_in",
            "source": "mobile_app",
            "occurred_at": timezone.now() - timedelta(minutes=1),
            "idempotency_key": f"key-{next(_keys)}",
            "policy_version": policy.label,
            "ip_address": "203.0.113.7",
            "user_agent": "ShopApp/5.2 iOS",
        }
        values.update(overrides)
        return services.ConsentDecision(**values)

    return make


@pytest.fixture
def event_body(policy: PolicyVersion) -> Callable[..., dict[str, Any]]:
    """A request body as the mobile app sends it (DESIGN's example)."""

    def make(**overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "contact": {
                "email": "ana@example.com",
                "phone": "+4915112345678",
                "app_user_id": "u-1842",
                "first_name": "Ana",
                "last_name": "Ruiz",
                "zoho_id": "5725767000000412001",
            },
            "purpose": "sms_marketing",
            "status": "opted_out",
            "frequency": None,
            "source": "mobile_app",
            "ip_address": "203.0.113.7",
            "user_agent": "ShopApp/5.2 iOS",
            "policy_version": policy.label,
            "occurred_at": (timezone.now() - timedelta(minutes=5)).isoformat(),
            "idempotency_key": f"idem-{next(_keys)}",
        }
        body.update(overrides)
        return body

    return make


@pytest.fixture
def throttle_rates(settings: Any) -> Iterator[Callable[..., None]]:
    """Set DRF throttle rates for one test, e.g. `throttle_rates(api_read="2/min")`; the
    counters start empty, and the rates and counters are put back after."""
    original = settings.REST_FRAMEWORK

    def apply(rest_framework: dict[str, Any]) -> None:
        settings.REST_FRAMEWORK = rest_framework
        api_settings.reload()
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        cache.clear()

    yield lambda **rates: apply(
        {**original, "DEFAULT_THROTTLE_RATES": {**original["DEFAULT_THROTTLE_RATES"], **rates}}
    )
    apply(original)


@pytest.fixture
def same_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each new contact's secret drawn from its identifiers, not at random: for tests that write
    the same items twice (the batch and the one-by-one path) and compare the two ledgers, whose
    commitments (and so hashes) depend on the secrets."""
    import hashlib

    from compliance.services import consent_batch, contacts

    original = contacts.contact_new

    def contact_new(identity: services.ContactIdentity) -> Any:
        contact = original(identity)
        contact.secret = hashlib.sha256(repr(identity).encode()).digest()
        return contact

    monkeypatch.setattr(contacts, "contact_new", contact_new)
    monkeypatch.setattr(consent_batch, "contact_new", contact_new)


@pytest.fixture
def evidence_in_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every evidence key taken for non-personal, so it stays in the event (and its hash): for
    tests of how the hash forms write evidence."""
    from compliance import personal

    class Everything:
        def __contains__(self, key: object) -> bool:
            return True

    monkeypatch.setattr(personal, "NON_PERSONAL_EVIDENCE_KEYS", Everything())
