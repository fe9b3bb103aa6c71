"""Proof per purpose (sync.proof): the contact page's "Zoho proof" panel and each purpose's Zoho
status in GET /api/v1/contacts/{id}/consents, registered through compliance.panels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from compliance import services
from sync.models import CampaignsObservation
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def push_all(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)


def reader() -> APIClient:
    _, key = services.api_client_create(name="reader", sources=[], scopes=["contacts:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def zoho_of(client: APIClient, contact_id: int) -> dict[str, Any]:
    answer = client.get(f"/api/v1/contacts/{contact_id}/consents")
    assert answer.status_code == 200, answer.content
    return {s["purpose"]: s["zoho"] for s in answer.json()["states"]}


def test_the_api_gives_each_purpose_s_zoho_status_pending_then_verified_or_differing(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    sim.fault(
        "field_no_permission", field="Data_Processing_Basis_Details.Contact_Through_Phone", mode="silent"
    )
    record = crm("ana@example.com")
    ledger.change("ana@example.com", "sms_marketing", "opted_in", zoho_id=record)
    contact = ledger.change("ana@example.com", "phone_marketing", "opted_in", zoho_id=record)
    client = reader()

    before = zoho_of(client, contact.pk)
    assert before["sms_marketing"]["status"] == "pending" and before["sms_marketing"]["verified_at"] is None
    assert before["sms_marketing"]["record_ids"] == [record]

    push_all(zoho)
    assert zoho_of(client, contact.pk)["sms_marketing"]["status"] == "pending"  # pushed, not read back
    pushes_verify_due(zoho=zoho, ignore_delay=True)

    after = zoho_of(client, contact.pk)
    assert after["sms_marketing"]["status"] == "verified" and after["sms_marketing"]["verified_at"]
    assert after["sms_marketing"]["discrepancy"] is None
    phone = after["phone_marketing"]
    assert phone["status"] == "discrepancy"
    assert phone["discrepancy"]["kind"] == "not_applied"
    assert phone["discrepancy"]["crm_field"] == "Data_Processing_Basis_Details.Contact_Through_Phone"


def test_the_contact_page_shows_the_zoho_proof_per_purpose(
    ledger: Any, crm: Any, zoho: Any, engine_settings: Any, client_for: Any, officer: Any
) -> None:
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1"]
    record = crm("bea@example.com")
    contact = ledger.change("bea@example.com", "sms_marketing", "opted_in", zoho_id=record)
    CampaignsObservation.objects.create(list_key="LK1", email="bea@example.com", status="hard_bounce")
    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)

    page = client_for(officer).get(reverse("compliance:contact_detail", args=[contact.pk]))

    html = page.content.decode()
    assert "Zoho proof" in html
    panel = page.context["panels"][0].context["proof"]
    (sms,) = panel.purposes
    assert (sms.code, sms.status, sms.fields) == ("sms_marketing", "verified", ["SMS_Opt_In"])
    assert sms.readback == {"SMS_Opt_In": True}
    assert 'data-status="verified"' in html and "Verified in Zoho" in html
    assert f"<code>{record}</code>" in html
    assert "Hard bounce since" in html
    # Officers may download reports: the evidence pack is offered, through the reports app's URL.
    assert reverse("reports:report_request", args=["evidence"]) in html


def test_the_openapi_schema_describes_the_zoho_status() -> None:
    schema = SchemaGenerator().get_schema(public=True)
    components = schema["components"]["schemas"]
    zoho = components["ConsentStateStatus"]["properties"]["zoho"]
    assert zoho["allOf"] == [{"$ref": "#/components/schemas/ZohoStatus"}] and zoho["nullable"]
    status = components["ZohoStatus"]["properties"]
    assert set(status) == {"status", "verified_at", "pushed_at", "record_ids", "discrepancy"}
    assert components["ZohoStatusStatusEnum"]["enum"] == ["pending", "verified", "discrepancy", "not_synced"]
    assert set(components["ZohoDiscrepancy"]["properties"]) == {"id", "kind", "crm_field", "opened_at"}


def test_compliance_never_imports_the_sync() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "compliance").rglob("*.py")
        if "import sync" in path.read_text() or "from sync" in path.read_text()
    ]
    assert offenders == []


def test_the_panel_s_evidence_pack_button_asks_the_reports_app_for_this_person_s_pack(
    ledger: Any, client_for: Any, officer: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from reports.models import Report

    contact = ledger.change("eve@example.com", "sms_marketing", "opted_in")
    client = client_for(officer)
    page = client.get(reverse("compliance:contact_detail", args=[contact.pk])).content.decode()
    assert f'name="evidence-contact" value="{contact.pk}"' in page

    with django_capture_on_commit_callbacks(execute=False):
        answer = client.post(
            reverse("reports:report_request", args=["evidence"]), {"evidence-contact": contact.pk}
        )

    report = Report.objects.get()
    assert answer.status_code == 302 and report.kind == "evidence"
    assert report.scope == {"contact": contact.pk}
