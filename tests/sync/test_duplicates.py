"""Duplicates: a contact whose address several CRM records share is held until an admin chooses
"write to all" or a primary; the choice is recorded (who, when, why) and the held push goes out
and is verified on every chosen record. Admins only."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from compliance.models import OutboxEntry
from sync.audit import stranded_find
from sync.duplicates import DecisionRefused, duplicate_decide, duplicate_groups
from sync.models import CrmLink, CrmLinkRecord, Discrepancy, DuplicateDecision, SyncPush, ZohoCall
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due

pytestmark = pytest.mark.django_db


def push_all(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)


@pytest.fixture
def held(ledger: Any, crm: Any, zoho: Any, engine_settings: Any) -> tuple[Any, list[str]]:
    """A contact with an opt-in whose address two CRM contacts share: held, nothing written."""
    records = [crm("twice@example.com", First_Name="Tom"), crm("twice@example.com", First_Name="Thomas")]
    person = ledger.change("twice@example.com", "sms_marketing", "opted_in")
    push_all(zoho)
    assert CrmLink.objects.get(contact=person).state == CrmLink.State.DUPLICATE
    assert not ZohoCall.objects.filter(operation="crm.update").exists()
    return person, sorted(records)


def test_the_groups_show_each_records_key_fields_read_from_zoho(
    held: tuple[Any, list[str]], zoho: Any
) -> None:
    person, records = held

    groups = duplicate_groups(zoho=zoho)

    assert groups.total == 1 and groups.read_error == ""
    (group,) = groups.groups
    assert group.contact == person
    assert [r.record_id for r in group.records] == records
    assert {r.name for r in group.records} == {"Tom twice", "Thomas twice"}
    assert all(r.fields["Email"] == "twice@example.com" for r in group.records)
    assert group.discrepancy_id == Discrepancy.objects.get(contact=person, kind="duplicate").pk


def test_write_to_all_is_recorded_and_every_record_is_written_and_verified(
    held: tuple[Any, list[str]], zoho: Any, sim: Any, admin_user: Any
) -> None:
    person, records = held

    decision = duplicate_decide(
        contact_id=person.pk,
        choice="write_all",
        reason="Both are hers: a work and a home record",
        user=admin_user,
    )

    assert (decision.decided_by, decision.decided_by_name, decision.reason) == (
        admin_user,
        admin_user.username,
        "Both are hers: a work and a home record",
    )
    assert decision.decided_at is not None
    assert sorted(c["record_id"] for c in decision.candidates) == records
    assert OutboxEntry.objects.filter(contact=person, processed_at__isnull=True).count() == 1
    assert not Discrepancy.objects.filter(contact=person, status="open").exists()
    assert set(CrmLinkRecord.objects.filter(contact=person).values_list("role", flat=True)) == {"all"}

    push_all(zoho)
    assert [c.records for c in ZohoCall.objects.filter(operation="crm.update")] == [2]
    assert all(sim.contact(r)["SMS_Opt_In"] is True for r in records)
    report = pushes_verify_due(zoho=zoho)

    assert report.verified == 2
    assert set(SyncPush.objects.filter(contact=person).values_list("zoho_id", "verification")) == {
        (records[0], "verified"),
        (records[1], "verified"),
    }
    assert stranded_find().stranded == []


def test_a_primary_is_the_only_record_written(
    held: tuple[Any, list[str]], zoho: Any, sim: Any, admin_user: Any
) -> None:
    person, records = held

    duplicate_decide(
        contact_id=person.pk,
        choice="primary",
        primary=f"Contacts:{records[1]}",
        reason="The older record is a leftover",
        user=admin_user,
    )
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    assert sim.contact(records[1])["SMS_Opt_In"] is True
    assert sim.contact(records[0])["SMS_Opt_In"] is False
    assert list(CrmLinkRecord.objects.filter(contact=person).values_list("record_id", "role")) == [
        (records[1], "primary")
    ]
    assert CrmLink.objects.get(contact=person).candidates == [records[1]]
    assert SyncPush.objects.get(contact=person).verification == "verified"


def test_a_version_acknowledged_is_never_written_twice_to_a_record(
    held: tuple[Any, list[str]], zoho: Any, sim: Any, admin_user: Any, engine_settings: Any
) -> None:
    person, _ = held
    engine_settings.CONSENT_VERIFY_DELAY_S = 3600
    duplicate_decide(contact_id=person.pk, choice="write_all", reason="both", user=admin_user)
    push_all(zoho)
    from sync.outbox import contacts_requeue

    contacts_requeue(contact_ids=[person.pk])  # the same change again (a redelivery, the audit)
    push_all(zoho)

    assert len(sim.writes()) == 2, "one write per record, none twice"
    assert SyncPush.objects.filter(contact=person).count() == 2


def test_a_change_while_one_record_is_reset_leaves_the_contact_flagged_not_verified(
    held: tuple[Any, list[str]], zoho: Any, sim: Any, admin_user: Any
) -> None:
    person, records = held
    sim.fault("workflow_reset", field="SMS_Opt_In", value=False, delay_s=0, record_ids=[records[0]])
    duplicate_decide(contact_id=person.pk, choice="write_all", reason="both", user=admin_user)
    push_all(zoho)

    report = pushes_verify_due(zoho=zoho)

    assert report.verified == 1 and report.mismatched == 1
    d = Discrepancy.objects.get(contact=person, status="open")
    assert (d.crm_field, d.zoho_id) == ("SMS_Opt_In", records[0])
    assert CrmLink.objects.get(contact=person).last_verified_at is None, "one record of two is not verified"


def test_a_decision_needs_a_reason_a_held_contact_and_a_candidate(
    held: tuple[Any, list[str]], admin_user: Any, ledger: Any, crm: Any, zoho: Any
) -> None:
    person, _ = held
    with pytest.raises(DecisionRefused, match="why"):
        duplicate_decide(contact_id=person.pk, choice="write_all", reason="  ", user=admin_user)
    with pytest.raises(DecisionRefused, match="primary"):
        duplicate_decide(
            contact_id=person.pk, choice="primary", primary="Contacts:123", reason="x", user=admin_user
        )
    single = ledger.change("single@example.com", "sms_marketing", "opted_in")
    with pytest.raises(DecisionRefused, match="not held"):
        duplicate_decide(contact_id=single.pk, choice="write_all", reason="x", user=admin_user)
    assert not DuplicateDecision.objects.exists()
    assert CrmLink.objects.get(contact=person).state == CrmLink.State.DUPLICATE


def test_a_decision_is_never_changed(held: tuple[Any, list[str]], admin_user: Any) -> None:
    person, _ = held
    decision = duplicate_decide(contact_id=person.pk, choice="write_all", reason="both", user=admin_user)
    decision.reason = "rewritten"
    with pytest.raises(ValueError, match="never changed"):
        decision.save()


@pytest.mark.parametrize("who", ["officer", "auditor", "outsider"])
def test_only_admins_see_and_decide_duplicates(
    who: str, request: pytest.FixtureRequest, held: tuple[Any, list[str]], client_for: Any
) -> None:
    person, _ = held
    client = client_for(request.getfixturevalue(who))

    assert client.get("/sync/duplicates/").status_code == 403
    response = client.post(f"/sync/duplicates/{person.pk}/decide/", {"choice": "write_all", "reason": "x"})

    assert response.status_code == 403
    assert not DuplicateDecision.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in(client: Client) -> None:
    response = client.get("/sync/duplicates/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_the_page_posts_the_choice_and_says_what_it_recorded(
    held: tuple[Any, list[str]], client_for: Any, admin_user: Any, sim_settings: Any
) -> None:
    person, records = held
    client = client_for(admin_user)

    page = client.get("/sync/duplicates/")
    assert page.status_code == 200
    assert records[0] in page.content.decode() and "Thomas" in page.content.decode()
    response = client.post(
        f"/sync/duplicates/{person.pk}/decide/",
        {"choice": "primary", "primary": f"Contacts:{records[0]}", "reason": "newest"},
        follow=True,
    )

    assert "as the primary" in response.content.decode()
    assert DuplicateDecision.objects.get().primary_record_id == records[0]
    refused = client.post(
        f"/sync/duplicates/{person.pk}/decide/", {"choice": "write_all", "reason": "x"}, follow=True
    )
    assert "not held" in refused.content.decode()
    assert DuplicateDecision.objects.count() == 1
