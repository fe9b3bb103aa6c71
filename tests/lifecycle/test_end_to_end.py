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
