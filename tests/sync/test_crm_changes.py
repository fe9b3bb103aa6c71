"""CRM-side changes: a person's CRM opt-out is recorded; a workflow's or our write's aftermath is a
discrepancy; an opt-in found in CRM is never recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compliance import services
from compliance.models import ConsentEvent, ConsentState, Contact
from compliance.services import ConsentDecision, ContactIdentity
from sync.crm_changes import crm_changes_apply, crm_record, is_workflow
from sync.models import Discrepancy, SyncPush
from sync.projection import read_fields

pytestmark = pytest.mark.django_db

FIELD = "SMS_Opt_In"  # sms_marketing, direction "both": opt-outs come back
AGENT = {"id": "5725767000000000003", "name": "Maria Agent"}


def record_sms(email: str, status: str, *, key: str, when=None) -> Contact:
    services.policy_version_publish(label=f"p-{key}", effective_at="2026-01-01", text="notice")
    services.consent_ingest(
        identity=ContactIdentity(email=email),
        decision=ConsentDecision(
            purpose="sms_marketing",
            status=status,
            source="mobile_app",
            occurred_at=when or timezone.now() - timedelta(days=1),
            idempotency_key=key,
            policy_version=f"p-{key}" if status == "opted_in" else None,
        ),
    )
    return Contact.objects.get(email=email)


@pytest.fixture
def linked(sim):
    """Ana: opted in to SMS in the ledger, linked to a CRM record that agrees."""

    def make(status: str = "opted_in") -> Contact:
        rid = sim.add_contact(Email="ana@example.com", Last_Name="Ana", SMS_Opt_In=status == "opted_in")
        contact = record_sms("ana@example.com", status, key=f"sms-{status}")
        contact.zoho_id = rid
        contact.save(update_fields=["zoho_id"])
        return contact

    return make


def read(zoho, contact: Contact):
    names = [FIELD]
    (row,) = zoho.crm.get_many([contact.zoho_id], read_fields(names))
    return crm_record(contact.pk, row, names)


def test_a_crm_users_opt_out_becomes_a_crm_event_with_evidence(sim, zoho, linked):
    ana = linked("opted_in")
    sim.post(f"/_sim/contacts/{ana.zoho_id}", fields={FIELD: False}, user=AGENT)

    result = crm_changes_apply(records=[read(zoho, ana)], client=zoho)

    event = ConsentEvent.objects.get(contact=ana, source="crm")
    assert (event.status, event.purpose.code) == ("opted_out", "sms_marketing")
    assert event.evidence["crm_user"] == AGENT
    assert event.evidence["crm_field"] == FIELD and event.evidence["crm_value"] is False
    assert event.evidence["modified_time"]
    assert ConsentState.objects.get(contact=ana, purpose__code="sms_marketing").status == "opted_out"
    assert result.recorded == 1
    assert not Discrepancy.objects.exists()

    # Read again: the same CRM change is not recorded twice.
    again = crm_changes_apply(records=[read(zoho, ana)], client=zoho)
    assert again.recorded == 0
    assert ConsentEvent.objects.filter(contact=ana, source="crm").count() == 1


def test_a_change_right_after_our_write_is_a_discrepancy_not_a_decision(sim, zoho, linked):
    ana = linked("opted_in")
    SyncPush.objects.create(
        contact=ana, zoho_id=ana.zoho_id, sent={FIELD: True}, ledger_versions={"sms_marketing": 1}
    )
    sim.post(f"/_sim/contacts/{ana.zoho_id}", fields={FIELD: False}, user=AGENT)

    crm_changes_apply(records=[read(zoho, ana)], client=zoho)

    assert not ConsentEvent.objects.filter(source="crm").exists()
    assert ConsentState.objects.get(contact=ana, purpose__code="sms_marketing").status == "opted_in"
    discrepancy = Discrepancy.objects.get(contact=ana, crm_field=FIELD)
    assert discrepancy.kind == "overwritten"
    assert "after our write" in discrepancy.hint
    assert discrepancy.evidence["modified_by"] == AGENT


def test_a_workflow_reset_is_a_discrepancy_not_a_decision(sim, zoho, linked):
    ana = linked("opted_in")
    sim.fault("workflow_reset", field=FIELD, value=False, delay_s=0)
    zoho.crm.update([{"id": ana.zoho_id, FIELD: True, "Last_Name": "Ana B"}])

    record = read(zoho, ana)
    assert record.values[FIELD] is False and is_workflow(record.modified_by_id, record.modified_by_name)
    crm_changes_apply(records=[record], client=zoho)

    assert not ConsentEvent.objects.filter(source="crm").exists()
    discrepancy = Discrepancy.objects.get(contact=ana, crm_field=FIELD)
    assert discrepancy.kind == "overwritten"
    assert "workflow" in discrepancy.hint


def test_our_own_api_users_value_is_not_a_decision(sim, zoho, linked):
    ana = linked("opted_in")
    zoho.crm.update([{"id": ana.zoho_id, FIELD: False}])  # e.g. a stale write of ours

    crm_changes_apply(records=[read(zoho, ana)], client=zoho)

    assert not ConsentEvent.objects.filter(source="crm").exists()
    assert Discrepancy.objects.get(contact=ana, crm_field=FIELD).kind == "overwritten"


def test_an_unevidenced_opt_in_in_crm_is_never_recorded(sim, zoho, linked):
    ana = linked("opted_out")
    sim.post(f"/_sim/contacts/{ana.zoho_id}", fields={FIELD: True}, user=AGENT)

    crm_changes_apply(records=[read(zoho, ana)], client=zoho)

    assert ConsentState.objects.get(contact=ana, purpose__code="sms_marketing").status == "opted_out"
    assert not ConsentEvent.objects.filter(source="crm").exists()
    discrepancy = Discrepancy.objects.get(contact=ana, crm_field=FIELD)
    assert discrepancy.kind == "unevidenced_opt_in"
    assert (discrepancy.expected, discrepancy.actual) == (False, True)


def test_a_crm_value_older_than_the_ledgers_decision_is_not_news(sim, zoho):
    rid = sim.add_contact(Email="bo@example.com", Last_Name="Bo", SMS_Opt_In=False)
    # The person opted in through the app after the CRM record was last modified.
    bo = record_sms("bo@example.com", "opted_in", key="bo-in", when=timezone.now() + timedelta(seconds=5))
    bo.zoho_id = rid
    bo.save(update_fields=["zoho_id"])

    crm_changes_apply(records=[read(zoho, bo)], client=zoho)

    assert not ConsentEvent.objects.filter(source="crm").exists()
    assert Discrepancy.objects.get(contact=bo, crm_field=FIELD).kind == "overwritten"
