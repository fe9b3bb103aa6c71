"""Recording at the desk in a real headless Chromium (tests/browser.py's): an officer's phone
request and an admin's correction with a file, each through its confirmation step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from compliance import services
from compliance.models import ConsentEvent
from tests.browser import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(os.environ.get("SCREENSHOT_DIR", "/tmp/consent-desk-shots"))
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(autouse=True)
def evidence_dir(settings: Any, tmp_path: Path) -> Path:
    settings.CORRECTION_EVIDENCE_DIR = tmp_path / "evidence"
    return Path(settings.CORRECTION_EVIDENCE_DIR)


@pytest.fixture
def jonas(decide: Any) -> Any:
    identity = services.ContactIdentity(email="jonas@example.com", first_name="Jonas", last_name="Weber")
    services.consent_ingest(identity=identity, decision=decide(purpose="sms_marketing", frequency="weekly"))
    return services.contact_resolve(identity=identity)


def test_an_officer_records_a_phone_request_through_the_confirmation_step(page, officer, jonas, policy):
    log_in(page, officer.username)
    page.goto(jonas.get_absolute_url())
    page.click("text=Record a phone request")
    page.wait_for_url("**/phone-request/")
    assert page.locator("h1").inner_text().startswith("Record a phone request")

    # First a mistake: an opt-in without the policy read out is refused beside its field.
    page.select_option("select[name=purpose]", "phone_marketing")
    page.select_option("select[name=status]", "opted_in")
    page.fill("textarea[name=note]", "Called: wants offers by phone, monthly.")
    page.click("button:has-text('Review before recording')")
    error = page.locator(".has-error:has(select[name=policy_version]) .field-errors")
    assert "must name the policy version" in error.inner_text()
    shot(page, "phone_request_error")

    page.select_option("select[name=policy_version]", policy.label)
    page.select_option("select[name=frequency]", "monthly")
    page.click("button:has-text('Review before recording')")
    assert page.locator("#resulting-status").inner_text() == "Opted in"
    assert "No decision yet" in page.locator(".outcome").inner_text()
    assert not ConsentEvent.objects.filter(purpose__code="phone_marketing").exists()
    shot(page, "phone_request_confirm")

    page.click("button:has-text('Record it')")

    page.wait_for_url(f"**{jonas.get_absolute_url()}")
    assert page.locator("h1").inner_text() == "Jonas Weber"
    assert "Phone request recorded" in page.locator(".messages").inner_text()
    event = ConsentEvent.objects.get(purpose__code="phone_marketing")
    assert (event.source, event.actor, event.frequency) == (
        "customer_service",
        f"user:{officer.username}",
        "monthly",
    )
    assert "Customer service (phone)" in page.locator("table.events tbody tr").first.inner_text()
    shot(page, "contact_after_phone_request")


def test_an_admin_records_a_correction_with_a_file(page, admin_user, jonas, evidence_dir, tmp_path):
    letter = tmp_path / "withdrawal-letter.pdf"
    letter.write_bytes(PDF)
    log_in(page, admin_user.username)
    page.goto(jonas.get_absolute_url())
    page.click("text=Record a correction")
    page.wait_for_url("**/correction/")

    # A file of a type not allowed is refused with a clear message, and nothing is kept.
    bad = tmp_path / "letter.exe"
    bad.write_bytes(b"MZ\x90\x00")
    page.select_option("select[name=purpose]", "sms_marketing")
    page.select_option("select[name=status]", "opted_out")
    page.fill("textarea[name=reason]", "Signed letter of 2 December: he withdrew SMS consent.")
    page.set_input_files("input[name=evidence_file]", str(bad))
    page.click("button:has-text('Review before recording')")
    assert "Files of type .exe are not allowed" in page.locator(".field-errors").inner_text()
    shot(page, "correction_error")

    page.set_input_files("input[name=evidence_file]", str(letter))
    page.click("button:has-text('Review before recording')")
    confirm = page.locator(".confirm").inner_text()
    assert "withdrawal-letter.pdf" in confirm and "Admin correction" in confirm
    assert page.locator("#resulting-status").inner_text() == "Opted out"
    shot(page, "correction_confirm")

    page.click("button:has-text('Record it')")

    assert "Correction recorded" in page.locator(".messages").inner_text()
    event = ConsentEvent.objects.get(source="admin")
    assert event.status == "opted_out" and event.evidence["file"]["name"] == "withdrawal-letter.pdf"
    assert services.correction_evidence_path(event.evidence["file"]["sha256"]).read_bytes() == PDF
    shot(page, "contact_after_correction")


def test_an_officer_filters_and_sorts_a_history(page, officer, jonas, decide):
    services.consent_ingest(
        identity=services.ContactIdentity(email="jonas@example.com"),
        decision=decide(purpose="profiling"),
    )
    log_in(page, officer.username)
    page.goto("/contacts/?q=Weber&sort=email")
    assert "Jonas Weber" in page.locator("table.data tbody").inner_text()
    shot(page, "contact_search")
    page.goto(jonas.get_absolute_url())
    page.click("text=Filter and export the history")
    page.wait_for_url("**/history/")
    page.select_option("select[name=purpose]", "profiling")
    page.click("button:has-text('Filter')")
    page.wait_for_url("**purpose=profiling**")

    rows = page.locator("table.events tbody tr")
    assert rows.count() == 1 and "profiling" in rows.first.inner_text()
    with page.expect_download() as download:
        page.click(".filters .export >> text=CSV")
    assert download.value.suggested_filename == f"contact-{jonas.pk}-history.csv"
    shot(page, "contact_history")
