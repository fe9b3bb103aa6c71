"""The Zoho part of an erasure (issue 14, ERASURE_ZOHO_ACTION): CRM records anonymised, deleted or
left, addresses unsubscribed from every Campaigns list; a durable job that survives a crash after
the commit, retries with backoff and alerts once; against zohosim over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from compliance import services
from compliance.models import Contact, ErasureRequest
from sync.models import Alert, CrmLink, CrmLinkRecord, Discrepancy, ErasureZohoJob, ZohoCall
from sync.reconcile import reconcile
from sync.tasks.erasure import erasure_zoho_due, erasure_zoho_run
from sync.verify import pushes_verify_due
from sync.zoho import ZohoPermanentError
from sync.zoho.crm_erasure import crm_delete
from tests.sync.conftest import Sim
from tests.sync.test_push import push_all

pytestmark = pytest.mark.django_db

EMAIL = "wilhelmina.quast@example.net"
FORMER = "w.quast@example.org"
LIST, OTHER_LIST = "3zlisterase001", "3zlisterase002"
PERSON = {
    "First_Name": "Wilhelmina",
    "Last_Name": "Quast",
    "Phone": "+4930123456",
    "Mobile": "+4915112345678",
}


def _lead(sim: Sim, email: str) -> str:
    answer = sim.http.post(
        "/_sim/contacts",
        params={"module": "Leads"},
        json={"fields": {**PERSON, "Email": email, "Company": "Q"}},
    )
    return str(answer.json()["id"])


def _record(sim: Sim, record_id: str, module: str = "Contacts") -> dict[str, Any] | None:
    answer = sim.http.get(f"/_sim/contacts/{record_id}", params={"module": module})
    return None if answer.status_code == 404 else dict(answer.json())


def _status_in_lists(sim: Sim, email: str) -> dict[str, str]:
    lists = sim.http.get("/_sim/lists").json()["lists"]
    return {m["listkey"]: s["status"] for m in lists for s in m["subscribers"] if s["email"] == email}


def _person(
    ledger: Any, crm: Any, sim: Sim, settings: Any, *, by_zoho_id: bool = True
) -> tuple[Contact, str, str]:
    """The person: a Contact record (the contact's zoho_id, or linked) and a Lead (linked) in CRM,
    opted in to email, a former address, both addresses in two Campaigns lists."""
    contact_record = crm(EMAIL, **PERSON, Email_Opt_Out=False)
    lead_record = _lead(sim, EMAIL)
    identities = [
        services.ContactIdentity(
            email=FORMER, app_user_id="wq-1", zoho_id=contact_record if by_zoho_id else None
        ),
        services.ContactIdentity(app_user_id="wq-1", email=EMAIL, update_identity=True),
    ]
    for number, (identity, status) in enumerate(zip(identities, ("opted_in", "opted_out"), strict=True)):
        services.consent_ingest(
            identity=identity,
            decision=services.ConsentDecision(
                purpose="email_marketing" if status == "opted_in" else "profiling",
                status=status,
                source="mobile_app",
                occurred_at=timezone.now() - timedelta(seconds=60 - number),
                idempotency_key=f"person-{number}",
                policy_version=ledger.policy.label,
                evidence={"double_opt_in_confirmed_at": timezone.now().isoformat()},
            ),
        )
    contact = Contact.objects.get(email=EMAIL)
    CrmLink.objects.create(
        contact=contact, state="linked", checked_at=timezone.now(), matched_by="email", matched_value=EMAIL
    )
    CrmLinkRecord.objects.create(contact=contact, module="Leads", record_id=lead_record)
    if not by_zoho_id:
        CrmLinkRecord.objects.create(contact=contact, module="Contacts", record_id=contact_record)
        settings.ZOHO_MODULES = ["Contacts", "Leads"]
    sim.seed(
        lists=[
            {"listkey": key, "name": key, "subscribers": [{"email": EMAIL}, {"email": FORMER}]}
            for key in (LIST, OTHER_LIST)
        ]
    )
    settings.ZOHO_CAMPAIGNS_LIST_KEYS = [LIST, OTHER_LIST]
    return contact, contact_record, lead_record


def _erase(contact: Contact, capture: Any) -> ErasureZohoJob:
    with capture(execute=True):
        services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)
    return ErasureZohoJob.objects.get(contact=contact)


def _no_address_left(job: ErasureZohoJob) -> None:
    job.refresh_from_db()
    row = json.dumps([job.records, job.records_left, job.list_keys, job.campaigns_left, job.last_error])
    assert EMAIL not in row and FORMER not in row
    assert job.campaigns_left == []


def test_anonymise_neutralises_every_crm_record_and_unsubscribes_every_address(
    ledger, crm, sim, sim_settings, django_capture_on_commit_callbacks
):
    sim_settings.ERASURE_ZOHO_ACTION = "anonymise"
    contact, contact_record, lead_record = _person(ledger, crm, sim, sim_settings)

    job = _erase(contact, django_capture_on_commit_callbacks)
    assert job.action == "anonymise" and job.done_at is None
    assert sorted(map(tuple, job.campaigns_left)) == sorted(
        (key, email) for key in (LIST, OTHER_LIST) for email in (EMAIL, FORMER)
    )
    assert _record(sim, contact_record)["First_Name"] == "Wilhelmina"  # nothing sent before the run

    assert erasure_zoho_run(job.pk) == {"job": job.pk, "ran": True, "done": True}

    for record_id, module in ((contact_record, "Contacts"), (lead_record, "Leads")):
        record = _record(sim, record_id, module)
        assert record is not None
        assert (record["First_Name"], record["Last_Name"], record["Email"]) == (None, "[erased]", None)
        assert (record["Phone"], record["Mobile"]) == (None, None)
        assert record["Email_Opt_Out"] is True  # the consent fields say opted out
    assert _status_in_lists(sim, EMAIL) == {LIST: "unsub", OTHER_LIST: "unsub"}
    assert _status_in_lists(sim, FORMER) == {LIST: "unsub", OTHER_LIST: "unsub"}
    _no_address_left(job)
    assert job.records == [
        {"module": "Contacts", "record_id": contact_record},
        {"module": "Leads", "record_id": lead_record},
    ]
    assert job.records_left == [] and job.attempts == 0
    calls = ZohoCall.objects.filter(started_at__gte=job.created_at)
    operations = sorted(calls.values_list("operation", flat=True))
    assert operations == ["accounts.refresh", *["campaigns.unsubscribe"] * 4, "crm.update", "crm.update"]
    assert not calls.exclude(outcome="ok").exists()
    # A second run finds nothing to do.
    assert erasure_zoho_run(job.pk)["ran"] is False


def test_delete_waits_for_the_withdrawal_then_deletes_the_contact_and_the_lead(
    ledger, crm, sim, zoho, sim_settings, django_capture_on_commit_callbacks
):
    sim_settings.ERASURE_ZOHO_ACTION = "delete"
    contact, contact_record, lead_record = _person(ledger, crm, sim, sim_settings, by_zoho_id=False)
    push_all(zoho)  # the opt-in is in CRM
    job = _erase(contact, django_capture_on_commit_callbacks)

    # The erasure's withdrawal is not pushed yet: the records stay, the addresses go.
    erasure_zoho_due()
    job.refresh_from_db()
    assert job.done_at is None and job.attempts == 0 and len(job.records_left) == 2
    assert "waiting for the erasure's withdrawal" in job.last_error
    assert _record(sim, contact_record) is not None
    assert _status_in_lists(sim, EMAIL) == {LIST: "unsub", OTHER_LIST: "unsub"}

    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    assert _record(sim, contact_record)["Email_Opt_Out"] is True
    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert erasure_zoho_due() == {"ran": 1, "done": 1}

    assert _record(sim, contact_record) is None
    assert _record(sim, lead_record, "Leads") is None
    assert not CrmLinkRecord.objects.filter(contact=contact).exists()
    assert CrmLink.objects.get(contact=contact).state == CrmLink.State.NOT_IN_CRM
    deletes = ZohoCall.objects.filter(operation="crm.delete").order_by("id")
    assert [(c.method, c.path, c.http_status, c.outcome) for c in deletes] == [
        ("DELETE", "/crm/v8/Contacts", 200, "ok"),
        ("DELETE", "/crm/v8/Leads", 200, "ok"),
    ]
    _no_address_left(job)


def test_a_record_already_gone_counts_as_deleted(
    ledger, crm, sim, zoho, sim_settings, django_capture_on_commit_callbacks
):
    sim_settings.ERASURE_ZOHO_ACTION = "delete"
    contact = ledger.change(EMAIL, "email_marketing", "opted_out", zoho_id=crm(EMAIL))
    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    sim.state.delete_record("Contacts", contact.zoho_id)  # a CRM user deleted it meanwhile
    job = _erase(contact, django_capture_on_commit_callbacks)

    assert erasure_zoho_run(job.pk)["done"] is True
    call = ZohoCall.objects.get(operation="crm.delete")
    assert (call.http_status, call.zoho_code) == (400, "INVALID_DATA")

    # The record is gone on purpose: the daily reconciliation (which reads someone else's record,
    # so that it is a complete run that checks what it did not see) does not call it missing.
    crm("someone.else@example.org")
    run = reconcile(client=zoho)
    assert run.finished_at is not None and run.error == "" and run.records_read == 1
    assert not Discrepancy.objects.filter(contact=contact, kind=Discrepancy.Kind.RECORD_MISSING).exists()


def test_none_leaves_the_crm_record_but_unsubscribes_the_address(
    ledger, crm, sim, sim_settings, django_capture_on_commit_callbacks
):
    sim_settings.ERASURE_ZOHO_ACTION = "none"
    contact, contact_record, lead_record = _person(ledger, crm, sim, sim_settings)
    job = _erase(contact, django_capture_on_commit_callbacks)
    assert job.records_left == [] and len(job.records) == 2

    erasure_zoho_due()

    assert _record(sim, contact_record)["Last_Name"] == "Quast"
    assert _record(sim, lead_record, "Leads")["Email"] == EMAIL
    assert _status_in_lists(sim, EMAIL) == {LIST: "unsub", OTHER_LIST: "unsub"}
    assert not ZohoCall.objects.filter(service="crm").exists()
    _no_address_left(job)
    assert job.done_at is not None


def test_nothing_in_zoho_makes_a_job_done_at_once(ledger, sim_settings, django_capture_on_commit_callbacks):
    sim_settings.ZOHO_CAMPAIGNS_LIST_KEYS = []
    contact = ledger.change(EMAIL, "email_marketing", "opted_in")

    job = _erase(contact, django_capture_on_commit_callbacks)

    assert job.done_at is not None and job.campaigns_left == [] and job.records == []
    assert erasure_zoho_due() == {"ran": 0, "done": 0}


def test_a_crash_after_the_commit_leaves_the_job_pending_and_beat_completes_it(
    ledger, crm, sim, sim_settings, django_capture_on_commit_callbacks
):
    # Given an erasure committed whose queued run never happened (the worker died, the broker
    # lost it: SYNC_PUSH_ON_COMMIT is off here, so nothing was queued at all)
    contact, contact_record, _ = _person(ledger, crm, sim, sim_settings)
    job = _erase(contact, django_capture_on_commit_callbacks)
    assert job.done_at is None and [LIST, EMAIL] in job.campaigns_left
    assert ErasureRequest.objects.get(contact=contact).status == ErasureRequest.Status.DONE
    assert _record(sim, contact_record)["Email"] == EMAIL

    # When beat's next round runs
    assert erasure_zoho_due() == {"ran": 1, "done": 1}

    # Then Zoho has forgotten the person and the job the address
    assert _record(sim, contact_record)["Email"] is None
    assert _status_in_lists(sim, EMAIL) == {LIST: "unsub", OTHER_LIST: "unsub"}
    _no_address_left(job)


def test_a_failing_zoho_is_retried_with_backoff_and_alerts_once_after_three_runs(
    ledger, crm, sim, sim_settings, django_capture_on_commit_callbacks
):
    contact, contact_record, _ = _person(ledger, crm, sim, sim_settings)
    job = _erase(contact, django_capture_on_commit_callbacks)
    sim.fault("server_error", ops=["crm.update"])

    sim_settings.SYNC_RETRY_BASE_S = 60
    erasure_zoho_due()
    job.refresh_from_db()
    assert job.attempts == 1 and "Internal Server Error" in job.last_error
    assert erasure_zoho_due() == {"ran": 0, "done": 0}  # backing off for a minute
    assert _status_in_lists(sim, EMAIL) == {LIST: "unsub", OTHER_LIST: "unsub"}  # Campaigns went on

    sim_settings.SYNC_RETRY_BASE_S = 0
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        with django_capture_on_commit_callbacks(execute=True):
            erasure_zoho_due()
            assert not Alert.objects.exists()
            erasure_zoho_due()
            erasure_zoho_due()
        job.refresh_from_db()
        assert job.attempts == 4 and job.done_at is None and len(job.records_left) == 2
        alert = Alert.objects.get()
        assert alert.kind == Alert.Kind.ERASURE_ZOHO
        assert f"contact {contact.pk}" in alert.message and "2 CRM record(s)" in alert.message
        assert EMAIL not in alert.message and "Wilhelmina" not in alert.message
        assert len(mail.outbox) == 1 and f"contact {contact.pk}" in mail.outbox[0].subject

        sim.clear_faults()
        assert erasure_zoho_due() == {"ran": 1, "done": 1}
    assert Alert.objects.count() == 1
    assert _record(sim, contact_record)["Email"] is None
    _no_address_left(job)
    assert job.last_error == ""


def test_the_jobs_own_calls_keep_no_address(
    ledger, crm, sim, sim_settings, django_capture_on_commit_callbacks
):
    # Zoho echoing the address in an error (a Campaigns lock, here) leaves it in no call row.
    sim.config(campaigns_lock_message=f"Please retry after some time: {EMAIL} is busy.")
    contact, _, _ = _person(ledger, crm, sim, sim_settings)
    job = _erase(contact, django_capture_on_commit_callbacks)
    sim.fault("campaigns_lock", method="listunsubscribe")

    erasure_zoho_run(job.pk)

    locked = ZohoCall.objects.get(operation="campaigns.unsubscribe")
    assert "[erased] is busy" in locked.error and EMAIL not in locked.error
    job.refresh_from_db()
    assert job.attempts == 1 and "[erased] is busy" in job.last_error and EMAIL not in job.last_error
    assert len(job.campaigns_left) == 4  # locked: every address waits for the next run


def test_a_bad_erasure_zoho_action_stops_the_start() -> None:
    env = {**os.environ, "ERASURE_ZOHO_ACTION": "shred", "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode != 0
    assert "ERASURE_ZOHO_ACTION is one of delete, anonymise or none, not 'shred'." in result.stderr


def test_crm_delete_answers_each_id_and_refuses_more_than_100_before_sending(zoho, sim):
    kept, gone = sim.add_contact(Last_Name="Kept"), sim.add_contact(Last_Name="Gone")

    update = crm_delete(zoho.crm, [gone, "5725767000999999999"])

    assert [(r.code, r.record_id, r.ok, r.gone) for r in update.results] == [
        ("SUCCESS", gone, True, False),
        ("INVALID_DATA", "5725767000999999999", False, True),
    ]
    call = ZohoCall.objects.get(pk=update.call_id)
    assert (call.operation, call.http_status, call.outcome) == ("crm.delete", 207, "ok")
    assert _record(sim, gone) is None and _record(sim, kept) is not None
    with pytest.raises(ZohoPermanentError) as refused:
        crm_delete(zoho.crm, [str(n) for n in range(1, 102)])
    assert refused.value.code == "LIMIT_EXCEEDED"
    assert ZohoCall.objects.filter(operation="crm.delete").count() == 1


@pytest.mark.soak
@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_the_job_right_after_the_erasure_commits(workers, ledger, crm, sim, settings):
    # Given a real worker (its settings from the environment, like production's) and no beat
    settings.ZOHO_CAMPAIGNS_LIST_KEYS, workers.env["ZOHO_CAMPAIGNS_LIST_KEYS"] = [LIST], LIST
    workers.start(1)
    workers.wait_ready()
    contact = ledger.change(EMAIL, "sms_marketing", "opted_in", zoho_id=crm(EMAIL, **PERSON))
    sim.seed(lists=[{"listkey": LIST, "name": LIST, "subscribers": [{"email": EMAIL}]}])

    # When the erasure commits
    services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)

    # Then the run queued on commit makes Zoho forget the person, without waiting for beat
    job = ErasureZohoJob.objects.get(contact=contact)
    workers.wait_until(
        lambda: ErasureZohoJob.objects.filter(pk=job.pk, done_at__isnull=False).exists(),
        "the erasure's Zoho job done",
        beat=False,
    )
    record = _record(sim, contact.zoho_id)
    assert (record["Last_Name"], record["Email"], record["Phone"]) == ("[erased]", None, None)
    assert _status_in_lists(sim, EMAIL) == {LIST: "unsub"}
    _no_address_left(job)
