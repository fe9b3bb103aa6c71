"""Erasure at the desk (issue 14): "Erase this person" from the contact page, its confirmation,
legal holds set and lifted there, and an erased contact's page, which records nothing more."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compliance import services
from compliance.models import ConsentEvent, Contact, ErasureRequest, LegalHold

pytestmark = pytest.mark.django_db

EMAIL = "wendelin.quast@example.org"


@pytest.fixture
def wendelin(decide: Any) -> Contact:
    identity = services.ContactIdentity(email=EMAIL, first_name="Wendelin", last_name="Quast")
    services.consent_ingest(identity=identity, decision=decide(purpose="sms_marketing", frequency="weekly"))
    services.consent_ingest(identity=identity, decision=decide(purpose="profiling"))
    return services.contact_resolve(identity=identity)


def erase_url(contact: Contact) -> str:
    return reverse("compliance:contact_erase", args=[contact.pk])


def hold_url(contact: Contact) -> str:
    return reverse("compliance:contact_legal_hold_set", args=[contact.pk])


def lift_url(hold: LegalHold) -> str:
    return reverse("compliance:contact_legal_hold_lift", args=[hold.contact_id, hold.pk])


def _hold(contact: Contact, admin_user: Any, reason: str = "Court case 2026-17") -> LegalHold:
    return services.legal_hold_set(contact=contact, reason=reason, actor_user=admin_user)


# --- Who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["officer", "auditor", "outsider"])
def test_only_admins_erase_and_hold(request, client_for, admin_user, wendelin, role):
    client = client_for(request.getfixturevalue(role))
    hold = _hold(wendelin, admin_user)
    assert client.get(erase_url(wendelin)).status_code == 403
    assert client.post(erase_url(wendelin), {"reason": "ticket 1"}).status_code == 403
    assert client.post(hold_url(wendelin), {"reason": "audit"}).status_code == 403
    assert client.post(lift_url(hold)).status_code == 403
    assert Contact.objects.get(pk=wendelin.pk).erased_at is None
    assert LegalHold.objects.filter(contact=wendelin).count() == 1
    assert LegalHold.objects.get(pk=hold.pk).lifted_at is None
    page = client.get(wendelin.get_absolute_url())
    if role != "outsider":  # outsiders read no history at all
        assert "Erase this person" not in page.content.decode()
        assert "Set a legal hold" not in page.content.decode()


def test_anonymous_visitors_are_sent_to_log_in(client, wendelin, admin_user):
    hold = _hold(wendelin, admin_user)
    for response in (
        client.get(erase_url(wendelin)),
        client.post(erase_url(wendelin), {"reason": "x"}),
        client.post(hold_url(wendelin), {"reason": "x"}),
        client.post(lift_url(hold)),
    ):
        assert response.status_code == 302 and "/login/" in response["Location"]
    assert Contact.objects.get(pk=wendelin.pk).erased_at is None


def test_hold_pages_take_posts_only(client_for, admin_user, wendelin):
    client = client_for(admin_user)
    hold = _hold(wendelin, admin_user)
    assert client.get(hold_url(wendelin)).status_code == 405
    assert client.get(lift_url(hold)).status_code == 405


# --- The confirmation and the erasure ------------------------------------------------------------


def test_the_confirmation_says_what_goes_and_what_is_kept(client_for, admin_user, wendelin):
    client = client_for(admin_user)
    page = client.get(wendelin.get_absolute_url()).content.decode()
    assert f'href="{erase_url(wendelin)}"' in page
    response = client.get(erase_url(wendelin))
    assert response.status_code == 200
    html = response.content.decode()
    assert EMAIL in html  # the admin checks it is the right person
    assert "What goes" in html and "What is kept" in html
    assert "the personal values of 2 events" in html
    assert "profiling, sms_marketing" in html  # withdrawn first, so Zoho is told
    assert "channel <strong>Admin</strong>" in html
    assert Contact.objects.get(pk=wendelin.pk).erased_at is None  # nothing happens on GET


def test_an_erasure_needs_a_reason(client_for, admin_user, wendelin):
    response = client_for(admin_user).post(erase_url(wendelin), {"reason": "   "})
    assert response.status_code == 400
    assert response.context["form"].errors["reason"] == ["This field is required."]
    assert Contact.objects.get(pk=wendelin.pk).erased_at is None


def test_an_admin_erases_and_the_contact_page_shows_the_proof_kept(client_for, admin_user, wendelin):
    client = client_for(admin_user)
    response = client.post(erase_url(wendelin), {"reason": "Ticket 4711, asked by email"})
    assert response.status_code == 302 and response["Location"] == wendelin.get_absolute_url()
    erasure = ErasureRequest.objects.get(contact=wendelin)
    assert (erasure.channel, erasure.requested_by, erasure.reason, erasure.status) == (
        "admin",
        f"user:{admin_user.username}",
        "Ticket 4711, asked by email",
        "done",
    )
    page = client.get(wendelin.get_absolute_url())
    html = page.content.decode()
    assert EMAIL not in html and "Wendelin" not in html
    assert "This person is erased" in html and "Ticket 4711, asked by email" in html
    assert f"{erasure.events_kept} events" in html
    # The proof: every event with its purpose, status, source and policy version.
    assert html.count("sms_marketing") >= 2 and "profiling" in html and "2026-03" in html
    # Nothing to record any more, nor to erase or hold.
    for gone in ("Record a phone request", "Record a correction", "Erase this person", "Set a legal hold"):
        assert gone not in html
    # The page that lists erasures links to it (the admin's "Erasure requests").
    listing = client.get(reverse("admin:compliance_erasurerequest_changelist")).content.decode()
    assert f'href="{wendelin.get_absolute_url()}"' in listing and EMAIL not in listing
    # Erasing again: the page sends back to the proof, nothing new is recorded.
    again = client.post(erase_url(wendelin), {"reason": "twice"})
    assert again.status_code == 302
    assert ErasureRequest.objects.filter(contact=wendelin).count() == 1


def test_an_erased_contact_records_no_decision_nor_correction(
    client_for, admin_user, officer, wendelin, policy
):
    services.erasure_request(contact=wendelin, channel="admin", reason="ticket 9", actor_user=admin_user)
    events = ConsentEvent.objects.filter(contact=wendelin).count()
    decision = {"purpose": "sms_marketing", "status": "opted_in", "policy_version": policy.label}
    for user, view, extra in (
        (officer, "contact_phone_request", {"note": "called in"}),
        (admin_user, "contact_correction", {"reason": "typo"}),
        (admin_user, "contact_phone_request", {"note": "called in"}),
    ):
        client = client_for(user)
        url = reverse(f"compliance:{view}", args=[wendelin.pk])
        for response in (client.get(url), client.post(url, {**decision, **extra})):
            assert response.status_code == 409
            assert "Nothing was recorded" in response.content.decode()
            assert "records no more decisions" in response.content.decode()
        # Even a confirmation payload gets the same refusal.
        assert client.post(url, {"payload": "forged", "action": "confirm"}).status_code == 409
    assert ConsentEvent.objects.filter(contact=wendelin).count() == events
    held = client_for(admin_user).post(hold_url(wendelin), {"reason": "too late"})
    assert held.status_code == 409 and not LegalHold.objects.filter(contact=wendelin).exists()


# --- Legal holds ------------------------------------------------------------------------------


def test_a_legal_hold_set_on_the_contact_page_refuses_the_erasure(client_for, admin_user, wendelin):
    client = client_for(admin_user)
    response = client.post(hold_url(wendelin), {"reason": "Tax audit 2026"})
    assert response.status_code == 302
    hold = LegalHold.objects.get(contact=wendelin)
    assert (hold.reason, hold.set_by) == ("Tax audit 2026", f"user:{admin_user.username}")
    page = client.get(wendelin.get_absolute_url()).content.decode()
    assert f"Legal hold {hold.pk}" in page and "Tax audit 2026" in page

    confirm = client.get(erase_url(wendelin)).content.decode()
    assert "cannot be erased" in confirm and "Tax audit 2026" in confirm
    assert "Erase contact" not in confirm  # no button while it stands
    refused = client.post(erase_url(wendelin), {"reason": "ticket 5"})
    assert refused.status_code == 409
    assert f"Legal hold {hold.pk}: Tax audit 2026" in refused.content.decode()
    assert Contact.objects.get(pk=wendelin.pk).erased_at is None
    assert not ErasureRequest.objects.filter(contact=wendelin).exists()

    lifted = client.post(lift_url(hold))
    assert lifted.status_code == 302
    hold.refresh_from_db()
    assert hold.lifted_at is not None and hold.lifted_by == f"user:{admin_user.username}"
    assert client.post(erase_url(wendelin), {"reason": "ticket 5"}).status_code == 302
    assert Contact.objects.get(pk=wendelin.pk).erased_at is not None


def test_a_legal_hold_needs_a_reason(client_for, admin_user, wendelin):
    client = client_for(admin_user)
    response = client.post(hold_url(wendelin), {"reason": "  "}, follow=True)
    assert "No legal hold set: This field is required." in response.content.decode()
    assert not LegalHold.objects.filter(contact=wendelin).exists()


def test_a_hold_is_lifted_only_on_its_own_contact(client_for, admin_user, wendelin, decide):
    other_identity = services.ContactIdentity(email="other@example.org")
    services.consent_ingest(identity=other_identity, decision=decide())
    other = services.contact_resolve(identity=other_identity)
    hold = _hold(other, admin_user)
    url = reverse("compliance:contact_legal_hold_lift", args=[wendelin.pk, hold.pk])
    assert client_for(admin_user).post(url).status_code == 404
    assert LegalHold.objects.get(pk=hold.pk).lifted_at is None


# --- Stored files -----------------------------------------------------------------------------

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def _correct(contact: Contact, admin_user: Any, content: bytes, key: str) -> str:
    staged = services.correction_file_stage(upload=SimpleUploadedFile("letter.pdf", content))
    decision = services.correction_decision(
        purpose="sms_marketing",
        status="opted_out",
        frequency="",
        policy_version="",
        reason="Letter from the person.",
        occurred_at=contact.created_at,
        idempotency_key=key,
        evidence_file=staged,
    )
    services.consent_correct(contact=contact, decision=decision, actor_user=admin_user, evidence_file=staged)
    return staged.sha256


def test_the_erasure_deletes_the_correction_files_of_the_person(
    settings, tmp_path, admin_user, wendelin, decide, django_capture_on_commit_callbacks
):
    settings.CORRECTION_EVIDENCE_DIR = tmp_path / "evidence"
    own = _correct(wendelin, admin_user, PDF + b"% Wendelin's letter\n", "desk:erase:1")
    identity = services.ContactIdentity(email="someone.else@example.org")
    services.consent_ingest(identity=identity, decision=decide())
    other = services.contact_resolve(identity=identity)
    shared = _correct(other, admin_user, PDF, "desk:erase:2")
    assert _correct(wendelin, admin_user, PDF, "desk:erase:3") == shared  # the same file for both
    with django_capture_on_commit_callbacks(execute=True):
        services.erasure_request(contact=wendelin, channel="admin", reason="ticket 12", actor_user=admin_user)
    assert not services.correction_evidence_path(own).exists()
    assert services.correction_evidence_path(shared).read_bytes() == PDF  # another contact's evidence too
    # The proof that a file was given stays in the events.
    assert ConsentEvent.objects.filter(contact=wendelin, evidence__file__sha256=own).exists()


def test_the_daily_job_deletes_the_correction_files_an_erasure_missed(
    settings, tmp_path, admin_user, wendelin, decide
):
    from compliance.tasks import retention_erase

    settings.CORRECTION_EVIDENCE_DIR = tmp_path / "evidence"
    own = _correct(wendelin, admin_user, PDF + b"% Wendelin's letter\n", "desk:sweep:1")
    identity = services.ContactIdentity(email="someone.else@example.org")
    services.consent_ingest(identity=identity, decision=decide())
    shared = _correct(services.contact_resolve(identity=identity), admin_user, PDF, "desk:sweep:2")
    assert _correct(wendelin, admin_user, PDF, "desk:sweep:3") == shared
    # Erased, but the process died before what follows the commit ran.
    services.erasure_request(contact=wendelin, channel="admin", reason="ticket 13", actor_user=admin_user)
    assert services.correction_evidence_path(own).exists()

    assert retention_erase() == 0  # nobody is past retention; the sweep runs all the same
    assert not services.correction_evidence_path(own).exists()
    assert services.correction_evidence_path(shared).read_bytes() == PDF  # still another's evidence


def test_the_admin_sets_a_legal_hold_with_a_reason_and_lifts_it(client_for, admin_user, wendelin):
    client = client_for(admin_user)
    add = reverse("admin:compliance_legalhold_add")

    refused = client.post(add, {"contact": wendelin.pk, "reason": ""})
    assert refused.status_code == 200 and "This field is required." in refused.content.decode()
    assert not LegalHold.objects.exists()

    assert client.post(add, {"contact": wendelin.pk, "reason": "Tax audit 2026"}).status_code == 302
    hold = LegalHold.objects.get()
    assert (hold.contact_id, hold.reason, hold.lifted_at) == (wendelin.pk, "Tax audit 2026", None)
    assert admin_user.username in hold.set_by
    with pytest.raises(services.LegalHoldActive):
        services.erasure_request(contact=wendelin, channel="admin", actor_user=admin_user)

    changelist = reverse("admin:compliance_legalhold_changelist")
    lifted = client.post(changelist, {"action": "lift_holds", "_selected_action": [hold.pk]}, follow=True)
    assert "1 legal holds lifted." in lifted.content.decode()
    hold.refresh_from_db()
    assert hold.lifted_at is not None and admin_user.username in hold.lifted_by
    assert LegalHold.objects.count() == 1, "a hold is lifted, never deleted"


def test_the_contact_admins_erase_action_asks_a_reason_then_erases(client_for, admin_user, wendelin):
    client = client_for(admin_user)
    changelist = reverse("admin:compliance_contact_changelist")
    picked = {"action": "erase_contact", "_selected_action": [wendelin.pk]}

    asked = client.post(changelist, picked)
    assert asked.status_code == 200 and not ErasureRequest.objects.exists()  # the form, first

    done = client.post(changelist, {**picked, "apply": "1", "reason": "Ticket 88, by letter"}, follow=True)
    erasure = ErasureRequest.objects.get(contact=wendelin)
    assert (erasure.channel, erasure.reason, erasure.status) == ("admin", "Ticket 88, by letter", "done")
    assert Contact.objects.get(pk=wendelin.pk).email is None
    assert EMAIL not in done.content.decode()
