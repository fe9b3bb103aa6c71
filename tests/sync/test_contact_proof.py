"""Proof per purpose (sync.proof): the contact page's "Zoho proof" panel and each purpose's Zoho
status in GET /api/v1/contacts/{id}/consents, registered through compliance.panels. Every linked
CRM record is listed with its module (a Lead as well as a Contact), each with its own status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from compliance import services
from sync.models import CampaignsObservation
from sync.proof import contact_proof
from sync.reconcile import reconcile
from sync.verify import pushes_verify_due
from tests.sync.leads import lead_converted, person_with_records, push_all

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


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


def test_a_person_with_a_lead_and_a_contact_has_each_record_listed_with_its_module_and_its_own_status(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any, client_for: Any, officer: Any
) -> None:
    contact, contact_record, lead_id = person_with_records(sim, ledger, "both@example.com", lead_reset=True)
    push_all(zoho)
    client = reader()

    pushed = zoho_of(client, contact.pk)["sms_marketing"]
    pushes_verify_due(zoho=zoho)
    after = zoho_of(client, contact.pk)["sms_marketing"]
    page = client_for(officer).get(reverse("compliance:contact_detail", args=[contact.pk]))

    assert pushed["record_ids"] == [contact_record, lead_id]
    assert [(r["module"], r["record_id"], r["status"]) for r in pushed["records"]] == [
        ("Contacts", contact_record, "pending"),
        ("Leads", lead_id, "pending"),
    ]
    # The Contact holds the opt-in; a workflow reset the Lead: the purpose is not verified.
    assert after["status"] == "discrepancy" and after["discrepancy"]["kind"] == "overwritten"
    contacts, leads = after["records"]
    assert (contacts["module"], contacts["status"]) == ("Contacts", "verified") and contacts["verified_at"]
    assert (leads["module"], leads["status"], leads["verified_at"]) == ("Leads", "discrepancy", None)
    html = page.content.decode()
    assert f"Contacts <code>{contact_record}</code>" in html and f"Leads <code>{lead_id}</code>" in html
    assert 'data-module="Leads" data-status="discrepancy"' in html


def test_a_contact_converted_from_a_lead_says_so(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any, client_for: Any, officer: Any
) -> None:
    contact, lead_id, contact_record = lead_converted(sim, ledger, zoho, "convert.me@example.com")
    reconcile(client=zoho, method="coql")  # the Lead is gone: its link moves to the Contact
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    (sms,) = contact_proof(contact=contact).purposes
    html = client_for(officer).get(reverse("compliance:contact_detail", args=[contact.pk])).content.decode()

    assert [(r.record.module, r.record.record_id, r.status) for r in sms.records] == [
        ("Contacts", contact_record, "verified")
    ]
    assert sms.status == "verified"
    assert f"Contacts <code>{contact_record}</code>" in html
    assert f"converted from Lead <code>{lead_id}</code>" in html


def test_the_openapi_schema_describes_the_zoho_status() -> None:
    schema = SchemaGenerator().get_schema(public=True)
    components = schema["components"]["schemas"]
    zoho = components["ConsentStateStatus"]["properties"]["zoho"]
    assert zoho["allOf"] == [{"$ref": "#/components/schemas/ZohoStatus"}] and zoho["nullable"]
    status = components["ZohoStatus"]["properties"]
    assert set(status) == {"status", "verified_at", "pushed_at", "record_ids", "records", "discrepancy"}
    record = components["ZohoRecordStatus"]["properties"]
    assert set(record) == {"module", "record_id", "status", "verified_at"}
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
