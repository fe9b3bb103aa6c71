"""Reconciliation: every CRM contact compared with the ledger; drift opened and resolved; alerts once."""

from __future__ import annotations

import pytest
from django.core import mail
from django.core.management import call_command

from compliance.models import ConsentEvent, Contact
from sync.models import Alert, Discrepancy, ReconciliationRun
from sync.reconcile import reconcile

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


def test_it_alerts_once_when_open_discrepancies_exceed_the_threshold(sim, zoho, crm, settings):
    settings.DISCREPANCY_ALERT_THRESHOLD = 2
    settings.COMPLIANCE_ALERT_EMAILS = ["compliance@example.com"]
    ids = crm(30)
    for rid in ids[:3]:
        edit(sim, rid, Profiling_Consent=True)

    reconcile(client=zoho, method="coql")
    reconcile(client=zoho, method="coql")  # the same state: no second alert

    alert = Alert.objects.get(kind="threshold")
    assert "3 discrepancies" in alert.message
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["compliance@example.com"]

    edit(sim, ids[5], Profiling_Consent=True)  # the state got worse: alert again
    reconcile(client=zoho, method="coql")
    assert Alert.objects.filter(kind="threshold").count() == 2


def test_the_command_reports_the_run(sim, crm, settings, capsys):
    crm(5)
    settings.ZOHO_ACCOUNTS_URL = sim.url
    settings.ZOHO_CAMPAIGNS_URL = sim.url
    settings.ZOHO_CLIENT_ID = "zohosim-client"
    settings.ZOHO_CLIENT_SECRET = "zohosim-secret"
    settings.ZOHO_REFRESH_TOKEN = "zohosim-refresh-token"

    call_command("reconcile", "--method", "coql")

    assert "read 5, compared 5, opened 0" in capsys.readouterr().out
