"""`manage.py import_zoho_consent`: what Zoho CRM and Campaigns say, recorded in the ledger as
source ``import``, against zohosim over real HTTP and PostgreSQL: once however often it runs,
resumed after its process was killed, nothing recorded by a dry run, a bad record reported and
skipped."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from compliance import services
from compliance.address_tokens import email_token
from compliance.models import ConsentEvent, ConsentState, Contact, PolicyVersion
from sync.crm_changes import parse_time
from sync.import_models import ImportRun
from tests.sync.conftest import (
    PROJECT_ROOT,
    SIM_CLIENT_ID,
    SIM_CLIENT_SECRET,
    SIM_REFRESH_TOKEN,
    _database_url,
)

LIST_KEY = "3zimportlist0001"
OPTED_OUT = {"Email_Opt_Out": True}
LEGACY_EMAIL = {
    "Data_Processing_Basis": "Obtained",
    "Data_Processing_Basis_Details": {
        "Contact_Through_Email": True,
        "Contact_Through_Phone": False,
        "Consent_Date": "2024-01-15",
        "Consent_Through": "Email",
        "Data_Processing_Basis": "Obtained",
    },
}


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_zoho_consent", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def policy(db: None) -> PolicyVersion:
    return services.policy_version_publish(
        label="2023-06",
        effective_at="2023-06-01",
        text="We send offers you chose, by the channels you chose.",
    )


@pytest.fixture
def import_settings(sim_settings: Any) -> Any:
    sim_settings.RECONCILE_BULK_POLL_S = 0
    sim_settings.ZOHO_CAMPAIGNS_LIST_KEYS = []
    return sim_settings


def add(sim: Any, email: str, **fields: Any) -> str:
    return str(
        sim.add_contact(Last_Name=email.split("@")[0].title(), First_Name="Imported", Email=email, **fields)
    )


def imported() -> list[ConsentEvent]:
    return list(
        ConsentEvent.objects.filter(idempotency_key__startswith="import-zoho:")
        .select_related("contact", "purpose")
        .order_by("pk")
    )


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["coql", "bulk"])
def test_importing_twice_records_one_set_of_events(
    import_settings: Any, sim: Any, policy: Any, method: str
) -> None:
    # Given a CRM with an opt-out, a legacy opt-in, an SMS opt-in and a record that says nothing
    out_id = add(sim, "out@example.com", **OPTED_OUT)
    legacy_id = add(sim, "legacy@example.com", **LEGACY_EMAIL)
    add(sim, "sms@example.com", SMS_Opt_In=True)
    add(sim, "silent@example.com")

    # When the import runs twice
    first, _ = run("--method", method)
    events = imported()
    second, _ = run("--method", method)

    # Then the events are recorded once, and the second run recorded nothing
    assert sorted((e.contact.email, e.purpose.code, e.status) for e in events) == [
        ("legacy@example.com", "email_marketing", "opted_in"),
        ("out@example.com", "email_marketing", "opted_out"),
        ("sms@example.com", "sms_marketing", "opted_in"),
    ]
    assert imported() == events
    assert "3 decisions recorded" in first
    assert "0 decisions recorded, 3 already in the ledger" in second
    runs = list(ImportRun.objects.order_by("pk"))
    assert [(r.status, r.method, r.records_read, r.events_recorded) for r in runs] == [
        ("done", method, 4, 3),
        ("done", method, 4, 0),
    ]
    # And the contacts are made from the records, linked to them by their Zoho id
    assert Contact.objects.get(email="out@example.com").zoho_id == out_id
    assert Contact.objects.get(email="legacy@example.com").zoho_id == legacy_id
    assert not Contact.objects.filter(email="silent@example.com").exists()


@pytest.mark.django_db
def test_a_crm_opt_out_imports_as_an_opt_out_with_its_evidence(
    import_settings: Any, sim: Any, policy: Any
) -> None:
    record_id = add(sim, "out@example.com", Email_Opt_Out=True, SMS_Opt_In=True)
    record = sim.contact(record_id)

    run()

    (event,) = [e for e in imported() if e.purpose.code == "email_marketing"]
    assert event.status == "opted_out"
    assert "legacy" not in event.evidence
    crm = event.shown_evidence["zoho_crm"]
    assert crm["record_id"] == record_id
    assert crm["fields"] == {
        "Email_Opt_Out": True,
        "Data_Processing_Basis_Details.Contact_Through_Email": None,
    }
    assert crm["modified_time"] == record["Modified_Time"]
    assert crm["modified_by"]["id"] == record["Modified_By"]["id"]
    assert crm["modified_by"]["name"]  # from the users API, not COQL's last name
    assert event.occurred_at == parse_time(record["Modified_Time"])
    state = ConsentState.objects.get(contact=event.contact, purpose__code="email_marketing")
    assert state.status == "opted_out"


@pytest.mark.django_db
def test_a_crm_opt_in_imports_as_a_legacy_opt_in_with_the_original_consent_date_and_channel(
    import_settings: Any, sim: Any, policy: Any
) -> None:
    add(sim, "legacy@example.com", **LEGACY_EMAIL)

    run()

    (event,) = imported()
    assert (event.purpose.code, event.status) == ("email_marketing", "opted_in")
    assert event.shown_evidence["legacy"] is True
    assert event.shown_evidence["consent_date"] == "2024-01-15"
    assert event.shown_evidence["consent_through"] == "Email"
    assert event.shown_evidence["zoho_crm"]["consent"]["Consent_Date"] == "2024-01-15"
    assert event.occurred_at.date().isoformat() == "2024-01-15"
    # The ledger's rules hold: the policy in force then, the consent mail as the double opt-in
    assert event.policy_version == policy
    assert event.shown_evidence["double_opt_in_confirmed_at"].startswith("2024-01-15")


@pytest.mark.django_db
def test_a_legacy_email_opt_in_without_a_confirmation_is_refused_and_reported(
    import_settings: Any, sim: Any, policy: Any
) -> None:
    # Consent obtained by phone: no double opt-in for email marketing
    details = {**LEGACY_EMAIL["Data_Processing_Basis_Details"], "Consent_Through": "Phone"}  # type: ignore[dict-item]
    record_id = add(sim, "phoned@example.com", Data_Processing_Basis_Details=details)
    old_id = add(
        sim, "old@example.com", SMS_Opt_In=True, Data_Processing_Basis_Details={"Consent_Date": "2019-05-01"}
    )

    _, err = run()

    assert imported() == []
    run_ = ImportRun.objects.get()
    assert run_.refused == 2
    assert (
        f"crm {record_id}: email_marketing opted_in not recorded: email_marketing asks for double opt-in"
        in err
    )
    assert (
        f"crm {old_id}: sms_marketing opted_in not recorded: no published policy version was in force on 2019-05-01"
        in err
    )


@pytest.mark.django_db
def test_a_campaigns_unsubscribe_imports_as_an_opt_out(import_settings: Any, sim: Any, policy: Any) -> None:
    import_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["3znosuchlist0000", LIST_KEY]
    sim.seed(
        lists=[
            {
                "listkey": LIST_KEY,
                "name": "Newsletter",
                "subscribers": [
                    {"email": "Gone@Example.com", "status": "unsub"},
                    {"email": "still@example.com", "status": "active"},
                    {"email": "bounced@example.com", "status": "bounce"},
                ],
            }
        ]
    )

    _, err = run()
    run()

    # A list Campaigns does not know is reported; the others are read
    assert "campaigns 3znosuchlist0000: the list could not be read" in err
    assert [r.status for r in ImportRun.objects.all()] == ["done", "done"]
    (event,) = imported()
    assert (event.contact.email, event.purpose.code, event.status) == (
        "gone@example.com",
        "email_marketing",
        "opted_out",
    )
    assert event.shown_evidence["zoho_campaigns"]["list_key"] == LIST_KEY
    assert event.shown_evidence["zoho_campaigns"]["status"] == "unsub"
    # The address's token, never the address: the key is hashed into the chain for good.
    assert (
        event.idempotency_key == f"import-zoho:campaigns:{LIST_KEY}:{email_token('gone@example.com')}:unsub"
    )
    assert [r.list_rows_read for r in ImportRun.objects.order_by("pk")] == [1, 1]


@pytest.mark.django_db
def test_a_dry_run_prints_what_it_would_record_and_records_nothing(
    import_settings: Any, sim: Any, policy: Any
) -> None:
    add(sim, "out@example.com", **OPTED_OUT)
    add(sim, "legacy@example.com", **LEGACY_EMAIL)

    out, _ = run("--dry-run")

    assert ConsentEvent.objects.count() == 0
    assert Contact.objects.count() == 0
    assert ImportRun.objects.count() == 0
    lines = [line for line in out.splitlines() if "@example.com" in line]
    assert len(lines) == 2
    assert any("out@example.com" in line and "opted_out" in line and "would record" in line for line in lines)
    assert any("legacy@example.com" in line and "opted_in" in line and "(legacy)" in line for line in lines)
    assert "2 decisions would record" in out


@pytest.mark.django_db
def test_a_bad_record_is_reported_and_the_import_goes_on(import_settings: Any, sim: Any, policy: Any) -> None:
    add(sim, "before@example.com", **OPTED_OUT)
    bad_type = add(sim, "perhaps@example.com", SMS_Opt_In="perhaps")
    bad_email = str(sim.add_contact(Last_Name="Nomail", Email="not an address", Email_Opt_Out=True))
    bad_date = add(
        sim,
        "baddate@example.com",
        SMS_Opt_In=True,
        Data_Processing_Basis_Details={"Consent_Date": "15/01/2024"},
    )
    add(sim, "after@example.com", **OPTED_OUT)

    _, err = run()

    assert sorted(e.contact.email for e in imported()) == ["after@example.com", "before@example.com"]
    assert f"crm {bad_type}: SMS_Opt_In holds 'perhaps', not true or false" in err
    assert f"crm {bad_email}: Email 'not an address' is not an email address" in err
    assert f"crm {bad_date}: Consent_Date holds '15/01/2024', not a date" in err
    finished = ImportRun.objects.get()
    assert (finished.status, finished.records_read, finished.records_bad) == ("done", 5, 3)


@pytest.mark.django_db
def test_the_ledgers_own_decisions_stand(import_settings: Any, sim: Any, policy: Any, ledger: Any) -> None:
    # The person opted in through the app: the CRM's old opt-out does not override it
    ledger.change("app@example.com", "email_marketing", "opted_in")
    add(sim, "app@example.com", Email_Opt_Out=True, SMS_Opt_In=True)

    run()

    assert [(e.purpose.code, e.status) for e in imported()] == [("sms_marketing", "opted_in")]
    assert ImportRun.objects.get().ledger_decides == 1


@pytest.mark.django_db
def test_since_reads_only_records_modified_since(import_settings: Any, sim: Any, policy: Any) -> None:
    old = time.time() - 86_400 * 400
    sim.add_contact(Last_Name="Old", Email="old@example.com", Email_Opt_Out=True, _created=old)
    add(sim, "new@example.com", **OPTED_OUT)

    for method in ("coql", "bulk"):
        out, _ = run("--dry-run", "--method", method, "--since", "2026-01-01")
        assert "new@example.com" in out and "old@example.com" not in out, out


@pytest.mark.django_db
def test_a_second_import_is_refused_while_one_runs(import_settings: Any, sim: Any, policy: Any) -> None:
    ImportRun.objects.create(method="coql", owner=f"elsewhere:{os.getpid()}", heartbeat_at=time_now())

    with pytest.raises(CommandError, match="is running"):
        run()


def time_now() -> Any:
    from django.utils import timezone

    return timezone.now()


# A crash: the process is killed part way, and the next command goes on -----------------------


def _command_env(sim: Any) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "ZOHO_ACCOUNTS_URL": sim.url,
        "ZOHO_API_DOMAIN": sim.url,
        "ZOHO_CAMPAIGNS_URL": sim.url,
        "ZOHO_CLIENT_ID": SIM_CLIENT_ID,
        "ZOHO_CLIENT_SECRET": SIM_CLIENT_SECRET,
        "ZOHO_REFRESH_TOKEN": SIM_REFRESH_TOKEN,
        "ZOHO_CAMPAIGNS_LIST_KEYS": "",
        "RECONCILE_BULK_POLL_S": "0",
        "RECONCILE_BULK_THRESHOLD": "1000",
    }


def _records_read() -> int:
    connection.close()
    return int(ImportRun.objects.values_list("records_read", flat=True).first() or 0)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["coql", "bulk"])
def test_an_import_killed_part_way_resumes_where_it_stopped_with_nothing_twice(
    import_settings: Any, sim: Any, method: str
) -> None:
    # Given 3,000 CRM records (for Bulk Read, in pages of 1,000, the later ones asked by page token)
    services.policy_version_publish(label="2023-06", effective_at="2023-06-01", text="Offers you chose.")
    if method == "bulk":
        sim.config(bulk_read_per_page=1000, bulk_read_page_limit_rows=1000)
    kill_after = 1300 if method == "bulk" else 300  # (Bulk Read: in the second page)
    sim.seed(
        generate={"contacts": 3000, "lists": 0, "campaigns": 0, "opt_out_ratio": 0.5, "details_ratio": 0.3}
    )
    expected = {r for r in sim.state.modules["Contacts"].ids}
    import_settings.RECONCILE_BULK_THRESHOLD = 1000
    import_settings.RECONCILE_BULK_POLL_S = 0

    # When the command's process is killed once it has committed some batches
    process = subprocess.Popen(
        [sys.executable, "manage.py", "import_zoho_consent", "--method", method, "--batch", "100"],
        cwd=PROJECT_ROOT,
        env=_command_env(sim),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while _records_read() < kill_after:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the import made no progress"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    stopped = ImportRun.objects.get()
    assert stopped.status == "running" and kill_after <= stopped.records_read < 3000
    recorded_before = ConsentEvent.objects.count()

    # Then the next command takes the run over and finishes it
    out, _ = run()

    assert f"Resuming import {stopped.pk}" in out
    done = ImportRun.objects.get()
    assert (done.status, done.resumed) == ("done", 1)
    # It went on where it stopped: the batch the kill rolled back is read again, nothing else
    assert done.records_read == 3000
    keys = list(ConsentEvent.objects.values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys))
    record_ids = {int(k.split(":")[2]) for k in keys}
    # Every record that says something has its events, none twice, before or after the kill
    says = {
        rid
        for rid in expected
        if sim.state.modules["Contacts"].records[rid].Email_Opt_Out
        or (sim.state.modules["Contacts"].records[rid].extra or {}).get("Data_Processing_Basis_Details")
    }
    assert record_ids == says
    assert recorded_before < len(keys)
    per_record_purpose = {(k.split(":")[2], k.split(":")[-1]) for k in keys}
    assert len(per_record_purpose) == len(keys)


# The demo org: `make demo`'s zohosim, its seeds' faults and one record per demo contact ---------


@pytest.mark.django_db
def test_the_import_runs_against_the_demo_org(import_settings: Any, sim: Any) -> None:
    from config.demo import SEED_FAULTS, seed_document

    call_command("load_demo_data", "--contacts", "50", "--events", "400", "--seed", "7", stdout=io.StringIO())
    document = seed_document()
    sim.seed(**document)
    sim.http.put("/_sim/faults", json=SEED_FAULTS).raise_for_status()
    decided = {
        (email, code)
        for email, code in ConsentState.objects.filter(version__gt=0).values_list(
            "contact__email", "purpose__code"
        )
    }
    before = ConsentEvent.objects.count()

    dry, _ = run("--dry-run")
    assert ConsentEvent.objects.count() == before
    run()
    again, _ = run()

    # The demo's CRM says "no consent" (Email_Opt_Out ticked): an opt-out for each contact whose
    # email marketing the ledger does not decide, and nothing where it does
    finished = ImportRun.objects.order_by("pk").first()
    assert finished is not None
    assert (finished.status, finished.records_read, finished.records_bad) == (
        "done",
        len(document["contacts"]),
        0,
    )  # type: ignore[arg-type]
    events = imported()
    assert events and {(e.purpose.code, e.status) for e in events} == {("email_marketing", "opted_out")}
    assert not {(e.contact.email, "email_marketing") for e in events} & decided
    expected = {c["Email"].lower() for c in document["contacts"]} - {
        e for e, p in decided if p == "email_marketing"
    }  # type: ignore[union-attr]
    assert {e.contact.email for e in events} == expected
    assert finished.ledger_decides == len(document["contacts"]) - len(expected)  # type: ignore[arg-type]
    assert f"{len(events)} decisions would record" in dry
    assert "0 decisions recorded" in again


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["coql", "bulk"])
def test_leads_are_imported_too_when_configured(
    import_settings: Any, sim: Any, policy: Any, method: str
) -> None:
    import_settings.ZOHO_MODULES = ["Contacts", "Leads"]
    add(sim, "contact@example.com", **OPTED_OUT)
    response = sim.http.post(
        "/_sim/contacts",
        params={"module": "Leads"},
        json={"fields": {"Last_Name": "Lead", "Email": "lead@example.com", "Email_Opt_Out": True}},
    )
    lead_id = str(response.json()["id"])

    run("--method", method)
    again, _ = run("--method", method)

    events = imported()
    assert sorted((e.contact.email, e.status) for e in events) == [
        ("contact@example.com", "opted_out"),
        ("lead@example.com", "opted_out"),
    ]
    (lead_event,) = [e for e in events if e.contact.email == "lead@example.com"]
    assert lead_event.shown_evidence["zoho_crm"]["module"] == "Leads"
    assert lead_event.shown_evidence["zoho_crm"]["record_id"] == lead_id
    # A Lead's id is not a Contacts record id: the sync links the person by email
    assert lead_event.contact.zoho_id is None
    assert "0 decisions recorded" in again
    assert ImportRun.objects.order_by("pk").first().records_read == 2  # type: ignore[union-attr]


@pytest.mark.django_db
def test_fresh_abandons_a_stopped_run_and_starts_anew(import_settings: Any, sim: Any, policy: Any) -> None:
    add(sim, "out@example.com", **OPTED_OUT)
    stopped = ImportRun.objects.create(method="bulk", owner="", error="ZohoTransientError: Zoho was down")

    out, _ = run("--fresh")

    stopped.refresh_from_db()
    assert (stopped.status, stopped.error) == ("failed", "Abandoned (--fresh) after its process stopped.")
    new = ImportRun.objects.exclude(pk=stopped.pk).get()
    assert (new.status, new.method, new.events_recorded) == ("done", "coql", 1)
    assert "Resuming" not in out


@pytest.mark.django_db
def test_zoho_failing_mid_import_stops_the_run_and_the_next_command_resumes_it(
    import_settings: Any, sim: Any, policy: Any
) -> None:
    from sync.imports_zoho import import_run_claim, import_run_stop, zoho_import
    from sync.imports_zoho_rows import COQL
    from sync.zoho import ZohoClient, ZohoError

    sim.seed(
        generate={"contacts": 3000, "lists": 0, "campaigns": 0, "opt_out_ratio": 1.0, "details_ratio": 0}
    )
    claimed = import_run_claim(method=COQL, since=None)

    def zoho_goes_down(progress: Any) -> None:
        # After the first batch of the first COQL page, every further COQL call answers 500
        sim.fault("server_error", ratio=1, ops=["crm.coql"])

    with ZohoClient.from_settings() as zoho, pytest.raises(ZohoError) as failure:
        zoho_import(zoho=zoho, run=claimed, method=COQL, batch=500, report=zoho_goes_down)
    import_run_stop(claimed, failure.value)
    stopped = ImportRun.objects.get()
    assert (stopped.status, stopped.records_read) == ("running", 2000)
    assert "INTERNAL_ERROR" in stopped.error or "500" in stopped.error

    sim.clear_faults()
    out, _ = run()

    assert f"Resuming import {stopped.pk}" in out
    done = ImportRun.objects.get()
    assert (done.status, done.records_read, done.events_recorded, done.error) == ("done", 3000, 3000, "")
    keys = list(ConsentEvent.objects.values_list("idempotency_key", flat=True))
    assert len(keys) == len(set(keys)) == 3000
