"""An admin sets up an API client's webhook in Django admin and reads its deliveries and attempts
(headless Chromium, Debian's)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from compliance import services
from sync.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.browser import log_in

SHOTS = Path("/tmp/helpers/shots/syncui")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_gives_an_api_client_a_webhook_and_reads_every_attempt(
    page: Any, admin_user: Any, ledger: Any
) -> None:
    client, _ = services.api_client_create(name="mobile-app", sources=["mobile_app"])
    SHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, admin_user.username)

    page.goto("/admin/sync/webhookendpoint/add/")
    page.select_option("select[name=api_client]", label=str(client))
    page.fill("input[name=url]", "https://app.example.com/hooks/consent")
    page.click("input[name=_continue]")

    endpoint = WebhookEndpoint.objects.get()
    assert (endpoint.api_client, endpoint.url, endpoint.is_active) == (
        client,
        "https://app.example.com/hooks/consent",
        True,
    )
    assert len(endpoint.secret) == 64
    assert endpoint.secret in page.locator(".field-secret").inner_text()  # to give to the app's developers
    page.screenshot(path=str(SHOTS / "admin_webhook_endpoint.png"), full_page=True)

    event = ledger.change("ana@example.com", "sms_marketing", "opted_in")
    delivery = WebhookDelivery.objects.create(
        endpoint=endpoint,
        event=event.events.get(),
        outcome="verified",
        payload={"type": "consent.verified"},
        attempts=1,
    )
    WebhookAttempt.objects.create(
        delivery=delivery, number=1, status="error", response_code=503, error="HTTP 503: try later",
        started_at=delivery.created_at,
    )  # fmt: skip
    page.goto(f"/admin/sync/webhookdelivery/{delivery.pk}/change/")
    assert "HTTP 503: try later" in page.content()
    assert page.locator("input[name=_save]").count() == 0  # evidence: read only
    page.screenshot(path=str(SHOTS / "admin_webhook_delivery.png"), full_page=True)
