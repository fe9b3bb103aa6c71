"""Reconciliation with Leads as well as Contacts (``ZOHO_MODULES=Contacts,Leads``): every configured
module is read, each linked record is compared on its own (a discrepancy names its record and
module, and the person's other record does not resolve it), and a Lead converted to a Contact
keeps its history: the link moves, and the gone Lead is no missing record."""

from __future__ import annotations

from typing import Any

import pytest

from compliance.models import ConsentEvent, OutboxEntry
from sync.linking import contacts_link
from sync.models import CrmLinkRecord, Discrepancy, SyncPush
from sync.reconcile import reconcile
from sync.verify import pushes_verify_due
from tests.sync.leads import (
    AGENT,
    add_lead,
    convert,
    lead_converted,
    lead_edit,
    person_with_records,
    push_all,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def bulk_at_once(sim: Any) -> None:
    sim.config(bulk_read_polls_to_complete=0)


@pytest.mark.parametrize("method", ["coql", "bulk"])
def test_a_lead_that_differs_is_a_discrepancy_on_that_lead_which_the_contact_record_does_not_resolve(
    method: str, ledger: Any, zoho: Any, sim: Any, leads_too: Any, bulk_at_once: None
) -> None:
    person, contact_record, lead_id = person_with_records(sim, ledger, "both@example.com")
    push_all(zoho)
    assert pushes_verify_due(zoho=zoho).verified == 2
    lead_edit(sim, lead_id, Profiling_Consent=True)  # a field only the ledger decides: drift
    read = "bulk.read.create" if method == "bulk" else "crm.coql"
    reads_before = len(sim.calls(read))

    run = reconcile(client=zoho, method=method)

    assert (run.records_read, run.contacts_compared, run.opened, run.missing) == (2, 2, 1, 0)
    assert len(sim.calls(read)) - reads_before == 2, "one read of each module"
    drift = Discrepancy.objects.get(status="open")
    assert (drift.contact_id, drift.kind, drift.crm_field, drift.zoho_id, drift.actual) == (
        person.pk,
        "drift",
        "Profiling_Consent",
        lead_id,
        True,
    )
    assert drift.evidence["crm_module"] == "Leads" and f"Leads {lead_id}" in drift.hint

    again = reconcile(client=zoho, method=method)  # the Contact record matches: not the Lead's to resolve

    assert (again.opened, again.resolved) == (0, 0)
    drift.refresh_from_db()
    assert drift.status == "open"
    assert sim.contact(contact_record)["Profiling_Consent"] is False

    lead_edit(sim, lead_id, Profiling_Consent=False)
    fixed = reconcile(client=zoho, method=method)

    drift.refresh_from_db()
    assert (fixed.resolved, drift.status) == (1, "resolved")


@pytest.mark.parametrize("method", ["coql", "bulk"])
def test_a_crm_users_opt_out_on_a_lead_is_recorded_with_the_lead_as_evidence(
    method: str, ledger: Any, zoho: Any, sim: Any, leads_too: Any, bulk_at_once: None
) -> None:
    lead_id = add_lead(sim, "lena@example.com", SMS_Opt_In=True)
    person = ledger.change("lena@example.com", "sms_marketing", "opted_in", minutes_ago=60 * 24)
    contacts_link(contacts=[person], zoho=zoho)
    lead_edit(sim, lead_id, SMS_Opt_In=False)

    run = reconcile(client=zoho, method=method)

    event = ConsentEvent.objects.get(contact=person, source="crm")
    assert (event.status, event.purpose.code) == ("opted_out", "sms_marketing")
    assert event.evidence["zoho_id"] == lead_id and event.evidence["crm_module"] == "Leads"
    assert event.evidence["crm_user"] == AGENT
    assert run.opened == 0 and not Discrepancy.objects.exists()


def test_a_lead_converted_to_a_new_contact_moves_its_link_and_is_not_missing(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    person, lead_id, contact_record = lead_converted(sim, ledger, zoho, "convert.me@example.com")

    run = reconcile(client=zoho, method="coql")

    assert (run.missing, run.opened) == (0, 0)
    assert not Discrepancy.objects.exists()
    (record,) = CrmLinkRecord.objects.filter(contact=person)
    assert (record.module, record.record_id, record.converted_from) == ("Contacts", contact_record, lead_id)
    assert OutboxEntry.objects.filter(contact=person, processed_at__isnull=True).exists(), "pushed again"

    push_all(zoho)
    assert pushes_verify_due(zoho=zoho).verified == 1
    later = reconcile(client=zoho, method="coql")

    assert (later.contacts_compared, later.missing, later.opened) == (1, 0, 0)
    # The history is the contact's: its decision and its pushes to the Lead stay as they were.
    assert list(ConsentEvent.objects.filter(contact=person).values_list("version", "status")) == [
        (1, "opted_in")
    ]
    pushes = SyncPush.objects.filter(contact=person).order_by("pk")
    assert [(p.module, p.zoho_id, p.verification) for p in pushes] == [
        ("Leads", lead_id, "verified"),
        ("Contacts", contact_record, "verified"),
    ]


def test_a_lead_converted_into_the_persons_contact_is_not_missing_though_the_contact_was_seen(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    person, contact_record, lead_id = person_with_records(sim, ledger, "both@example.com")
    push_all(zoho)
    pushes_verify_due(zoho=zoho)
    assert convert(zoho, lead_id, into=contact_record) == contact_record

    run = reconcile(client=zoho, method="coql")

    assert (run.missing, run.opened) == (0, 0)
    assert list(CrmLinkRecord.objects.filter(contact=person).values_list("module", "record_id")) == [
        ("Contacts", contact_record)
    ]


def test_a_deleted_lead_of_a_person_whose_contact_is_there_is_missing_on_the_lead(
    ledger: Any, zoho: Any, sim: Any, leads_too: Any
) -> None:
    person, _, lead_id = person_with_records(sim, ledger, "both@example.com")
    push_all(zoho)
    pushes_verify_due(zoho=zoho)
    sim.state.delete_record("Leads", lead_id)  # a CRM user deleted it: not converted

    run = reconcile(client=zoho, method="coql")

    missing = Discrepancy.objects.get(kind="record_missing")
    assert (missing.contact_id, missing.zoho_id, missing.evidence["crm_module"]) == (
        person.pk,
        lead_id,
        "Leads",
    )
    assert f"Leads {lead_id}" in missing.hint
    assert (run.missing, run.opened) == (1, 1)
