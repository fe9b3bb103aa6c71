"""End to end, with real Celery workers and zohosim: a one-click unsubscribe reaches Zoho CRM and
every Campaigns list, pushed by the kick its commit sends (no beat)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from compliance.lifecycle import links
from compliance.models import ConsentEvent, OutboxEntry

pytestmark = [pytest.mark.soak, pytest.mark.postgres]


def list_statuses(sim: Any, email: str) -> dict[str, str]:
    lists = sim.http.get("/_sim/lists").json()["lists"]
    return {row["listkey"]: s["status"] for row in lists for s in row["subscribers"] if s["email"] == email}


def test_a_one_click_unsubscribe_is_written_to_crm_and_unsubscribed_in_campaigns(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given Ana opted in to the newsletter, on two Campaigns lists, and Zoho says so
    sim.seed(
        lists=[
            {"listkey": "LK1", "name": "News", "subscribers": ["ana@example.com", "ben@example.com"]},
            {"listkey": "LK2", "name": "Offers", "subscribers": ["ana@example.com"]},
        ]
    )
    workers.env["ZOHO_CAMPAIGNS_LIST_KEYS"] = "LK1,LK2"
    record_id = crm("ana@example.com")
    ana = ledger.change("ana@example.com", "email_marketing", "opted_in", zoho_id=record_id)
    workers.start(2)
    workers.wait_until(
        lambda: sim.contact(record_id)["Email_Opt_Out"] is False, "the opt-in in CRM", beat=False
    )

    # When she clicks "unsubscribe" in her mail client (RFC 8058's POST, no cookie)
    url = links.unsubscribe_url(contact=ana, campaign="CK-1")
    response = Client(enforce_csrf_checks=True).post(
        urlsplit(url).path, "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 200

    # Then CRM says opted out and both lists unsubscribed her (and nobody else), with no beat
    def arrived() -> bool:
        return sim.contact(record_id)["Email_Opt_Out"] is True and list_statuses(sim, "ana@example.com") == {
            "LK1": "unsub",
            "LK2": "unsub",
        }

    workers.wait_until(arrived, "the withdrawal in CRM and Campaigns", beat=False)
    assert list_statuses(sim, "ben@example.com") == {"LK1": "active"}
    event = ConsentEvent.objects.get(contact=ana, status="opted_out")
    assert event.source == "email_link" and event.evidence["campaign_id"] == "CK-1"
    assert set(OutboxEntry.objects.filter(event=event).values_list("priority", flat=True)) == {
        OutboxEntry.Priority.WITHDRAWAL
    }


def test_a_re_permission_run_goes_through_a_real_worker_to_a_campaigns_list(
    workers: Any, ledger: Any, crm: Any, sim: Any, settings: Any
) -> None:
    from compliance import services
    from compliance.lifecycle.repermission import RUN_TASK, repermission_start
    from compliance.models import RepermissionRun, RepermissionTarget

    # Given two people opted in under 2026-03, a newer version, and a re-permission list
    sim.seed(lists=[{"listkey": "RP1", "name": "Re-permission", "subscribers": []}])
    workers.env["ZOHO_REPERMISSION_LIST_KEY"] = settings.ZOHO_REPERMISSION_LIST_KEY = "RP1"
    for email in ("ana@example.com", "ben@example.com"):
        ledger.change(email, "email_marketing", "opted_in", zoho_id=crm(email))
    policy = services.policy_version_publish(label="2027-01", effective_at="2026-06-01", text="New notice.")
    run = repermission_start(
        policy=policy, action="campaigns_list", purposes=["email_marketing"], include_legacy=True, user=None
    )

    # When a real worker gets the run's task
    workers.start(1)
    workers.sender.send_task(RUN_TASK, args=[run.pk])

    # Then it finishes, counting progress, and the list holds both addresses
    def done() -> bool:
        return RepermissionRun.objects.get(pk=run.pk).status == "done"

    workers.wait_until(done, "the re-permission run", beat=False)
    run.refresh_from_db()
    assert (run.total, run.processed, run.failed) == (2, 2, 0)
    assert RepermissionTarget.objects.filter(run=run, done_at__isnull=False).count() == 2
    lists = sim.http.get("/_sim/lists").json()["lists"]
    assert sorted(s["email"] for row in lists if row["listkey"] == "RP1" for s in row["subscribers"]) == [
        "ana@example.com",
        "ben@example.com",
    ]
