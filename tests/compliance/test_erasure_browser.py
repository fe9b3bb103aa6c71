"""An admin erases a person in a real headless Chromium: the action's page, the result, the list
of erasures (no personal data), the contact page afterwards."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from compliance import services
from compliance.models import Contact
from compliance.services import ContactIdentity
from tests.browser import log_in

SCREENSHOTS = Path("/tmp")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_erases_a_person_and_sees_the_proof_kept_and_the_person_gone(
    page: Any, admin_user: Any
) -> None:
    policy = services.policy_version_publish(label="2026-03", effective_at="2026-03-01", text="notice")
    services.consent_ingest(
        identity=ContactIdentity(email="ottilie.brandwein@example.net", first_name="Ottilie"),
        decision=services.ConsentDecision(
            purpose="sms_marketing",
            status="opted_in",
            source="web_portal",
            occurred_at=timezone.now() - timedelta(days=3),
            idempotency_key="browser-erasure-1",
            policy_version=policy.label,
            ip_address="198.51.100.61",
        ),
    )
    contact = Contact.objects.get()
    log_in(page, admin_user.username)

    page.goto("/admin/compliance/contact/")
    page.check(f"input[name=_selected_action][value='{contact.pk}']")
    page.select_option("select[name=action]", "erase_contact")
    page.click("button[name=index]")
    assert page.locator("h1").inner_text() == f"Erase contact {contact.pk}"
    page.fill("textarea[name=reason]", "Ticket 4711, asked by email")
    page.screenshot(path=str(SCREENSHOTS / "erasure_confirm.png"), full_page=True)
    page.click(f"input[value='Erase contact {contact.pk}']")

    message = page.locator("ul.messagelist").inner_text()
    assert f"Contact {contact.pk} erased" in message and "still verify" in message
    page.screenshot(path=str(SCREENSHOTS / "erasure_done.png"), full_page=True)

    page.goto("/admin/compliance/erasurerequest/")
    listing = page.locator("#result_list").inner_text()
    assert "Ticket 4711" in listing and "user:" in listing
    assert "ottilie" not in page.content().lower()
    page.screenshot(path=str(SCREENSHOTS / "erasure_list.png"), full_page=True)

    page.goto(contact.get_absolute_url())
    html = page.content()
    assert "ottilie" not in html.lower() and "198.51.100.61" not in html
    assert "Personal data erased" in html
    page.screenshot(path=str(SCREENSHOTS / "erasure_contact.png"), full_page=True)
