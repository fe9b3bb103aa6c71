"""Linking in bulk: contacts known only by email, phone or app user id find their CRM record,
50 contacts per COQL query, never one call per contact; links persist; a changed email relinks."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import Contact
from sync.linking import contacts_link, phone_e164
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, SyncPush, ZohoCall
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due
from sync.zoho.errors import ZohoTransientError
from tests.sync.conftest import NO_CONSENT

pytestmark = pytest.mark.django_db


def push_all(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)


def calls(op: str) -> int:
    return ZohoCall.objects.filter(operation=op).count()


def test_120_contacts_known_only_by_email_link_in_three_queries_without_case(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    records = {n: crm(f"Person.{n}@Example.com") for n in range(120)}
    contacts = [ledger.change(f"person.{n}@example.com", "sms_marketing", "opted_in") for n in range(120)]

    push_all(zoho)

    links = {link.contact_id: link for link in CrmLink.objects.all()}
    assert all(links[c.pk].state == CrmLink.State.LINKED for c in contacts)
    assert [links[c.pk].candidates for c in contacts] == [[records[n]] for n in range(120)]
    assert {links[c.pk].matched_by for c in contacts} == {"email"}
    assert calls("crm.coql") == 3, "120 addresses are three queries of at most 50"
    assert calls("crm.search") == 0
    assert calls("crm.update") == 2
    assert all(sim.contact(records[n])["SMS_Opt_In"] is True for n in (0, 119))


def test_a_retry_after_a_failed_lookup_asks_zoho_only_what_it_had_not_answered(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given 120 contacts known only by email, looked up 50 addresses a query
    records = {n: crm(f"retry.{n}@example.com") for n in range(120)}
    contacts = [Contact.objects.create(email=f"retry.{n}@example.com") for n in range(120)]
    # and Zoho failing the third query with a 500
    sim.fault("server_error", ops=["crm.coql"], nth=[3])

    # When the batch's first attempt stops there and its retry goes on
    with pytest.raises(ZohoTransientError):
        contacts_link(contacts=contacts, zoho=zoho)
    links, _ = contacts_link(contacts=contacts, zoho=zoho)

    # Then each of the three queries was answered once: the retry asked only the third again
    lookups = sim.calls("crm.coql")
    assert [call["status"] for call in lookups] == [200, 200, 500, 200]
    assert len({call["select_query"] for call in lookups if call["status"] == 200}) == 3
    assert [links[c.pk].candidates for c in contacts] == [[records[n]] for n in range(120)]


def test_a_contact_known_only_by_phone_links_by_phone_or_mobile_in_e164(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    by_phone = sim.add_contact(**NO_CONSENT, Last_Name="Phone", Phone="4915112345678")
    by_mobile = sim.add_contact(**NO_CONSENT, Last_Name="Mobile", Mobile="+4915187654321")
    sim.add_contact(**NO_CONSENT, Last_Name="Other", Phone="+4915100000000")
    first = Contact.objects.create(phone="+4915112345678")
    second = Contact.objects.create(phone="+4915187654321")

    links, report = contacts_link(contacts=[first, second], zoho=zoho)

    assert links[first.pk].candidates == [by_phone] and links[first.pk].matched_by == "phone"
    assert links[second.pk].candidates == [by_mobile]
    assert report.calls == 1 and calls("crm.coql") == 1


def test_a_contact_known_only_by_app_user_id_links_by_the_configured_field(
    ledger: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    engine_settings.ZOHO_FIELD_APP_USER_ID = "App_User_Id"
    sim.config(custom_fields=[{"api_name": "App_User_Id", "data_type": "text"}])
    sim.reset(custom_fields=[{"api_name": "App_User_Id", "data_type": "text"}])
    record = sim.add_contact(Last_Name="App", App_User_Id="u-42")
    contact = Contact.objects.create(app_user_id="u-42")

    links, _ = contacts_link(contacts=[contact], zoho=zoho)

    assert links[contact.pk].state == CrmLink.State.LINKED
    assert links[contact.pk].candidates == [record] and links[contact.pk].matched_by == "app_user_id"


def test_without_the_app_user_id_field_such_a_contact_is_not_in_crm_and_costs_no_call(
    zoho: Any, engine_settings: Any
) -> None:
    engine_settings.ZOHO_FIELD_APP_USER_ID = ""
    contact = Contact.objects.create(app_user_id="u-43")

    links, report = contacts_link(contacts=[contact], zoho=zoho)

    assert links[contact.pk].state == CrmLink.State.NOT_IN_CRM
    assert report.calls == 0


def test_links_persist_and_a_changed_email_relinks(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    old = crm("old@example.com")
    new = crm("new@example.com")
    contact = ledger.change("old@example.com", "profiling", "opted_in")
    push_all(zoho)
    ledger.change("old@example.com", "profiling", "opted_out")
    push_all(zoho)
    assert calls("crm.coql") == 1, "the second push used the stored link"

    Contact.objects.filter(pk=contact.pk).update(email="new@example.com")
    ledger.change("new@example.com", "profiling", "opted_in")
    push_all(zoho)

    link = CrmLink.objects.get(contact=contact)
    assert link.candidates == [new] and link.matched_value == "new@example.com"
    assert calls("crm.coql") == 2
    assert sim.contact(new)["Profiling_Consent"] is True
    assert sim.contact(old)["Profiling_Consent"] is False


def test_two_records_with_one_address_are_a_duplicate_and_neither_is_written(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    first, second = crm("twice@example.com"), crm("TWICE@example.com")
    contact = ledger.change("twice@example.com", "sms_marketing", "opted_in")

    push_all(zoho)

    link = CrmLink.objects.get(contact=contact)
    assert link.state == CrmLink.State.DUPLICATE and link.candidates == sorted([first, second])
    assert Discrepancy.objects.get(contact=contact).kind == Discrepancy.Kind.DUPLICATE
    assert not SyncPush.objects.exists()


def test_pushes_update_the_records_one_consent_record_in_place(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    linked_by_email = crm("consent@example.com")
    by_id = crm("byid@example.com")
    (before,) = sim.state.consent_records_of(linked_by_email)
    ledger.change("consent@example.com", "phone_marketing", "opted_in")
    ledger.change("byid@example.com", "phone_marketing", "opted_in", zoho_id=by_id)
    push_all(zoho)
    ledger.change("consent@example.com", "phone_marketing", "opted_out")
    ledger.change("byid@example.com", "phone_marketing", "opted_out")
    push_all(zoho)

    assert sim.state.consent_records_of(linked_by_email) == [before]
    assert len(sim.state.consent_records_of(by_id)) == 1
    details = sim.contact(linked_by_email)["Data_Processing_Basis_Details"]
    assert details["id"] == before and details["Contact_Through_Phone"] is False


def test_a_record_without_consent_gets_one_consent_record_however_often_it_is_pushed(
    ledger: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    record = sim.add_contact(Last_Name="Bare", Email="bare@example.com")  # no consent object yet
    for status in ("opted_in", "opted_out", "opted_in"):
        ledger.change("bare@example.com", "phone_marketing", status)
        push_all(zoho)

    assert len(sim.state.consent_records_of(record)) == 1


def test_linking_and_verify_of_unlinked_contacts_make_no_call_per_contact(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    for n in range(150):
        crm(f"bulk{n}@example.com")
    for n in range(150):
        ledger.change(f"bulk{n}@example.com", "sms_marketing", "opted_in")
        ledger.change(f"bulk{n}@example.com", "profiling", "opted_in")

    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)

    assert SyncPush.objects.filter(verification="verified").count() == 150
    by_op = {op: calls(op) for op in ("crm.coql", "crm.update", "crm.get", "crm.search")}
    assert by_op == {"crm.coql": 3, "crm.update": 2, "crm.get": 2, "crm.search": 0}


@pytest.mark.parametrize(
    ("stored", "e164"),
    [("+49 151 12345678", "+4915112345678"), ("4915112345678", "+4915112345678"), ("", None), ("n/a", None)],
)
def test_crm_phone_values_compare_in_e164(stored: str, e164: str | None) -> None:
    assert phone_e164(stored) == e164


def test_a_large_first_sync_links_everyone_in_one_bulk_read_of_the_crm(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any, monkeypatch: Any
) -> None:
    monkeypatch.setattr("sync.linking.BULK_MIN", 10)
    engine_settings.RECONCILE_BULK_POLL_S = 0
    sim.config(bulk_read_polls_to_complete=0)
    records = [crm(f"first{n}@example.com") for n in range(12)]
    phone_record = sim.add_contact(**NO_CONSENT, Last_Name="Tel", Mobile="+4915112345678")
    crm("twice@example.com")
    crm("twice@example.com")
    for n in range(12):
        ledger.change(f"First{n}@example.com".lower(), "sms_marketing", "opted_in")
    by_phone = Contact.objects.create(phone="+4915112345678")
    twice = ledger.change("twice@example.com", "sms_marketing", "opted_in")
    nobody = ledger.change("nobody@example.com", "sms_marketing", "opted_in")

    push_all(zoho)

    links = {link.contact_id: link for link in CrmLink.objects.all()}
    linked = sorted(str(link.candidates[0]) for link in links.values() if link.state == "linked")
    assert linked == sorted([*records, phone_record])
    assert links[by_phone.pk].matched_by == "phone"
    assert links[twice.pk].state == CrmLink.State.DUPLICATE
    assert links[nobody.pk].state == CrmLink.State.NOT_IN_CRM
    linked_records = CrmLinkRecord.objects.filter(
        contact_id__in=[c for c in links if links[c].state == "linked"]
    )
    assert linked_records.count() == 13 and all(r.consent_id for r in linked_records)
    assert calls("crm.bulk_read_create") == 1
    assert calls("crm.coql") == 0 and calls("crm.get") == 0
    assert len(sim.state.consent_records_of(records[0])) == 1


def test_link_contacts_runs_the_whole_crm_pass_by_hand(
    ledger: Any, crm: Any, sim: Any, sim_settings: Any, capsys: Any
) -> None:
    from django.core.management import call_command

    sim_settings.RECONCILE_BULK_POLL_S = 0
    sim.config(bulk_read_polls_to_complete=0)
    record = crm("hand@example.com")
    contact = ledger.change("hand@example.com", "sms_marketing", "opted_in")
    ledger.change("missing@example.com", "sms_marketing", "opted_in")

    call_command("link_contacts")

    assert "linked 1, not in CRM 1, duplicates 0" in capsys.readouterr().out
    assert CrmLink.objects.get(contact=contact).candidates == [record]
    assert calls("crm.bulk_read_create") == 1 and calls("crm.coql") == 0
