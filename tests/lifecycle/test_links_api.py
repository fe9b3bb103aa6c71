"""GET /api/v1/contacts/{id}/links: what a sending system puts in a marketing mail."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from rest_framework.test import APIClient

from compliance import services
from compliance.models import AccessLog, ConsentEvent, ConsentState, Contact

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def sender(db: None, settings: Any) -> APIClient:
    settings.LIFECYCLE_UNSUBSCRIBE_MAILTO = "unsubscribe@example.com"
    _, key = services.api_client_create(name="campaign-sender", sources=[], scopes=["links:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_it_gives_the_urls_and_the_rfc_8058_headers(sender: APIClient, pending: ConsentEvent) -> None:
    contact = pending.contact

    response = sender.get(f"/api/v1/contacts/{contact.pk}/links", {"campaign": "CK-9"})

    assert response.status_code == 200
    body = response.json()
    assert body["unsubscribe_url"].startswith("http://testserver/u/")
    assert set(body["unsubscribe_urls"]) == {
        "email_marketing",
        "sms_marketing",
        "phone_marketing",
        "profiling",
        "third_party_sharing",
    }
    assert body["preferences_url"].startswith("http://testserver/p/")
    assert body["headers"] == {
        "List-Unsubscribe": f"<{body['unsubscribe_url']}>, <mailto:unsubscribe@example.com?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert "ana@example.com" not in response.content.decode()
    # the read is in the access log
    entry = AccessLog.objects.get()
    assert (entry.kind, entry.api_client is not None) == ("export", True)


def test_the_links_it_gives_work_with_one_click(
    sender: APIClient, pending: ConsentEvent, public: Client
) -> None:
    contact = pending.contact
    body = sender.get(f"/api/v1/contacts/{contact.pk}/links", {"campaign": "CK-9"}).json()

    response = public.post(
        urlsplit(body["headers"]["List-Unsubscribe"][1:].split(">")[0]).path,
        "List-Unsubscribe=One-Click",
        content_type=FORM,
    )

    assert response.status_code == 200
    state = ConsentState.objects.get(contact=contact, purpose__code="email_marketing")
    assert state.status == "opted_out"
    assert state.event.evidence["campaign_id"] == "CK-9"  # type: ignore[union-attr]


def test_it_answers_404_for_an_unknown_contact_and_refuses_a_reader_without_links_read(
    sender: APIClient, db: None
) -> None:
    _, key = services.api_client_create(name="reader", sources=[], scopes=["contacts:read"])
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    contact = Contact.objects.create(email="x@example.com")

    assert sender.get("/api/v1/contacts/999999/links").status_code == 404
    assert reader.get(f"/api/v1/contacts/{contact.pk}/links").status_code == 403
