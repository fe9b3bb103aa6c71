"""Recording at the desk: an officer's phone request and an admin's correction, each through a
form, a confirmation step showing the outcome, and the one write path."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from django.core import signing
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from compliance import services
from compliance.models import ConsentEvent, ConsentState, Contact, OutboxEntry
from compliance.views import DESK_SALT

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def evidence_dir(settings: Any, tmp_path: Path) -> Path:
    settings.CORRECTION_EVIDENCE_DIR = tmp_path / "evidence"
    return Path(settings.CORRECTION_EVIDENCE_DIR)


@pytest.fixture
def maria(decide: Any) -> Contact:
    identity = services.ContactIdentity(email="maria@example.com", first_name="Maria", last_name="Okafor")
    services.consent_ingest(identity=identity, decision=decide(purpose="sms_marketing", frequency="weekly"))
    return services.contact_resolve(identity=identity)


def phone_url(contact: Contact) -> str:
    return reverse("compliance:contact_phone_request", args=[contact.pk])


def correction_url(contact: Contact) -> str:
    return reverse("compliance:contact_correction", args=[contact.pk])


def payload_of(response: Any) -> str:
    match = re.search(r'name="payload" value="([^"]+)"', response.content.decode())
    assert match, "no confirmation payload on the page"
    return match.group(1)


def field_errors(response: Any) -> dict[str, list[str]]:
    return {name: list(errors) for name, errors in response.context["form"].errors.items()}


# --- A phone request ---------------------------------------------------------------------------


def test_an_officer_records_a_phone_request_after_seeing_its_outcome(client_for, officer, maria, policy):
    client = client_for(officer)
    events_before = ConsentEvent.objects.count()

    preview = client.post(
        phone_url(maria),
        {
            "purpose": "phone_marketing",
            "status": "opted_in",
            "frequency": "monthly",
            "policy_version": policy.label,
            "note": "Called in, wants monthly offers by phone.",
        },
    )

    assert preview.status_code == 200
    page = preview.content.decode()
    assert "Nothing is recorded yet" in page
    assert "No decision yet" in page and 'id="resulting-status">Opted in' in page
    assert ConsentEvent.objects.count() == events_before  # the preview writes nothing

    done = client.post(phone_url(maria), {"payload": payload_of(preview), "action": "confirm"})

    assert done.status_code == 302 and done["Location"] == maria.get_absolute_url()
    event = ConsentEvent.objects.get(contact=maria, purpose__code="phone_marketing")
    assert (event.status, event.frequency, event.source) == ("opted_in", "monthly", "customer_service")
    assert event.actor == f"user:{officer.username}" and event.actor_user == officer
    assert event.policy_version == policy
    assert event.reason == "Called in, wants monthly offers by phone."
    assert event.evidence == {"channel": "phone"}
    state = ConsentState.objects.get(contact=maria, purpose__code="phone_marketing")
    assert (state.status, state.event_id) == ("opted_in", event.pk)
    assert OutboxEntry.objects.filter(event=event).exists()  # the sync will push it
    landed = client.get(done["Location"])
    assert "Phone request recorded: phone_marketing is now “Opted in”" in landed.content.decode()


def test_a_withdrawal_by_phone_shows_the_change_from_the_current_state(client_for, officer, maria):
    preview = client_for(officer).post(
        phone_url(maria), {"purpose": "sms_marketing", "status": "opted_out", "note": "Stop the texts."}
    )

    page = preview.content.decode()
    assert re.search(r"Now</span><span class=\"badge badge-opted_in\">Opted in", page)
    assert 'id="resulting-status">Opted out' in page


def test_confirming_twice_records_once(client_for, officer, maria):
    client = client_for(officer)
    preview = client.post(
        phone_url(maria), {"purpose": "sms_marketing", "status": "opted_out", "note": "Stop."}
    )
    payload = payload_of(preview)

    first = client.post(phone_url(maria), {"payload": payload, "action": "confirm"})
    second = client.post(phone_url(maria), {"payload": payload, "action": "confirm"})

    assert first.status_code == second.status_code == 302
    assert ConsentEvent.objects.filter(contact=maria, status="opted_out").count() == 1
    assert "already" in client.get(second["Location"]).content.decode()


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"status": "opted_out", "note": "x"}, "purpose", "This field is required."),
        ({"purpose": "sms_marketing", "note": "x"}, "status", "This field is required."),
        ({"purpose": "sms_marketing", "status": "expired", "note": "x"}, "status", "Select a valid choice"),
        ({"purpose": "sms_marketing", "status": "opted_out"}, "note", "This field is required."),
        ({"purpose": "nonsense", "status": "opted_out", "note": "x"}, "purpose", "Select a valid choice"),
        (
            {"purpose": "sms_marketing", "status": "opted_out", "frequency": "weekly", "note": "x"},
            "frequency",
            "A frequency goes only with an opt-in.",
        ),
        (
            {"purpose": "sms_marketing", "status": "opted_in", "note": "x"},
            "policy_version",
            "An opt-in must name",
        ),
        (
            {"purpose": "sms_marketing", "status": "opted_in", "policy_version": "1999-01", "note": "x"},
            "policy_version",
            "Select a valid choice",
        ),
        # The ledger's own rules, shown beside the field they concern:
        ({"purpose": "profiling", "status": "pending", "note": "x"}, "status", "has no double opt-in"),
        (
            {"purpose": "email_marketing", "status": "opted_in", "policy_version": "2026-03", "note": "x"},
            "status",
            "requires double opt-in",
        ),
    ],
)
def test_bad_input_is_refused_beside_its_field_and_records_nothing(
    client_for, officer, maria, policy, form, field, message
):
    events_before = ConsentEvent.objects.count()

    response = client_for(officer).post(phone_url(maria), form)

    assert response.status_code == 400
    errors = field_errors(response)
    assert any(message in error for error in errors.get(field, [])), errors
    page = response.content.decode()
    assert 'class="field-errors"' in page and "nothing was recorded" in page
    assert 'name="payload"' not in page  # no confirmation offered
    assert ConsentEvent.objects.count() == events_before


def test_an_altered_or_foreign_confirmation_is_refused(client_for, officer, admin_user, maria):
    preview = client_for(officer).post(
        phone_url(maria), {"purpose": "sms_marketing", "status": "opted_out", "note": "Stop."}
    )
    payload = payload_of(preview)
    data = signing.loads(payload, salt=DESK_SALT)
    forged = signing.dumps({**data, "values": {**data["values"], "status": "opted_in"}}, salt="wrong")

    altered = client_for(officer).post(phone_url(maria), {"payload": forged, "action": "confirm"})
    other_user = client_for(admin_user).post(phone_url(maria), {"payload": payload, "action": "confirm"})

    assert altered.status_code == other_user.status_code == 400
    assert "expired or was altered" in altered.content.decode()
    assert not ConsentEvent.objects.filter(contact=maria, status="opted_out").exists()


def test_change_goes_back_to_the_form_filled_in(client_for, officer, maria):
    client = client_for(officer)
    preview = client.post(
        phone_url(maria), {"purpose": "sms_marketing", "status": "opted_out", "note": "Stop."}
    )

    back = client.post(phone_url(maria), {"payload": payload_of(preview), "action": "edit"})

    assert back.status_code == 200
    assert back.context["form"].initial["note"] == "Stop."
    assert back.context["form"].initial["status"] == "opted_out"
    assert not ConsentEvent.objects.filter(contact=maria, status="opted_out").exists()


def test_a_chain_that_moved_on_is_reported_and_nothing_is_recorded(
    client_for, officer, maria, decide, policy
):
    client = client_for(officer)
    # A DOI purpose: pending is allowed at preview; by confirmation the purpose changed its mind.
    preview = client.post(
        phone_url(maria), {"purpose": "email_marketing", "status": "pending", "note": "Asked."}
    )
    from compliance.models import Purpose

    purpose = Purpose.objects.get(code="email_marketing")
    purpose.double_opt_in_required = False
    purpose.save()  # (save, not update: processes that keep purposes in memory hear of it)

    refused = client.post(phone_url(maria), {"payload": payload_of(preview), "action": "confirm"})

    assert refused.status_code == 409
    assert "Nothing was recorded" in refused.content.decode()
    assert not ConsentEvent.objects.filter(contact=maria, purpose__code="email_marketing").exists()


# --- A correction ------------------------------------------------------------------------------


def test_an_admin_records_a_correction_with_an_evidence_file(client_for, admin_user, maria, evidence_dir):
    client = client_for(admin_user)
    upload = SimpleUploadedFile("signed-letter.pdf", PDF, content_type="application/pdf")

    preview = client.post(
        correction_url(maria),
        {
            "purpose": "sms_marketing",
            "status": "opted_out",
            "reason": "Letter of 2 Dec: she withdrew.",
            "evidence_file": upload,
        },
    )

    assert preview.status_code == 200
    sha = hashlib.sha256(PDF).hexdigest()
    assert sha in preview.content.decode()
    kept = evidence_dir / sha[:2] / sha
    assert not kept.exists()  # staged only, until confirmed
    assert not ConsentEvent.objects.filter(source="admin").exists()

    done = client.post(correction_url(maria), {"payload": payload_of(preview), "action": "confirm"})

    assert done.status_code == 302
    event = ConsentEvent.objects.get(source="admin")
    assert (event.status, event.reason) == ("opted_out", "Letter of 2 Dec: she withdrew.")
    assert event.actor == f"user:{admin_user.username}"
    assert event.evidence == {
        "correction": True,
        "file": {
            "sha256": sha,
            "name": "signed-letter.pdf",
            "size": len(PDF),
            "content_type": "application/pdf",
        },
    }
    assert kept.read_bytes() == PDF
    assert list((evidence_dir / "staging").iterdir()) == []


def test_a_correction_without_a_file_needs_only_a_reason(client_for, admin_user, maria):
    client = client_for(admin_user)
    preview = client.post(
        correction_url(maria),
        {"purpose": "sms_marketing", "status": "opted_out", "reason": "Mis-keyed import."},
    )
    client.post(correction_url(maria), {"payload": payload_of(preview), "action": "confirm"})

    assert ConsentEvent.objects.get(source="admin").evidence == {"correction": True}


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("huge.pdf", b"%PDF-" + b"0" * (10 * 1024 * 1024), "may be at most 10 MB"),
        ("tool.exe", b"MZ\x90\x00", "Files of type .exe are not allowed"),
        ("fake.pdf", b"<html>not a pdf</html>", "The file's content is not .pdf"),
        ("note.txt", b"\x00\x01binary", "not plain text"),
        ("empty.png", b"", "empty"),
    ],
)
def test_an_evidence_file_too_large_or_of_a_wrong_type_is_refused_clearly(
    client_for, admin_user, maria, evidence_dir, name, content, message
):
    upload = SimpleUploadedFile(name, content)

    response = client_for(admin_user).post(
        correction_url(maria),
        {"purpose": "sms_marketing", "status": "opted_out", "reason": "Letter.", "evidence_file": upload},
    )

    assert response.status_code == 400
    assert any(message in error for error in field_errors(response)["evidence_file"]), field_errors(response)
    assert not ConsentEvent.objects.filter(source="admin").exists()
    assert not evidence_dir.exists() or not any(p.is_file() for p in evidence_dir.rglob("*"))


def test_a_file_of_exactly_10_mb_is_accepted(client_for, admin_user, maria):
    content = b"%PDF-" + b"0" * (10 * 1024 * 1024 - 5)
    response = client_for(admin_user).post(
        correction_url(maria),
        {
            "purpose": "sms_marketing",
            "status": "opted_out",
            "reason": "Letter.",
            "evidence_file": SimpleUploadedFile("letter.pdf", content),
        },
    )
    assert response.status_code == 200 and 'name="payload"' in response.content.decode()


def test_a_correction_needs_a_reason(client_for, admin_user, maria):
    response = client_for(admin_user).post(
        correction_url(maria), {"purpose": "sms_marketing", "status": "opted_out", "reason": "   "}
    )
    assert response.status_code == 400
    assert "reason" in field_errors(response)
    assert not ConsentEvent.objects.filter(source="admin").exists()


def test_the_file_is_removed_when_the_event_is_not_written(admin_user, maria, evidence_dir, monkeypatch):
    from compliance.services import corrections

    staged = services.correction_file_stage(upload=SimpleUploadedFile("letter.pdf", PDF))
    decision = services.correction_decision(
        purpose="sms_marketing",
        status="opted_out",
        frequency="",
        policy_version="",
        reason="Letter.",
        occurred_at=maria.created_at,
        idempotency_key="desk:test:1",
        evidence_file=staged,
    )

    def fail(**kwargs: Any) -> Any:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(corrections, "consent_record", fail)
    with pytest.raises(RuntimeError):
        services.consent_correct(
            contact=maria, decision=decision, actor_user=admin_user, evidence_file=staged
        )

    assert not services.correction_evidence_path(staged.sha256).exists()
    assert not ConsentEvent.objects.filter(source="admin").exists()


def test_a_file_kept_already_stays_when_a_second_correction_fails(
    admin_user, maria, evidence_dir, monkeypatch
):
    from compliance.services import corrections

    def correction(key: str) -> tuple[Any, Any]:
        staged = services.correction_file_stage(upload=SimpleUploadedFile("letter.pdf", PDF))
        decision = services.correction_decision(
            purpose="sms_marketing",
            status="opted_out",
            frequency="",
            policy_version="",
            reason="Letter.",
            occurred_at=maria.created_at,
            idempotency_key=key,
            evidence_file=staged,
        )
        return staged, decision

    staged, decision = correction("desk:test:a")
    services.consent_correct(contact=maria, decision=decision, actor_user=admin_user, evidence_file=staged)
    again, second = correction("desk:test:b")
    monkeypatch.setattr(corrections, "consent_record", lambda **kwargs: (_ for _ in ()).throw(RuntimeError()))
    with pytest.raises(RuntimeError):
        services.consent_correct(contact=maria, decision=second, actor_user=admin_user, evidence_file=again)

    assert services.correction_evidence_path(staged.sha256).read_bytes() == PDF  # the first event's file


def test_the_services_refuse_people_without_the_right(officer, maria):
    decision = services.correction_decision(
        purpose="sms_marketing",
        status="opted_out",
        frequency="",
        policy_version="",
        reason="x",
        occurred_at=maria.created_at,
        idempotency_key="desk:test:officer",
    )
    with pytest.raises(services.ConsentForbidden):
        services.consent_correct(contact=maria, decision=decision, actor_user=officer)
    assert not ConsentEvent.objects.filter(source="admin").exists()


# --- Who may -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "phone", "correction"),
    [("officer", 200, 403), ("admin_user", 200, 200), ("auditor", 403, 403), ("outsider", 403, 403)],
)
def test_officers_record_phone_requests_and_only_admins_corrections(
    request, client_for, maria, role, phone, correction
):
    client = client_for(request.getfixturevalue(role))

    assert client.get(phone_url(maria)).status_code == phone
    assert client.get(correction_url(maria)).status_code == correction
    refused = client.post(
        correction_url(maria), {"purpose": "sms_marketing", "status": "opted_out", "reason": "x"}
    )
    assert refused.status_code == (200 if correction == 200 else 403)


def test_the_contact_page_offers_each_role_its_own_actions(client_for, officer, admin_user, auditor, maria):
    def links(user: Any) -> tuple[bool, bool]:
        page = client_for(user).get(maria.get_absolute_url()).content.decode()
        return phone_url(maria) in page, correction_url(maria) in page

    assert links(officer) == (True, False)
    assert links(admin_user) == (True, True)
    assert links(auditor) == (False, False)
