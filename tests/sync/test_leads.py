"""Leads as well as Contacts (``ZOHO_MODULES=Contacts,Leads``): linking searches every configured
module, consent is pushed to and verified on each linked record (one update call per module and
100 records), and converting a Lead to a Contact keeps the history (the link moves)."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import ConsentEvent, OutboxEntry
from sync.audit import stranded_find
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, SyncPush, ZohoCall
from sync.outbox import outbox_claim, outbox_claim_return, outbox_claim_take
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due
from sync.zoho.errors import ZohoError, ZohoTransientError
from tests.sync.leads import add_lead, convert, lead, lead_converted, person_with_records, push_all

pytestmark = pytest.mark.django_db


def test_by_default_only_contacts_are_searched(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    add_lead(sim, "only.lead@example.com")
    contact = ledger.change("only.lead@example.com", "sms_marketing", "opted_in")

    push_all(zoho)

    assert CrmLink.objects.get(contact=contact).state == CrmLink.State.NOT_IN_CRM
    assert ZohoCall.objects.filter(operation="crm.coql").count() == 1


def test_a_lead_not_yet_converted_is_linked_pushed_and_verified(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    lead_id = add_lead(sim, "Lena.Lead@Example.com")
    contact = ledger.change("lena.lead@example.com", "sms_marketing", "opted_in")

    push_all(zoho)
    report = pushes_verify_due(zoho=zoho)

    (record,) = CrmLinkRecord.objects.filter(contact=contact)
    assert (record.module, record.record_id, record.role) == ("Leads", lead_id, "linked")
    assert lead(sim, lead_id)["SMS_Opt_In"] is True
    assert report.verified == 1
    push = SyncPush.objects.get(contact=contact)
    assert (push.module, push.zoho_id, push.verification) == ("Leads", lead_id, "verified")


def test_a_person_who_is_a_lead_and_a_contact_is_written_and_verified_on_both(
    ledger: Any, crm: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    contacts = {n: crm(f"both.{n}@example.com") for n in range(3)}
    leads = {n: add_lead(sim, f"both.{n}@example.com") for n in range(3)}
    people = [ledger.change(f"both.{n}@example.com", "sms_marketing", "opted_in") for n in range(3)]

    push_all(zoho)

    updates = ZohoCall.objects.filter(operation="crm.update").order_by("pk")
    assert [c.path.rsplit("/", 1)[1] for c in updates] == ["Contacts", "Leads"], "one call per module"
    assert [c.records for c in updates] == [3, 3]
    assert all(sim.contact(contacts[n])["SMS_Opt_In"] is True for n in range(3))
    assert all(lead(sim, leads[n])["SMS_Opt_In"] is True for n in range(3))
    assert CrmLink.objects.get(contact=people[0]).candidates == [contacts[0], leads[0]]

    report = pushes_verify_due(zoho=zoho)

    assert report.verified == 6
    reads = ZohoCall.objects.filter(operation="crm.get").order_by("pk")
    assert [c.path.rsplit("/", 1)[1] for c in reads] == ["Contacts", "Leads"]
    assert not Discrepancy.objects.exists()
    assert stranded_find().stranded == []


def test_a_lead_reset_by_a_workflow_is_a_discrepancy_that_the_contact_record_does_not_resolve(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    person, contact_record, lead_id = person_with_records(sim, ledger, "reset@example.com", lead_reset=True)

    push_all(zoho)
    report = pushes_verify_due(zoho=zoho)

    assert report.verified == 1 and report.mismatched == 1
    d = Discrepancy.objects.get(contact=person, status="open")
    assert (d.crm_field, d.zoho_id, d.kind) == ("SMS_Opt_In", lead_id, "overwritten")
    assert sim.contact(contact_record)["SMS_Opt_In"] is True
    assert stranded_find().stranded == []


def test_a_converted_lead_moves_its_link_to_the_contact_and_keeps_the_history(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    person, lead_id, contact_record = lead_converted(sim, ledger, zoho, "convert.me@example.com")
    assert sim.http.get(f"/_sim/contacts/{lead_id}", params={"module": "Leads"}).status_code == 404

    # The next change goes to the Lead, which is gone: Zoho says the id is invalid; the push asks
    # Zoho where the Lead went and moves the link to the Contact it became.
    ledger.change("convert.me@example.com", "sms_marketing", "opted_out")
    push_all(zoho)
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    (record,) = CrmLinkRecord.objects.filter(contact=person)
    assert (record.module, record.record_id, record.converted_from) == ("Contacts", contact_record, lead_id)
    assert CrmLink.objects.get(contact=person).candidates == [contact_record]
    assert sim.contact(contact_record)["SMS_Opt_In"] is False
    latest = SyncPush.objects.filter(contact=person).order_by("-pk").first()
    assert latest is not None
    assert (latest.module, latest.zoho_id, latest.verification) == ("Contacts", contact_record, "verified")
    # The history is the contact's: both decisions, in order, nothing rewritten.
    assert list(
        ConsentEvent.objects.filter(contact=person).order_by("version").values_list("version", "status")
    ) == [(1, "opted_in"), (2, "opted_out")]
    assert not Discrepancy.objects.filter(contact=person, status="open").exists()
    assert stranded_find().stranded == []


def test_a_failed_look_up_of_a_converted_lead_keeps_the_answers_of_the_other_records(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    # Given two people whose only records are Leads, one of which was converted since its push
    person, lead_id, contact_record = lead_converted(sim, ledger, zoho, "gone.lead@example.com")
    other_lead = add_lead(sim, "still.lead@example.com")
    other = ledger.change("still.lead@example.com", "sms_marketing", "opted_in")
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    # When both change, and Zoho fails the look-up of where the gone Lead went
    ledger.change("gone.lead@example.com", "sms_marketing", "opted_out")
    ledger.change("still.lead@example.com", "sms_marketing", "opted_out")
    sim.fault("server_error", ops=["crm.get"])
    claim = outbox_claim(worker="w")
    with pytest.raises(ZohoTransientError):
        outbox_batch_push(claim=claim, zoho=zoho)

    # Then the other Lead's answer from the same update call is kept (awaiting its read-back),
    # the gone one keeps none, and the rows wait for the retry
    (update,) = ZohoCall.objects.filter(operation="crm.update").order_by("-pk")[:1]
    answered = SyncPush.objects.filter(contact=other).latest("pk")
    assert (answered.zoho_id, answered.call_id, answered.verify_due_at is not None) == (
        other_lead,
        update.pk,
        True,
    )
    assert not SyncPush.objects.filter(zoho_id=lead_id, call=update).exists()
    assert OutboxEntry.objects.filter(contact=person, processed_at__isnull=True).exists()

    # And once Zoho answers again, the retry writes the gone Lead again, follows it to its
    # Contact, and does not write the other Lead twice
    sim.clear_faults()
    outbox_claim_return(claim=claim, token=claim.token)
    outbox_batch_push(claim=outbox_claim_take(token=claim.token), zoho=zoho)
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    assert sim.contact(contact_record)["SMS_Opt_In"] is False
    assert lead(sim, other_lead)["SMS_Opt_In"] is False
    assert SyncPush.objects.filter(contact=other, call__isnull=False).count() == 2
    assert not Discrepancy.objects.filter(status="open").exists()


def test_a_lead_converted_while_its_push_awaits_read_back_moves_at_verify(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    lead_id = add_lead(sim, "verify.convert@example.com")
    person = ledger.change("verify.convert@example.com", "profiling", "opted_in")
    push_all(zoho)
    contact_record = convert(zoho, lead_id)

    report = pushes_verify_due(zoho=zoho)
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    assert report.superseded == 1 and report.missing == 0
    assert CrmLinkRecord.objects.get(contact=person).record_id == contact_record
    assert sim.contact(contact_record)["Profiling_Consent"] is True
    assert SyncPush.objects.filter(contact=person, zoho_id=contact_record, verification="verified").exists()
    assert not Discrepancy.objects.filter(contact=person).exists()


def test_a_deleted_lead_is_still_a_missing_record(ledger: Any, zoho: Any, sim: Any, leads_too: Any) -> None:
    lead_id = add_lead(sim, "gone@example.com")
    person = ledger.change("gone@example.com", "profiling", "opted_in")
    push_all(zoho)
    sim.state.delete_record("Leads", lead_id)

    pushes_verify_due(zoho=zoho)

    d = Discrepancy.objects.get(contact=person, status="open")
    assert (d.kind, d.zoho_id) == ("record_missing", lead_id)


def test_zohosim_converts_as_strictly_as_zoho(zoho: Any, sim: Any) -> None:
    lead_id = add_lead(sim, "strict@example.com", First_Name="Sam")
    contact_record = convert(zoho, lead_id)

    assert sim.contact(contact_record)["Email"] == "strict@example.com"
    assert zoho.crm.get(lead_id, module="Leads") is None, "a converted Lead is gone from Leads"
    assert zoho.crm.lead_conversion(lead_id) == contact_record
    assert zoho.crm.coql_where(["Email"], any_of={"Email": ["strict@example.com"]}, module="Leads") == []
    update = zoho.crm.update([{"id": lead_id, "SMS_Opt_In": True}], module="Leads")
    assert update.results[0].code == "INVALID_DATA" and update.results[0].details.get("id") == lead_id
    with pytest.raises(ZohoError, match="already converted") as refused:
        convert(zoho, lead_id)
    assert refused.value.code == "ID_ALREADY_CONVERTED"
    never = add_lead(sim, "never@example.com")
    assert zoho.crm.lead_conversion(never) is None
