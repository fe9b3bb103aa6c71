"""Issue 14, "Keep the objection": a re-import cannot quietly put an erased person back into
marketing. For the CSV import (`manage.py import_consent_csv`) and the Zoho import
(`manage.py import_zoho_consent`, against zohosim over real HTTP), on PostgreSQL: a row naming
an erased person's address or number, with an opt-in, is recorded (the ledger keeps what the
person did), but its contact is held by the suppression "Erased before: do not contact" and the
CRM projection gives it no consent; a contact of an address never erased is not held."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from compliance import services
from compliance.models import (
    ConsentEvent,
    ConsentState,
    Contact,
    ErasedIdentifier,
    ErasureRequest,
    PolicyVersion,
    Suppression,
)
from compliance.services import ContactIdentity
from compliance.verification import ledger_verify
from sync.import_models import ImportRun
from sync.projection import active_mappings, project, to_crm_record
from tests.compliance import conftest as compliance_fixtures
from tests.sync import test_import_zoho as zoho_import_tests

pytestmark = pytest.mark.django_db

EMAIL = "quillon.vandersnoot@example.net"
PHONE = "+4915198765432"
NEVER_ERASED = "ottilie.neverhere@example.net"
NEVER_ERASED_PHONE = "+4915112340000"
MARKETING = {"email_marketing", "sms_marketing"}
# The Zoho import's tests' CRM consent object and fixtures: a policy in force before the legacy
# consent dates, zohosim's settings for the import.
LEGACY_EMAIL = zoho_import_tests.LEGACY_EMAIL
policy = zoho_import_tests.policy
import_settings = zoho_import_tests.import_settings


# The compliance tests' decisions (under the policy above).
decide = compliance_fixtures.decide


@pytest.fixture
def erased(decide: Callable[..., services.ConsentDecision]) -> Contact:
    """A person who opted in to email and SMS marketing, then asked to be erased."""
    identity = ContactIdentity(
        email=EMAIL, phone=PHONE, app_user_id="u-q", first_name="Quillon", last_name="Vandersnoot"
    )
    services.consent_ingest(identity=identity, decision=decide())
    services.consent_ingest(
        identity=identity,
        decision=decide(
            purpose="email_marketing",
            evidence={"double_opt_in_confirmed_at": timezone.now().isoformat()},
        ),
    )
    contact = Contact.objects.get(email=EMAIL)
    services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)
    assert sorted(ErasedIdentifier.objects.values_list("kind", flat=True)) == ["email", "phone"]
    assert not Suppression.objects.filter(kind=Suppression.Kind.ERASED).exists()
    return contact


def _held(contact: Contact) -> list[Suppression]:
    """The active "erased before" suppressions on the contact (made only by
    `erased_suppressions_add`)."""
    return list(
        Suppression.objects.filter(contact=contact, kind=Suppression.Kind.ERASED, lifted_at__isnull=True)
    )


def _consents_sent(contact: Contact) -> set[str]:
    """The purposes whose pushed CRM field the projection sets to "consented"."""
    values = project([contact.pk])[contact.pk].values
    return {
        m.purpose.code for m in active_mappings() if m.pushes and values[m.crm_field] == m.value_for(True)
    }


def _states(contact: Contact) -> dict[str, str]:
    return dict(
        ConsentState.objects.filter(contact=contact, version__gt=0).values_list("purpose__code", "status")
    )


def _assert_held_and_sent_nothing(back: Contact) -> None:
    suppressions = _held(back)
    assert len(suppressions) == 1, "the re-imported contact is not held by an 'erased' suppression"
    (held,) = suppressions
    assert (held.kind, held.get_kind_display()) == ("erased", "Erased before: do not contact")
    assert held.channel == Suppression.ERASED_CHANNEL
    values = project([back.pk])[back.pk].values
    # Email_Opt_Out is the inverse of email consent; the others say consent when true.
    assert values["Email_Opt_Out"] is True
    assert values["SMS_Opt_In"] is False
    assert values["Data_Processing_Basis_Details.Contact_Through_Email"] is False
    assert values["Data_Processing_Basis_Details.Contact_Through_Phone"] is False
    assert values["Email_Bounce_Reason"].startswith("erased:")
    record = to_crm_record("5725767000000999001", values)
    assert record["Data_Processing_Basis_Details"]["Contact_Through_Email"] is False
    assert _consents_sent(back) == set()


def _assert_not_held(control: Contact, purposes: Iterable[str]) -> None:
    assert not Suppression.objects.filter(contact=control).exists()
    values = project([control.pk])[control.pk].values
    assert values["Email_Opt_Out"] is False and values["SMS_Opt_In"] is True
    assert _consents_sent(control) == set(purposes)


def _assert_still_erased(contact: Contact, events_before: int) -> None:
    contact.refresh_from_db()
    assert contact.erased_at is not None
    assert (contact.email, contact.phone, contact.app_user_id) == (None, None, None)
    assert (contact.first_name, contact.last_name) == ("", "")
    assert not _held(contact)
    assert ConsentEvent.objects.filter(contact=contact).count() == events_before
    assert set(_states(contact).values()) == {"opted_out"}


# -- the CSV import ---------------------------------------------------------------------------

CSV_HEADER = "email,phone,purpose,status,occurred_at,policy_version,frequency,double_opt_in_confirmed_at"


def test_a_csv_reimport_of_an_erased_person_is_recorded_but_held_from_marketing(
    erased: Contact, policy: PolicyVersion, tmp_path: Path
) -> None:
    events_before = ConsentEvent.objects.filter(contact=erased).count()
    rows = [
        f"{EMAIL},{PHONE},sms_marketing,opted_in,2024-05-01T09:30:00Z,{policy.label},weekly,",
        f"{EMAIL},,email_marketing,opted_in,2024-05-02T10:00:00Z,{policy.label},monthly,2024-05-02T10:05:00Z",
        f"{NEVER_ERASED},{NEVER_ERASED_PHONE},sms_marketing,opted_in,2024-05-01T09:30:00Z,{policy.label},weekly,",
        f"{NEVER_ERASED},,email_marketing,opted_in,2024-05-02T10:00:00Z,{policy.label},monthly,2024-05-02T10:05:00Z",
    ]
    path = tmp_path / "legacy.csv"
    path.write_text("\n".join([CSV_HEADER, *rows]) + "\n")
    out = io.StringIO()

    call_command("import_consent_csv", str(path), stdout=out)

    assert "Recorded 4 decision(s)" in out.getvalue()
    # The ledger keeps what the person did: a new contact with the erased address and number,
    # their opt-ins recorded as imports.
    back = Contact.objects.get(email=EMAIL)
    assert back.pk != erased.pk and back.phone == PHONE and back.erased_at is None
    assert sorted(
        ConsentEvent.objects.filter(contact=back).values_list("purpose__code", "status", "source")
    ) == [("email_marketing", "opted_in", "import"), ("sms_marketing", "opted_in", "import")]
    assert _states(back) == {"email_marketing": "opted_in", "sms_marketing": "opted_in"}
    # But "Erased before: do not contact", and the CRM is sent no consent for them.
    _assert_held_and_sent_nothing(back)
    # An address never erased: the same rows, not held.
    control = Contact.objects.get(email=NEVER_ERASED)
    assert _states(control) == {"email_marketing": "opted_in", "sms_marketing": "opted_in"}
    _assert_not_held(control, MARKETING)
    _assert_still_erased(erased, events_before)
    assert ledger_verify().ok


def test_a_csv_reimport_naming_only_the_erased_phone_is_held_too(
    erased: Contact, policy: PolicyVersion, tmp_path: Path
) -> None:
    events_before = ConsentEvent.objects.filter(contact=erased).count()
    path = tmp_path / "phones.csv"
    path.write_text(
        "phone,purpose,status,occurred_at,policy_version\n"
        f"{PHONE},sms_marketing,opted_in,2024-05-01T09:30:00Z,{policy.label}\n"
        f"{NEVER_ERASED_PHONE},sms_marketing,opted_in,2024-05-01T09:30:00Z,{policy.label}\n"
    )

    call_command("import_consent_csv", str(path), stdout=io.StringIO())

    back = Contact.objects.get(phone=PHONE)
    assert back.email is None and _states(back) == {"sms_marketing": "opted_in"}
    _assert_held_and_sent_nothing(back)
    control = Contact.objects.get(phone=NEVER_ERASED_PHONE)
    assert not _held(control) and _consents_sent(control) == {"sms_marketing"}
    _assert_still_erased(erased, events_before)
    assert ledger_verify().ok


# -- the Zoho import --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["coql", "bulk"])
def test_a_zoho_reimport_of_an_erased_person_is_recorded_but_held_from_marketing(
    import_settings: Any, sim: Any, erased: Contact, method: str
) -> None:
    events_before = ConsentEvent.objects.filter(contact=erased).count()
    # The person is back in CRM (a new record with their address; a record with only their
    # number), both opted in; and someone never erased, opted in the same way.
    back_id = sim.add_contact(
        First_Name="Quillon", Last_Name="Vandersnoot", Email=EMAIL, SMS_Opt_In=True, **LEGACY_EMAIL
    )
    sim.add_contact(Last_Name="Byphone", Phone=PHONE, SMS_Opt_In=True)
    control_id = sim.add_contact(
        First_Name="Ottilie", Last_Name="Neverhere", Email=NEVER_ERASED, SMS_Opt_In=True, **LEGACY_EMAIL
    )
    out = io.StringIO()

    call_command("import_zoho_consent", "--method", method, stdout=out, stderr=io.StringIO())

    assert "5 decisions recorded" in out.getvalue()
    # The ledger keeps what the person did, on new contacts linked to the new records
    back = Contact.objects.get(email=EMAIL)
    assert back.pk != erased.pk and back.zoho_id == str(back_id)
    assert _states(back) == {"email_marketing": "opted_in", "sms_marketing": "opted_in"}
    assert {e.source for e in ConsentEvent.objects.filter(contact=back)} == {"import"}
    by_phone = Contact.objects.get(phone=PHONE)
    assert by_phone.pk not in (erased.pk, back.pk) and by_phone.email is None
    assert _states(by_phone) == {"sms_marketing": "opted_in"}
    # But both are held by "Erased before: do not contact", and the CRM is sent no consent.
    _assert_held_and_sent_nothing(back)
    _assert_held_and_sent_nothing(by_phone)
    # The record of an address never erased: not held.
    control = Contact.objects.get(email=NEVER_ERASED)
    assert control.zoho_id == str(control_id)
    assert _states(control) == {"email_marketing": "opted_in", "sms_marketing": "opted_in"}
    _assert_not_held(control, MARKETING)
    _assert_still_erased(erased, events_before)
    assert ledger_verify().ok


def test_an_erased_persons_anonymised_crm_record_does_not_stop_the_zoho_import(
    import_settings: Any, sim: Any, decide: Callable[..., services.ConsentDecision]
) -> None:
    # The person's CRM record, linked by its id, as ERASURE_ZOHO_ACTION=anonymise (the default)
    # leaves it: no address, "[erased]", every consent field "not consented".
    record_id = str(sim.add_contact(Last_Name="[erased]", Email_Opt_Out=True, SMS_Opt_In=False))
    services.consent_ingest(
        identity=ContactIdentity(email=EMAIL, phone=PHONE, zoho_id=record_id), decision=decide()
    )
    contact = Contact.objects.get(email=EMAIL)
    services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)
    events_before = ConsentEvent.objects.filter(contact=contact).count()

    call_command("import_zoho_consent", stdout=io.StringIO(), stderr=io.StringIO())

    run = ImportRun.objects.get()
    assert (run.status, run.refused) == ("done", 0)
    assert run.ledger_decides >= 1, "the erased contact's record counted as decided by the ledger"
    _assert_still_erased(contact, events_before)
    assert ledger_verify().ok

    # Any write path that finds the erased contact by that Zoho id refuses plainly, one by one or
    # in a batch, and gives it no identifiers back.
    refusal = f"Contact {contact.pk} was erased; it records no more events."
    with pytest.raises(services.ConsentRejected, match=refusal):
        services.consent_ingest(
            identity=ContactIdentity(zoho_id=record_id, email="new.address@example.net"), decision=decide()
        )
    [outcome] = services.consent_ingest_batch(
        items=[(ContactIdentity(zoho_id=record_id), decide(purpose="sms_marketing"))], api_client=None
    )
    assert isinstance(outcome, services.ConsentRejected) and refusal in str(outcome)
    _assert_still_erased(contact, events_before)
