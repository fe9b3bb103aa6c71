"""The contact page's "Zoho proof" panel in a real headless Chromium (Debian's), as an officer reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.models import CampaignsObservation
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due
from tests.browser import log_in
from tests.sync.leads import person_with_records, push_all

SHOTS = Path("/tmp/helpers/shots/syncui")
PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_officer_sees_which_decisions_reached_zoho_and_why_one_did_not(
    page: Any, officer: Any, ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given: SMS reaches Zoho; the phone consent does not (the API user may not edit the field).
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK-news"]
    sim.fault("field_no_permission", field=PHONE, mode="silent")
    record = crm("rosa@example.com")
    ledger.change("rosa@example.com", "sms_marketing", "opted_in", zoho_id=record)
    contact = ledger.change("rosa@example.com", "phone_marketing", "opted_in", zoho_id=record)
    CampaignsObservation.objects.create(list_key="LK-news", email="rosa@example.com", status="unsub")
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)

    log_in(page, officer.username)
    page.goto(f"/contacts/{contact.pk}/")

    panel = page.locator("section.zoho-proof")
    assert "Zoho proof" in panel.locator("h2").inner_text()
    assert record in panel.locator(".crm-records").inner_text()
    sms = panel.locator("tr.purpose-sms_marketing")
    assert sms.get_attribute("data-status") == "verified"
    assert "Verified in Zoho" in sms.locator(".zoho-status").inner_text()
    phone = panel.locator("tr.purpose-phone_marketing")
    assert phone.get_attribute("data-status") == "discrepancy"
    assert "Accepted but not applied" in phone.inner_text()
    assert phone.locator(".readback").inner_text().startswith("false")  # what Zoho holds
    assert sms.locator(".readback").inner_text().startswith("true")
    assert "Unsubscribed since" in panel.locator(".campaigns-lists").inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "contact_detail_proof.png"), full_page=True)

    # The open discrepancy is one click away.
    phone.locator("a").first.click()
    assert "Accepted but not applied" in page.locator("h1").inner_text()


def test_an_officer_sees_the_lead_and_the_contact_of_one_person_each_with_its_status(
    page: Any, officer: Any, ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    # Given: a person who is a Contact and a Lead; a workflow resets the Lead's SMS consent.
    contact, contact_record, lead_id = person_with_records(sim, ledger, "lena@example.com", lead_reset=True)
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    log_in(page, officer.username)
    page.goto(f"/contacts/{contact.pk}/")

    panel = page.locator("section.zoho-proof")
    records = panel.locator(".crm-records").inner_text()
    assert f"Contacts {contact_record}" in records and f"Leads {lead_id}" in records
    sms = panel.locator("tr.purpose-sms_marketing")
    assert sms.get_attribute("data-status") == "discrepancy"
    status = sms.locator(".zoho-status")
    assert status.locator('[data-module="Contacts"]').get_attribute("data-status") == "verified"
    assert status.locator('[data-module="Leads"]').get_attribute("data-status") == "discrepancy"
    assert "Overwritten after our write" in sms.inner_text()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "contact_detail_proof_lead_and_contact.png"), full_page=True)
