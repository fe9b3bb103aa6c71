"""Reconciliation: every CRM contact compared with the ledger; drift opened, re-pushed and resolved;
records missing from CRM flagged after complete runs only; alerts once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from compliance.models import ConsentEvent, Contact
from sync.models import Alert, CrmLink, CrmLinkRecord, Discrepancy, ReconciliationRun
from sync.reconcile import reconcile
from sync.verify import discrepancies_retry_due, pushes_verify_due
from sync.zoho.errors import ZohoRateLimited

pytestmark = pytest.mark.django_db

AGENT = {"id": "5725767000000000003", "name": "Maria Agent"}
# What the projection says for a contact with no consent at all (the default mapping).
NO_CONSENT = {
    "Email_Opt_Out": True,
    "SMS_Opt_In": False,
    "Profiling_Consent": False,
    "Third_Party_Sharing_Consent": False,
    "Data_Processing_Basis_Details": {"Contact_Through_Email": False, "Contact_Through_Phone": False},
}


@pytest.fixture
def crm(sim):
    """``n`` CRM contacts that agree with ``n`` linked ledger contacts; returns their CRM ids."""

    def make(n: int) -> list[str]:
        rows = [{"Email": f"c{i}@example.com", "Last_Name": f"C{i}", **NO_CONSENT} for i in range(n)]
        ids = sim.seed(contacts=rows)["contacts"]
        Contact.objects.bulk_create(
            [Contact(email=f"c{i}@example.com", zoho_id=rid) for i, rid in enumerate(ids)], batch_size=2000
        )
        return ids

    return make


def edit(sim, rid: str, **fields) -> None:
    sim.post(f"/_sim/contacts/{rid}", fields=fields, user=AGENT)


def test_it_opens_drift_and_resolves_it_after_a_fix_paging_past_2000(sim, zoho, crm, settings):
    settings.DISCREPANCY_ALERT_THRESHOLD = 10
    ids = crm(5000)
    for rid in ids[10:13]:
        edit(sim, rid, Profiling_Consent=True)  # a to_zoho field: plain drift
    edit(sim, ids[4500], Third_Party_Sharing_Consent=True)

    run = reconcile(client=zoho, method="coql")

    assert (run.records_read, run.contacts_compared, run.opened, run.resolved) == (5000, 5000, 4, 0)
    assert len(sim.calls("crm.coql")) == 3, "5,000 records are three keyset pages of at most 2,000"
    drift = Discrepancy.objects.filter(kind="drift", status="open")
    assert sorted(drift.values_list("zoho_id", flat=True)) == sorted([*ids[10:13], ids[4500]])
    one = drift.get(zoho_id=ids[10])
    assert (one.crm_field, one.expected, one.actual) == ("Profiling_Consent", False, True)
    assert one.evidence["modified_by"] == AGENT

    for rid in ids[10:13]:
        edit(sim, rid, Profiling_Consent=False)
    again = reconcile(client=zoho, method="coql")

    assert (again.opened, again.resolved) == (0, 3)
    assert list(Discrepancy.objects.filter(status="open").values_list("zoho_id", flat=True)) == [ids[4500]]
    assert ReconciliationRun.objects.count() == 2


def test_it_applies_the_rule_of_direction_to_crm_changes(sim, zoho, crm):
    ids = crm(20)
    edit(sim, ids[3], SMS_Opt_In=True)  # an opt-in typed into CRM: never recorded

    reconcile(client=zoho, method="coql")

    assert not ConsentEvent.objects.exists()
    assert Discrepancy.objects.get(zoho_id=ids[3]).kind == "unevidenced_opt_in"


def test_it_uses_bulk_read_above_the_threshold(sim, zoho, crm, settings):
    settings.RECONCILE_BULK_THRESHOLD = 1000
    sim.config(bulk_read_polls_to_complete=0)
    ids = crm(2500)
    edit(sim, ids[2400], Profiling_Consent=True)

    run = reconcile(client=zoho)

    assert run.method == "bulk"
    assert (run.records_read, run.opened) == (2500, 1)
    assert sim.calls("bulk.read.create") and not sim.calls("crm.coql")
    assert Discrepancy.objects.get(status="open").zoho_id == ids[2400]


def test_it_alerts_once_when_open_discrepancies_exceed_the_threshold(
    sim, zoho, crm, settings, django_capture_on_commit_callbacks
):
    settings.DISCREPANCY_ALERT_THRESHOLD = 2
    settings.COMPLIANCE_ALERT_EMAILS = ["compliance@example.com"]
    ids = crm(30)
    for rid in ids[:3]:
        edit(sim, rid, Profiling_Consent=True)

    with django_capture_on_commit_callbacks(execute=True):
        reconcile(client=zoho, method="coql")
        reconcile(client=zoho, method="coql")  # the same state: no second alert

    alert = Alert.objects.get(kind="threshold")
    assert "3 discrepancies" in alert.message
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["compliance@example.com"]
    assert alert.emailed_to == ["compliance@example.com"]

    edit(sim, ids[5], Profiling_Consent=True)  # the state got worse: alert again
    with django_capture_on_commit_callbacks(execute=True):
        reconcile(client=zoho, method="coql")
    assert Alert.objects.filter(kind="threshold").count() == 2
    assert len(mail.outbox) == 2


def test_the_threshold_alert_is_mailed_only_when_its_transaction_commits(
    sim, zoho, crm, settings, django_capture_on_commit_callbacks
):
    settings.DISCREPANCY_ALERT_THRESHOLD = 0
    settings.COMPLIANCE_ALERT_EMAILS = ["compliance@example.com"]
    edit(sim, crm(3)[0], Profiling_Consent=True)

    with django_capture_on_commit_callbacks(execute=False) as waiting:
        reconcile(client=zoho, method="coql")

    assert Alert.objects.filter(kind="threshold").exists()
    assert len(waiting) == 1 and not mail.outbox  # nothing sent before the commit


def test_a_mail_server_that_is_down_is_logged_and_the_alert_stands(
    sim, zoho, crm, settings, django_capture_on_commit_callbacks, caplog
):
    settings.DISCREPANCY_ALERT_THRESHOLD = 0
    settings.COMPLIANCE_ALERT_EMAILS = ["compliance@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2  # nothing listens
    edit(sim, crm(3)[0], Profiling_Consent=True)

    with django_capture_on_commit_callbacks(execute=True):
        run = reconcile(client=zoho, method="coql")

    alert = Alert.objects.get(kind="threshold")
    assert run.error == "" and run.opened == 1
    assert alert.emailed_to == []
    assert f"Could not email alert {alert.pk}" in caplog.text


def test_the_command_reports_the_run(sim, crm, settings, capsys):
    crm(5)
    settings.ZOHO_ACCOUNTS_URL = sim.url
    settings.ZOHO_CAMPAIGNS_URL = sim.url
    settings.ZOHO_CLIENT_ID = "zohosim-client"
    settings.ZOHO_CLIENT_SECRET = "zohosim-secret"
    settings.ZOHO_REFRESH_TOKEN = "zohosim-refresh-token"

    call_command("reconcile", "--method", "coql")

    assert "read 5, compared 5, opened 0" in capsys.readouterr().out


def delete(sim, rid: str) -> None:
    sim.state.delete_record("Contacts", rid)  # a CRM user deleted the record


def test_drift_is_pushed_again_after_the_backoff_and_the_read_back_resolves_it(sim, zoho, crm, settings):
    settings.SYNC_RETRY_BASE_S = 60
    settings.CONSENT_VERIFY_DELAY_S = 0
    settings.ZOHO_CAMPAIGNS_LIST_KEYS = []
    ids = crm(3)
    edit(sim, ids[1], Profiling_Consent=True)

    reconcile(client=zoho, method="coql")

    drift = Discrepancy.objects.get(status="open")
    assert (drift.kind, drift.crm_field, drift.expected, drift.actual) == (
        "drift",
        "Profiling_Consent",
        False,
        True,
    )
    assert drift.next_retry_at is not None
    assert discrepancies_retry_due(zoho=zoho).discrepancies == 0, "not before the backoff"

    retried = discrepancies_retry_due(zoho=zoho, now=timezone.now() + timedelta(seconds=61))

    assert (retried.discrepancies, retried.contacts) == (1, 1)
    assert sim.contact(ids[1])["Profiling_Consent"] is False, "the ledger's value is back in CRM"
    assert pushes_verify_due(zoho=zoho, ignore_delay=True).verified == 1
    drift.refresh_from_db()
    assert drift.status == "resolved"


def test_a_record_deleted_in_crm_is_flagged_missing_once_and_resolved_when_it_is_back(sim, zoho, crm):
    ids = crm(30)
    gone = Contact.objects.get(zoho_id=ids[7])
    delete(sim, ids[7])

    first = reconcile(client=zoho, method="coql")
    second = reconcile(client=zoho, method="coql")

    missing = Discrepancy.objects.get(kind="record_missing")
    assert (missing.contact_id, missing.zoho_id, missing.crm_field, missing.status) == (
        gone.pk,
        ids[7],
        "",
        "open",
    )
    assert missing.next_retry_at is None, "not retried: an admin links the contact to its new record"
    assert ids[7] in missing.hint
    assert (first.records_read, first.missing, first.opened) == (29, 1, 1)
    assert (second.missing, second.opened) == (1, 0)

    sim.post(
        "/_sim/contacts", fields={"rid": ids[7], "Email": "c7@example.com", "Last_Name": "C7", **NO_CONSENT}
    )
    back = reconcile(client=zoho, method="coql")

    missing.refresh_from_db()
    assert missing.status == "resolved"
    assert (back.missing, back.resolved) == (0, 1)


def test_a_contact_linked_by_crm_link_only_is_missing_only_when_zoho_has_no_record_of_that_id(sim, zoho, crm):
    crm(5)
    moved = sim.add_contact(Email="moved@example.com", Last_Name="M", **NO_CONSENT)
    deleted = sim.add_contact(Email="gone@example.com", Last_Name="G", **NO_CONSENT)
    checked = timezone.now() - timedelta(hours=1)
    for email, record in (("moved@example.com", moved), ("gone@example.com", deleted)):
        contact = Contact.objects.create(email=email)
        CrmLink.objects.create(contact=contact, state="linked", candidates=[record], checked_at=checked)
        CrmLinkRecord.objects.create(contact=contact, module="Contacts", record_id=record)
    edit(sim, moved, Email="new-address@example.com")  # the email lookup cannot find it any more
    delete(sim, deleted)

    run = reconcile(client=zoho, method="coql")

    flagged = Discrepancy.objects.filter(kind="record_missing")
    assert [(d.contact.email, d.zoho_id) for d in flagged] == [("gone@example.com", deleted)]
    assert run.missing == 1


def test_bulk_read_pages_through_and_flags_a_deleted_record(sim, zoho, crm, settings):
    sim.config(bulk_read_polls_to_complete=0, bulk_read_per_page=1000)
    ids = crm(2500)
    delete(sim, ids[1200])
    edit(sim, ids[2400], Profiling_Consent=True)

    run = reconcile(client=zoho, method="bulk")

    assert (run.records_read, run.contacts_compared, run.missing, run.opened) == (2499, 2499, 1, 2)
    assert len(sim.calls("bulk.read.create")) == 3
    assert Discrepancy.objects.get(kind="record_missing").zoho_id == ids[1200]
    assert Discrepancy.objects.get(kind="drift").zoho_id == ids[2400]


def test_a_run_that_fails_part_way_flags_nothing_missing(sim, zoho, crm, settings, monkeypatch):
    settings.RECONCILE_CHUNK = 500
    sim.config(bulk_read_polls_to_complete=0, bulk_read_per_page=1000, bulk_download_limit=1)
    monkeypatch.setattr("sync.zoho.bulk.DOWNLOAD_LIMIT_WAIT_S", 0)  # (Zoho's minute is not waited out here)
    ids = crm(1500)
    delete(sim, ids[10])

    with pytest.raises(ZohoRateLimited):  # the second page's download is refused, three times
        reconcile(client=zoho, method="bulk")

    run = ReconciliationRun.objects.get()
    assert run.error.startswith("ZohoRateLimited") and run.records_read == 1000
    assert run.missing == 0
    assert not Discrepancy.objects.filter(kind="record_missing").exists()
