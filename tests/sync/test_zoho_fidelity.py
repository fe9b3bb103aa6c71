"""The client against the places where real Zoho is stricter than zohosim used to be (issue #12,
item 7; zoho-api.md section 11): each one handled as Zoho answers it."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache

from sync.crm_changes import is_workflow, workflow_user_ids
from sync.models import Discrepancy, SyncPush, ZohoCall
from sync.outbox import outbox_claim
from sync.projection import PICKLISTS_KEY
from sync.push import outbox_batch_push
from sync.zoho import NullCallLog, ZohoAuthError, ZohoClient
from sync.zoho.locks import SharedSemaphore
from tests.sync.conftest import Sim, make_client

WORKFLOW_USER_ID = "5725767000000000002"


def push_all(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)


@pytest.fixture
def fresh_picklists() -> Any:
    """The consent picklists are cached for every process: each test here reads its own."""
    caches["default"].delete(PICKLISTS_KEY)
    yield
    caches["default"].delete(PICKLISTS_KEY)


def test_authentication_failure_refreshes_the_token_once_and_succeeds(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    sim.config(invalid_token_code="AUTHENTICATION_FAILURE")
    sim.expire_tokens()

    assert zoho.crm.current_user().id
    assert sim.mints() == 2
    codes = list(ZohoCall.objects.filter(operation="crm.current_user").values_list("zoho_code", flat=True))
    assert codes == ["", "AUTHENTICATION_FAILURE", ""]


def test_authentication_failure_after_the_refresh_is_permanent(zoho: ZohoClient, sim: Sim) -> None:
    zoho.crm.current_user()
    sim.config(invalid_token_code="AUTHENTICATION_FAILURE")
    sim.fault("expire_tokens", ratio=1.0, ops=["crm.users"], for_s=60)

    with pytest.raises(ZohoAuthError) as caught:
        zoho.crm.current_user()

    assert caught.value.code == "AUTHENTICATION_FAILURE" and caught.value.permanent
    assert sim.mints() == 2


def test_a_missing_scope_is_a_permanent_auth_error_that_says_so(zoho: ZohoClient, sim: Sim) -> None:
    sim.fault("missing_scope", scope="ZohoCRM.coql.READ")

    with pytest.raises(ZohoAuthError) as caught:
        zoho.crm.coql("select Email from Contacts limit 1")

    assert caught.value.code == "OAUTH_SCOPE_MISMATCH" and caught.value.permanent
    assert "scope" in str(caught.value)


def test_cannot_process_is_permanent_and_the_push_is_not_retried(
    ledger: Any, crm: Any, zoho: ZohoClient, sim: Sim, engine_settings: Any
) -> None:
    record = crm("stopped@example.com")
    sim.fault("stop_processing", record_ids=[record])
    contact = ledger.change("stopped@example.com", "sms_marketing", "opted_in")

    push_all(zoho)

    push = SyncPush.objects.get(contact=contact)
    assert push.verification == SyncPush.Verification.REJECTED
    assert push.response["code"] == "CANNOT_PROCESS"
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.kind == Discrepancy.Kind.REJECTED


def test_an_unknown_field_fails_that_record_only_naming_the_field(
    zoho: ZohoClient, sim: Sim, crm: Any
) -> None:
    good, bad = crm("good@example.com"), crm("bad@example.com")

    update = zoho.crm.update([{"id": good, "SMS_Opt_In": True}, {"id": bad, "Nope__c": True}])

    ok, refused = update.results
    assert ok.ok
    assert refused.code == "INVALID_DATA" and refused.permanent
    assert refused.details["api_name"] == "Nope__c"


def test_field_metadata_tells_the_users_read_only_from_everyones(zoho: ZohoClient, sim: Sim) -> None:
    sim.fault(
        "field_no_permission", fields=["SMS_Opt_In", "Data_Processing_Basis_Details.Contact_Through_Phone"]
    )

    fields = zoho.crm.fields("Contacts")
    consent = zoho.crm.consent_fields()

    assert fields["SMS_Opt_In"].read_only and not fields["SMS_Opt_In"].field_read_only
    assert not fields["SMS_Opt_In"].api_editable
    assert "profile" in fields["SMS_Opt_In"].why_not_editable
    assert fields["Modified_Time"].field_read_only and "everyone" in fields["Modified_Time"].why_not_editable
    assert fields["Email_Opt_Out"].api_editable
    assert not consent["Contact_Through_Phone"].api_editable
    assert consent["Contact_Through_Email"].api_editable
    assert consent["Consent_Through"].picklist[:2] == ("Email", "Call")


def test_the_consent_picklists_come_from_the_orgs_metadata(
    ledger: Any, crm: Any, zoho: ZohoClient, sim: Sim, engine_settings: Any, fresh_picklists: Any
) -> None:
    sim.config(
        consent_basis_values=["Consent - Pending", "Consent - Obtained", "Consent - Not Responded"],
        consent_through_values=["Email", "Call", "Portal"],
    )
    record = crm("picky@example.com")
    contact = ledger.change("picky@example.com", "phone_marketing", "opted_in")  # source mobile_app

    push_all(zoho)

    details = sim.contact(record)["Data_Processing_Basis_Details"]
    assert details["Data_Processing_Basis"] == "Consent - Obtained"
    assert details["Consent_Through"] == "Portal"  # the org has no "Mobile app": its nearest value
    assert SyncPush.objects.get(contact=contact).response["code"] == "SUCCESS"


def test_a_picklist_without_a_fitting_value_is_left_out_not_guessed(
    ledger: Any, crm: Any, zoho: ZohoClient, sim: Sim, engine_settings: Any, fresh_picklists: Any
) -> None:
    sim.config(consent_through_values=["Survey"])
    record = crm("survey@example.com")
    ledger.change("survey@example.com", "phone_marketing", "opted_in")

    push_all(zoho)

    details = sim.contact(record)["Data_Processing_Basis_Details"]
    assert "Consent_Through" not in details or details["Consent_Through"] is None
    assert details["Contact_Through_Phone"] is True


def test_coql_shows_last_names_so_workflow_edits_are_known_by_id(
    zoho: ZohoClient, sim: Sim, db: None
) -> None:
    ids = workflow_user_ids(zoho)

    assert WORKFLOW_USER_ID in ids
    assert is_workflow(WORKFLOW_USER_ID, "consent", ids=ids)  # COQL's last name of the workflow
    assert not is_workflow(WORKFLOW_USER_ID, "consent")  # by that name alone it would be missed


def test_no_more_than_the_limit_of_complex_calls_are_in_flight(sim: Sim, db: None) -> None:
    sim.fault("slow", delay_s=0.3, ops=["crm.coql"])
    # Three workers' clients of one org (one cache prefix), six complex calls at once.
    cache = caches["default"]
    prefix = f"zoho-test-{uuid.uuid4().hex[:8]}"
    clients = [
        make_client(sim, cache=cache, call_log=NullCallLog(), complex_limit=2, cache_prefix=prefix)
        for _ in range(3)
    ]
    errors: list[BaseException] = []

    def query(client: ZohoClient) -> None:
        try:
            client.crm.coql("select Email from Contacts limit 1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=query, args=(clients[n % 3],)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sim.stats()["peak_in_flight_heavy"] == 2
    assert len(sim.calls("crm.coql")) == 6


@pytest.mark.parametrize("backend", ["redis", "file"])
def test_the_complex_call_semaphore_is_shared_through_the_cache(
    backend: str, tmp_path: Any, redis_url: str
) -> None:
    if backend == "redis":
        cache: Any = RedisCache(redis_url, {})
    else:
        cache = FileBasedCache(str(tmp_path), {})
    name = f"test-sem-{uuid.uuid4().hex[:8]}"
    first = SharedSemaphore(cache, name, limit=2, expire_s=30)
    second = SharedSemaphore(cache, name, limit=2, expire_s=30)  # another worker's view of it

    held = [first.acquire(timeout_s=0), second.acquire(timeout_s=0)]
    refused = second.acquire(timeout_s=0)
    assert held[0] is not None
    held[0].release()
    again = second.acquire(timeout_s=0)

    assert held[1] is not None and refused is None and again is not None
    for slot in (held[1], again):
        slot.release()


def test_bulk_read_pages_past_the_first_page_by_token(zoho: ZohoClient, sim: Sim) -> None:
    sim.config(bulk_read_polls_to_complete=0, bulk_read_per_page=3, bulk_read_page_limit_rows=3)
    for n in range(7):
        sim.add_contact(Last_Name=f"P{n}", Email=f"p{n}@example.com")
    seen: list[str] = []

    job = zoho.crm.bulk.wait(zoho.crm.bulk.create(["Email"]).id, poll_s=0)
    seen += [row["Email"] for row in zoho.crm.bulk.rows(job.id)]
    while job.more_records:
        assert job.next_page_token
        job = zoho.crm.bulk.wait(zoho.crm.bulk.create(["Email"], page_token=job.next_page_token).id, poll_s=0)
        seen += [row["Email"] for row in zoho.crm.bulk.rows(job.id)]

    assert seen == [f"p{n}@example.com" for n in range(7)]
    assert len(sim.calls("bulk.read.create")) == 3


def test_a_250000_contact_bulk_read_pages_with_a_page_token(zoho: ZohoClient, sim: Sim) -> None:
    sim.config(bulk_read_polls_to_complete=0)
    state = sim.state
    with state.lock:
        for n in range(250_000):
            state.add_record("Contacts", Last_Name="P", Email=f"p{n}@example.com")
    counts: list[int] = []

    job = zoho.crm.bulk.wait(zoho.crm.bulk.create(["Email"]).id, poll_s=0)
    counts.append(sum(1 for _ in zoho.crm.bulk.table(job.id)) - 1)
    token = job.next_page_token
    assert job.more_records and token
    job = zoho.crm.bulk.wait(zoho.crm.bulk.create(["Email"], page_token=token).id, poll_s=0)
    counts.append(sum(1 for _ in zoho.crm.bulk.table(job.id)) - 1)

    assert counts == [200_000, 50_000]
    assert not job.more_records
