"""Push: outbox claims, one update call per 100 contacts, CRM lookup, per-record errors, Campaigns."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from django.core.cache.backends.locmem import LocMemCache

from compliance.models import OutboxEntry
from sync.models import CrmLink, Discrepancy, SyncPush, ZohoCall
from sync.outbox import lease, outbox_claim, outbox_claim_return, outbox_claim_take, outbox_release
from sync.push import contacts_push, outbox_batch_push
from sync.zoho import ZohoRateLimited
from sync.zoho.campaigns_limits import CampaignsLimits, Window
from sync.zoho.crm_results import RecordResult, record_results
from sync.zoho.errors import ZohoTransientError
from sync.zoho.transport import ZohoResponse


def push_all(zoho: Any) -> list[Any]:
    reports = []
    while claim := outbox_claim(worker="test"):
        reports.append(outbox_batch_push(claim=claim, zoho=zoho))
    return reports


def test_it_claims_withdrawals_first_and_never_the_same_row_twice(ledger: Any) -> None:
    ledger.change("in@example.com", "sms_marketing", "opted_in")
    ledger.change("out@example.com", "sms_marketing", "opted_out")

    first = outbox_claim(worker="a", max_contacts=1)
    second = outbox_claim(worker="b", max_contacts=1)
    third = outbox_claim(worker="c", max_contacts=1)

    rows = {row.contact.email: row for row in OutboxEntry.objects.select_related("contact")}
    assert first.entry_ids == [rows["out@example.com"].pk]
    assert second.entry_ids == [rows["in@example.com"].pk]
    assert not third


def test_a_claim_whose_worker_died_is_taken_again_after_the_lease(ledger: Any) -> None:
    ledger.change("a@example.com", "sms_marketing", "opted_in")
    first = outbox_claim(worker="dead")
    assert not outbox_claim(worker="other")

    OutboxEntry.objects.update(claimed_at=OutboxEntry.objects.get().claimed_at - lease())

    again = outbox_claim(worker="other")
    assert again.entry_ids == first.entry_ids
    assert again.token != first.token


def test_a_released_claim_waits_for_its_backoff(ledger: Any) -> None:
    from datetime import timedelta

    ledger.change("a@example.com", "sms_marketing", "opted_in")
    claim = outbox_claim(worker="w")
    outbox_release(claim=claim, delay=timedelta(minutes=5))
    assert not outbox_claim(worker="w")
    outbox_release(claim=claim, delay=timedelta(0))
    assert outbox_claim(worker="w")


def test_it_pushes_250_contacts_in_three_update_calls(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    for i in range(250):
        ledger.change(f"p{i}@example.com", "sms_marketing", "opted_in", zoho_id=crm(f"p{i}@example.com"))

    reports = push_all(zoho)

    assert [len(r.pushed) for r in reports] == [100, 100, 50]
    assert ZohoCall.objects.filter(operation="crm.update").count() == 3
    assert max(call.records for call in ZohoCall.objects.filter(operation="crm.update")) == 100
    assert SyncPush.objects.count() == 250
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()
    push = SyncPush.objects.first()
    assert push is not None and push.call is not None and push.call.operation == "crm.update"
    assert push.sent["SMS_Opt_In"] is True and push.verify_due_at is not None
    assert sim.contact(push.zoho_id)["SMS_Opt_In"] is True


def test_a_contact_without_zoho_id_is_found_by_email_and_linked(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    record_id = crm("found@example.com")
    contact = ledger.change("found@example.com", "profiling", "opted_in")

    push_all(zoho)

    link = CrmLink.objects.get(contact=contact)
    assert link.state == CrmLink.State.LINKED and link.candidates == [record_id]
    assert sim.contact(record_id)["Profiling_Consent"] is True
    # The next change uses the link: no second lookup (linking is one COQL query per 50 contacts).
    ledger.change("found@example.com", "profiling", "opted_out")
    push_all(zoho)
    assert len(sim.calls("crm.coql")) == 1 and not sim.calls("crm.search")
    assert sim.contact(record_id)["Profiling_Consent"] is False


def test_a_contact_missing_in_crm_is_recorded_not_created_and_is_no_discrepancy(
    ledger: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    contact = ledger.change("nobody@example.com", "sms_marketing", "opted_in")

    push_all(zoho)

    assert CrmLink.objects.get(contact=contact).state == CrmLink.State.NOT_IN_CRM
    assert not Discrepancy.objects.exists()
    assert not SyncPush.objects.exists()
    assert sim.writes() == []
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()


def test_duplicates_in_crm_are_a_discrepancy_and_neither_record_is_written(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    first = crm("twice@example.com")
    second = crm("twice@example.com")
    contact = ledger.change("twice@example.com", "sms_marketing", "opted_in")

    push_all(zoho)
    ledger.change("twice@example.com", "sms_marketing", "opted_out")
    push_all(zoho)

    link = CrmLink.objects.get(contact=contact)
    assert link.state == CrmLink.State.DUPLICATE and sorted(link.candidates) == sorted([first, second])
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.kind == Discrepancy.Kind.DUPLICATE and discrepancy.next_retry_at is None
    assert "twice@example.com" in discrepancy.hint
    assert [w for w in sim.writes() if w["source"] == "api"] == []


def test_a_redelivered_batch_does_not_write_the_same_version_again(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    contact = ledger.change("once@example.com", "sms_marketing", "opted_in", zoho_id=crm("once@example.com"))
    claim = outbox_claim(worker="w")
    outbox_batch_push(claim=claim, zoho=zoho)

    # The same claim again (a message delivered twice), and a forced re-push of the outbox row.
    OutboxEntry.objects.update(processed_at=None)
    again = outbox_batch_push(claim=claim, zoho=zoho)

    assert again.skipped == [contact.pk]
    assert len([w for w in sim.writes() if w["source"] == "api"]) == 1
    assert SyncPush.objects.count() == 1


def test_a_transient_error_stores_nothing_and_leaves_the_rows_pending(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    ledger.change("busy@example.com", "sms_marketing", "opted_in", zoho_id=crm("busy@example.com"))
    sim.fault("rate_limit", ratio=1, ops=["crm.update"])
    claim = outbox_claim(worker="w")

    with pytest.raises(ZohoRateLimited):
        outbox_batch_push(claim=claim, zoho=zoho)

    assert not SyncPush.objects.exists()
    assert OutboxEntry.objects.filter(processed_at__isnull=True).count() == 1
    sim.clear_faults()
    from sync import quota

    quota.gates_reset()
    outbox_batch_push(claim=claim, zoho=zoho)
    assert SyncPush.objects.count() == 1


def test_no_permission_is_a_permission_denied_discrepancy_naming_the_field(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    contact = ledger.change("deny@example.com", "sms_marketing", "opted_in", zoho_id=crm("deny@example.com"))
    sim.fault("field_no_permission", field="SMS_Opt_In", mode="error")

    push_all(zoho)

    push = SyncPush.objects.get()
    assert push.verification == SyncPush.Verification.REJECTED
    assert push.response["code"] == "NO_PERMISSION"
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.kind == Discrepancy.Kind.PERMISSION_DENIED
    assert discrepancy.crm_field == "SMS_Opt_In"
    assert "SMS_Opt_In" in discrepancy.hint
    assert discrepancy.evidence["zoho_answer"]["code"] == "NO_PERMISSION"


@pytest.mark.parametrize("shape", ["id", "api_name"])
def test_an_unknown_record_id_is_a_record_missing_discrepancy(
    shape: str, ledger: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Zoho names the unknown id as details.id, or as the field "id" at $.data[N].id: both mean
    # the record is gone, not that a field was refused.
    sim.config(unknown_id_details=shape)
    contact = ledger.change("gone@example.com", "sms_marketing", "opted_in", zoho_id="5725767000099999999")

    push_all(zoho)

    push = SyncPush.objects.get()
    assert ("api_name" in push.response["details"]) == (shape == "api_name")
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.kind == Discrepancy.Kind.RECORD_MISSING
    assert discrepancy.crm_field == ""


@pytest.mark.parametrize("body", [{"data": [{"code": "SUCCESS", "status": "success"}]}, {"data": []}, {}])
def test_an_answer_with_another_count_of_results_is_retried(body: dict[str, Any]) -> None:
    # One entry per record sent, in order (zoho-api.md section 2): anything else cannot be matched
    # to the records, so the whole call is tried again (the push task retries transient errors).
    response = ZohoResponse(200, body, httpx.Headers())
    with pytest.raises(ZohoTransientError, match="results for 2 records"):
        record_results(response, ["5725767000000000001", "5725767000000000002"])


@pytest.mark.parametrize(
    ("details", "gone"),
    [
        ({"id": "5725767000099999999"}, True),
        ({"api_name": "id", "json_path": "$.data[3].id"}, True),
        ({"api_name": "id"}, True),
        # A consent record's stale id is that field's error: the record itself is there.
        ({"api_name": "id", "json_path": "$.data[0].Data_Processing_Basis_Details.id", "id": "9"}, False),
        ({"api_name": "Email_Opt_Out", "json_path": "$.data[0].Email_Opt_Out"}, False),
    ],
)
def test_which_invalid_data_answers_mean_the_record_is_gone(details: dict[str, str], gone: bool) -> None:
    entry = {"code": "INVALID_DATA", "status": "error", "message": "x", "details": details}
    assert RecordResult.from_entry(entry, "5725767000099999999").gone is gone
    assert not RecordResult.from_entry({**entry, "code": "MANDATORY_NOT_FOUND"}, None).gone


def test_an_email_withdrawal_also_unsubscribes_from_every_campaigns_list(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1", "LK2"]
    sim.seed(
        lists=[
            {"listkey": "LK1", "name": "News", "subscribers": ["leave@example.com", "stay@example.com"]},
            {"listkey": "LK2", "name": "Offers", "subscribers": ["leave@example.com"]},
        ]
    )
    ledger.change("leave@example.com", "email_marketing", "opted_in", zoho_id=crm("leave@example.com"))
    ledger.change("stay@example.com", "email_marketing", "opted_in", zoho_id=crm("stay@example.com"))
    push_all(zoho)
    ledger.change("leave@example.com", "email_marketing", "opted_out")
    ledger.change("stay@example.com", "sms_marketing", "opted_out")

    push_all(zoho)

    lists = {row["listkey"]: row for row in sim.http.get("/_sim/lists").json()["lists"]}
    statuses = {key: {s["email"]: s["status"] for s in lists[key]["subscribers"]} for key in ("LK1", "LK2")}
    assert statuses["LK1"] == {"leave@example.com": "unsub", "stay@example.com": "active"}
    assert statuses["LK2"] == {"leave@example.com": "unsub"}


def test_a_retry_push_writes_again_with_the_next_attempt_number(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    contact = ledger.change(
        "again@example.com", "sms_marketing", "opted_in", zoho_id=crm("again@example.com")
    )
    push_all(zoho)

    report = contacts_push(contact_ids=[contact.pk], zoho=zoho, force=True)

    assert report.pushed[contact.pk].attempt == 2
    assert len([w for w in sim.writes() if w["source"] == "api"]) == 2


def test_campaigns_out_of_reach_does_not_hold_back_the_crm_withdrawal(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Campaigns has locked listunsubscribe (another app of the org used it up): the CRM write of
    # the withdrawal goes out now; its rows stay unprocessed, and the retry only unsubscribes.
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1", "LK2"]
    sim.seed(
        lists=[
            {"listkey": "LK1", "name": "News", "subscribers": ["leave@example.com"]},
            {"listkey": "LK2", "name": "Offers", "subscribers": ["leave@example.com"]},
        ]
    )
    record = crm("leave@example.com")
    contact = ledger.change("leave@example.com", "email_marketing", "opted_in", zoho_id=record)
    push_all(zoho)
    ledger.change("leave@example.com", "email_marketing", "opted_out")
    sim.fault("campaigns_lock", method="listunsubscribe")
    writes_before = len([w for w in sim.writes() if w["source"] == "api"])

    claim = outbox_claim(worker="w")
    with pytest.raises(ZohoRateLimited):
        outbox_batch_push(claim=claim, zoho=zoho)

    assert len([w for w in sim.writes() if w["source"] == "api"]) == writes_before + 1
    assert sim.contact(record)["Email_Opt_Out"] is True
    push = SyncPush.objects.filter(contact=contact).latest("pk")
    assert push.sent["Email_Opt_Out"] is True and push.call_id is not None
    assert OutboxEntry.objects.filter(processed_at__isnull=True).exists()
    assert len(sim.calls("campaigns.listunsubscribe")) == 1  # refused once, then not asked again

    # The lock ends (and our pause after it): the retry writes nothing to CRM, and unsubscribes.
    sim.http.post("/_sim/clock", json={"advance_s": 1801})
    zoho.transport.campaigns_limits = None
    outbox_claim_return(claim=claim, token=claim.token)  # what the task does, then retries
    outbox_batch_push(claim=outbox_claim_take(token=claim.token), zoho=zoho)

    assert len([w for w in sim.writes() if w["source"] == "api"]) == writes_before + 1
    lists = {row["listkey"]: row for row in sim.http.get("/_sim/lists").json()["lists"]}
    assert {key: lists[key]["subscribers"][0]["status"] for key in ("LK1", "LK2")} == {
        "LK1": "unsub",
        "LK2": "unsub",
    }
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()


def test_a_retried_batch_unsubscribes_only_what_campaigns_did_not_take(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Two withdrawals, two lists: four unsubscribes. Our limiter has room for three: the batch
    # stops at the fourth, and its retry sends only that one, not the three again.
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1", "LK2"]
    leaving = ["one@example.com", "two@example.com"]
    sim.seed(
        lists=[
            {"listkey": "LK1", "name": "News", "subscribers": leaving},
            {"listkey": "LK2", "name": "Offers", "subscribers": leaving},
        ]
    )
    for email in leaving:
        ledger.change(email, "email_marketing", "opted_in", zoho_id=crm(email))
    push_all(zoho)
    for email in leaving:
        ledger.change(email, "email_marketing", "opted_out")
    zoho.transport.campaigns_limits = CampaignsLimits(
        LocMemCache(f"t-{uuid.uuid4().hex}", {}),
        zoho.config.cache_prefix,
        share=1,
        limits={"listunsubscribe": (Window(3, 300, 15),)},
    )

    claim = outbox_claim(worker="w")
    with pytest.raises(ZohoRateLimited):
        outbox_batch_push(claim=claim, zoho=zoho)
    assert len(sim.calls("campaigns.listunsubscribe")) == 3

    zoho.transport.campaigns_limits = None  # the window has room again
    outbox_claim_return(claim=claim, token=claim.token)
    outbox_batch_push(claim=outbox_claim_take(token=claim.token), zoho=zoho)

    assert len(sim.calls("campaigns.listunsubscribe")) == 4
    lists = {row["listkey"]: row for row in sim.http.get("/_sim/lists").json()["lists"]}
    assert {(key, s["email"], s["status"]) for key in ("LK1", "LK2") for s in lists[key]["subscribers"]} == {
        (key, email, "unsub") for key in ("LK1", "LK2") for email in leaving
    }
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()

    # A new decision is a new withdrawal: its unsubscribes go out again, all of them.
    for email in leaving:
        ledger.change(email, "email_marketing", "opted_in")
        ledger.change(email, "email_marketing", "opted_out")
    push_all(zoho)

    assert len(sim.calls("campaigns.listunsubscribe")) == 8


def test_without_the_consent_objects_metadata_the_push_goes_on_without_its_picklists(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # An org (or a Zoho) that answers INVALID_MODULE for the consent object's field metadata:
    # the consent flags are written all the same, only the basis and channel picklists are not.
    sim.config(consent_metadata=False)
    record = crm("meta@example.com")
    ledger.change("meta@example.com", "sms_marketing", "opted_in", zoho_id=record)
    ledger.change("meta@example.com", "email_marketing", "opted_out", zoho_id=record)

    push_all(zoho)

    push = SyncPush.objects.get()
    assert push.call_id is not None and push.response["code"] == "SUCCESS"
    assert push.sent["SMS_Opt_In"] is True and push.sent["Email_Opt_Out"] is True
    assert "Data_Processing_Basis_Details.Data_Processing_Basis" not in push.sent
    assert sim.contact(record)["SMS_Opt_In"] is True
    assert [c["code"] for c in sim.calls("crm.fields") if "Consents" in c["query"]] == ["INVALID_MODULE"]
