"""An admin erases a person from the contact page in a real headless Chromium: a legal hold set
there refuses it (and says so), lifted, then the confirmation and the erased contact's page."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from compliance import services
from compliance.models import Contact, ErasureRequest, LegalHold
from compliance.services import ContactIdentity
from tests.browser import log_in

SCREENSHOTS = Path("/tmp")
EMAIL = "philippa.oyelaran@example.net"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_holds_then_erases_a_person_from_the_contact_page(page: Any, admin_user: Any) -> None:
    policy = services.policy_version_publish(label="2026-03", effective_at="2026-03-01", text="notice")
    for key, purpose in (("pb-1", "sms_marketing"), ("pb-2", "profiling")):
        services.consent_ingest(
            identity=ContactIdentity(email=EMAIL, first_name="Philippa", last_name="Oyelaran"),
            decision=services.ConsentDecision(
                purpose=purpose,
                status="opted_in",
                source="web_portal",
                occurred_at=timezone.now() - timedelta(days=3),
                idempotency_key=key,
                policy_version=policy.label,
                ip_address="198.51.100.62",
            ),
        )
    contact = Contact.objects.get()
    log_in(page, admin_user.username)

    # A legal hold, set on the contact page with its reason.
    page.goto(contact.get_absolute_url())
    page.fill("#erasure textarea[name=reason]", "Court case 2026-17")
    page.click("button:has-text('Set a legal hold')")
    hold = LegalHold.objects.get(contact=contact)
    assert f"Legal hold {hold.pk} set" in page.locator("ul.messages").inner_text()
    assert "Court case 2026-17" in page.locator("#erasure").inner_text()
    page.locator("#erasure").screenshot(path=str(SCREENSHOTS / "erasure_hold_set.png"))

    # "Erase this person": the confirmation names the hold and offers no button.
    page.click("text=Erase this person…")
    refusal = page.locator(".legal-hold-refusal").inner_text()
    assert "cannot be erased" in refusal and f"Legal hold {hold.pk}: Court case 2026-17" in refusal
    assert page.locator("button:has-text('Erase contact')").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "erasure_hold_refused.png"), full_page=True)

    # Lifted, the erasure goes ahead after the confirmation.
    page.goto(contact.get_absolute_url())
    page.click(f"button:has-text('Lift legal hold {hold.pk}')")
    assert "The contact may be erased now." in page.locator("ul.messages").inner_text()
    page.click("text=Erase this person…")
    goes = page.locator("section.goes").inner_text()
    kept = page.locator("section.kept").inner_text()
    assert EMAIL in goes and "2 consent events" in kept and "profiling, sms_marketing" in kept
    page.fill("textarea[name=reason]", "Ticket 4711, asked by email")
    page.screenshot(path=str(SCREENSHOTS / "erasure_page_confirm.png"), full_page=True)
    page.click(f"button:has-text('Erase contact {contact.pk}')")

    # The erased contact's page: the proof kept, the person gone, nothing to record.
    page.wait_for_url(f"**{contact.get_absolute_url()}")
    assert f"Contact {contact.pk} erased" in page.locator("ul.messages").inner_text()
    proof = page.locator("#erasure").inner_text()
    assert "This person is erased" in proof and "Ticket 4711, asked by email" in proof
    html = page.content()
    assert EMAIL not in html and "Philippa" not in html and "198.51.100.62" not in html
    for gone in ("Record a phone request", "Record a correction", "Erase this person", "Set a legal hold"):
        assert page.get_by_text(gone).count() == 0
    history = page.locator("table.events").inner_text()
    assert "sms_marketing" in history and "profiling" in history and "2026-03" in history
    page.screenshot(path=str(SCREENSHOTS / "erasure_page_erased.png"), full_page=True)

    # Its recording pages refuse, even reached by hand.
    page.goto(f"/contacts/{contact.pk}/correction/")
    assert "Nothing was recorded" in page.locator("h1").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "erasure_page_refusal.png"), full_page=True)

    # The list of erasures links to the proof.
    erasure = ErasureRequest.objects.get(contact=contact)
    page.goto("/admin/compliance/erasurerequest/")
    page.click(f"#result_list a:has-text('contact {contact.pk}')")
    page.wait_for_url(f"**{contact.get_absolute_url()}")
    request_row = page.locator("#erasure dt:has-text('Erasure request') + dd").inner_text()
    assert request_row == f"{erasure.pk} (done)"
