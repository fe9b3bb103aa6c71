"""The projection: what CRM should hold, given the ledger's current state and the field mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from compliance import services
from compliance.models import ConsentState, Contact
from compliance.services import ConsentDecision, ContactIdentity
from sync.models import FieldMapping
from sync.projection import ConsentPicklists, project, read_back, read_fields, to_crm_record

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 11, 20, 9, 14, tzinfo=UTC)


@pytest.fixture
def record(db):
    services.policy_version_publish(label="2026-03", effective_at="2026-03-01", text="notice")
    keys = iter(range(10_000))

    def write(purpose: str, status: str, *, email: str = "ana@example.com", **extra) -> int:
        decision = ConsentDecision(
            purpose=purpose,
            status=status,
            source=extra.pop("source", "mobile_app"),
            occurred_at=extra.pop("occurred_at", WHEN),
            idempotency_key=f"p-{next(keys)}",
            policy_version="2026-03" if status == "opted_in" else None,
            **extra,
        )
        return services.consent_ingest(
            identity=ContactIdentity(email=email), decision=decision
        ).event.contact_id

    return write


def test_the_default_mapping_projects_every_purpose(record):
    contact = record("sms_marketing", "opted_in")
    record("phone_marketing", "opted_out")
    record("email_marketing", "pending")
    record(
        "email_marketing",
        "opted_in",
        evidence={"double_opt_in_confirmed_at": "2026-11-20T09:20:00Z"},
        occurred_at=WHEN.replace(minute=20),
    )

    # The consent picklists come from the org's field metadata, never from constants.
    picklists = ConsentPicklists(
        basis=("Consent - Pending", "Consent - Obtained"), through=("Email", "Mobile app")
    )
    values = project([contact], picklists=picklists)[contact].values
    assert values["SMS_Opt_In"] is True
    assert values["Data_Processing_Basis_Details.Contact_Through_Phone"] is False
    assert values["Email_Opt_Out"] is False, "Email_Opt_Out is the inverse of email consent"
    assert values["Data_Processing_Basis_Details.Contact_Through_Email"] is True
    assert values["Profiling_Consent"] is False and values["Third_Party_Sharing_Consent"] is False
    assert values["Data_Processing_Basis_Details.Data_Processing_Basis"] == "Consent - Obtained"
    assert values["Data_Processing_Basis_Details.Consent_Date"] == "2026-11-20"
    assert values["Data_Processing_Basis_Details.Consent_Through"] == "Mobile app"
    assert values["Email_Bounce_Reason"] is None


def test_a_hard_bounce_means_do_not_mail_without_being_a_withdrawal(record):
    contact_id = record(
        "email_marketing", "opted_in", evidence={"double_opt_in_confirmed_at": "2026-11-20T09:20:00Z"}
    )
    services.suppression_add(
        contact=Contact.objects.get(pk=contact_id),
        kind="hard_bounce",
        source="campaigns",
        detail="550 no such user",
    )

    values = project([contact_id])[contact_id].values
    assert values["Email_Opt_Out"] is True
    assert values["Data_Processing_Basis_Details.Contact_Through_Email"] is False
    assert values["Email_Bounce_Reason"] == "hard_bounce: 550 no such user"
    assert ConsentState.objects.get(contact_id=contact_id).status == "opted_in"


def test_an_admin_edited_mapping_changes_the_projection_and_its_version(record):
    contact = record("sms_marketing", "opted_in")
    mapping = FieldMapping.objects.get(crm_field="SMS_Opt_In")
    mapping.crm_field = "SMS_Consent__c"
    mapping.save()

    values = project([contact])[contact].values
    assert values["SMS_Consent__c"] is True and "SMS_Opt_In" not in values
    assert FieldMapping.objects.get(pk=mapping.pk).version == 2


def test_a_newer_decision_changes_the_projection_and_its_ledger_versions(record):
    contact = record("sms_marketing", "opted_in")
    before = project([contact])[contact]
    record("sms_marketing", "opted_out", occurred_at=WHEN.replace(hour=10))
    after = project([contact])[contact]

    assert (before.values["SMS_Opt_In"], after.values["SMS_Opt_In"]) == (True, False)
    assert (before.ledger_versions, after.ledger_versions) == ({"sms_marketing": 1}, {"sms_marketing": 2})


def test_values_nest_for_zoho_and_flatten_back_to_compare_field_by_field(record):
    contact = record("phone_marketing", "opted_in")
    projection = project([contact])[contact]
    crm_record = to_crm_record("5725767000000412001", projection.values)

    assert crm_record["id"] == "5725767000000412001"
    assert crm_record["Data_Processing_Basis_Details"]["Contact_Through_Phone"] is True
    assert "Data_Processing_Basis_Details" in read_fields(projection.values)
    flat = read_back(crm_record, projection.values)
    assert projection.differences(flat) == {}

    crm_record["Data_Processing_Basis_Details"]["Contact_Through_Phone"] = False
    assert projection.differences(read_back(crm_record, projection.values)) == {
        "Data_Processing_Basis_Details.Contact_Through_Phone": (True, False)
    }
