"""Instant CRM changes: our notification channel is enabled and renewed within Zoho's limits, and a
CRM user's opt-out reaches the ledger through a callback, not the next poll. A callback with a
wrong token does nothing. With Leads configured the channel watches ``Leads.edit`` too: a Lead's
change is pulled from the Leads module, and a Lead converted since moves its contact's link."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from compliance.models import ConsentEvent, OutboxEntry
from sync.crm_watch import crm_watch_ensure
from sync.linking import contacts_link
from sync.models import CrmLinkRecord, CrmWatchChannel
from sync.zoho import ZohoClient
from tests.sync.conftest import Sim
from tests.sync.leads import add_lead, convert, lead_edit

AGENT = {"id": "5725767000000000003", "name": "Maria Agent"}


def _auth(zoho: ZohoClient) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {zoho.tokens.get().value}"}


@pytest.mark.django_db
def test_the_channel_is_enabled_once_and_renewed_two_days_before_it_ends(zoho: ZohoClient, sim: Sim) -> None:
    channel = crm_watch_ensure(zoho=zoho, notify_url="https://desk.example/sync/zoho/notify/")
    again = crm_watch_ensure(zoho=zoho, notify_url="https://desk.example/sync/zoho/notify/")
    assert len(sim.calls("crm.watch")) == 1 and again.pk == channel.pk
    assert len(channel.token) <= 50
    assert timedelta(days=6) < channel.expires_at - timezone.now() <= timedelta(days=7)

    with time_machine.travel(timezone.now() + timedelta(days=5, hours=1)):
        renewed = crm_watch_ensure(zoho=zoho, notify_url="https://desk.example/sync/zoho/notify/")

    assert len(sim.calls("crm.watch")) == 2
    assert renewed.channel_id == channel.channel_id and renewed.token == channel.token
    assert renewed.expires_at > channel.expires_at and renewed.renewed_at is not None
    # Enabled with POST (201), renewed with PUT: Zoho replaces the channel it holds.
    assert [(c["method"], c["status"]) for c in sim.calls("crm.watch")] == [("POST", 201), ("PUT", 200)]


@pytest.mark.django_db
def test_a_channel_zoho_no_longer_holds_is_enabled_anew(zoho: ZohoClient, sim: Sim) -> None:
    channel = crm_watch_ensure(zoho=zoho, notify_url="https://desk.example/sync/zoho/notify/")
    sim.http.delete("/crm/v8/actions/watch", params={"channel_ids": channel.channel_id}, headers=_auth(zoho))

    with time_machine.travel(timezone.now() + timedelta(days=5, hours=1)):
        renewed = crm_watch_ensure(zoho=zoho, notify_url="https://desk.example/sync/zoho/notify/")

    # The replace is refused (nothing to replace), so the channel is enabled again, same id and token.
    assert [(c["method"], c["status"]) for c in sim.calls("crm.watch") if c["method"] != "DELETE"] == [
        ("POST", 201),
        ("PUT", 400),
        ("POST", 201),
    ]
    assert sim.state.notifier.channels[channel.channel_id]["token"] == renewed.token == channel.token


@pytest.mark.django_db(transaction=True)
def test_a_crm_users_opt_out_arrives_by_callback_and_a_wrong_token_does_nothing(
    live_server: Any, sim_settings: Any, sim: Sim, ledger: Any, client: Any
) -> None:
    record = sim.add_contact(Last_Name="Ana", Email="ana@example.com", SMS_Opt_In=True)
    contact = ledger.change(
        "ana@example.com", "sms_marketing", "opted_in", zoho_id=record, minutes_ago=60 * 24
    )
    with ZohoClient.from_settings() as zoho:
        channel = crm_watch_ensure(zoho=zoho, notify_url=f"{live_server.url}/sync/zoho/notify/")
    forged = {
        "channel_id": channel.channel_id,
        "token": "not-the-token",
        "module": "Contacts",
        "ids": [record],
    }

    refused = client.post("/sync/zoho/notify/", json.dumps(forged), content_type="application/json")
    sim.http.post(f"/_sim/contacts/{record}", json={"fields": {"SMS_Opt_In": False}, "user": AGENT})
    sim.state.notifier.wait_idle()

    assert refused.status_code == 403
    (delivery,) = sim.state.notifier.deliveries
    assert delivery["status"] == 200
    event = ConsentEvent.objects.filter(contact=contact, source="crm").get()
    assert event.status == "opted_out" and event.purpose.code == "sms_marketing"
    assert CrmWatchChannel.objects.get().last_notified_at is not None


@pytest.mark.django_db
def test_a_callback_that_is_not_json_or_names_no_ids_is_refused(client: Any) -> None:
    assert client.post("/sync/zoho/notify/", "nope", content_type="application/json").status_code == 400
    assert client.post("/sync/zoho/notify/", "{}", content_type="application/json").status_code == 400
    assert client.get("/sync/zoho/notify/").status_code == 405


@pytest.mark.django_db
def test_the_daily_reconciliation_keeps_the_channel_alive(zoho: ZohoClient, sim: Sim, settings: Any) -> None:
    from sync.reconcile import reconcile

    settings.ZOHO_NOTIFICATIONS = True
    settings.PUBLIC_BASE_URL = "https://desk.example"

    reconcile(client=zoho, method="coql")

    channel = CrmWatchChannel.objects.get()
    assert channel.notify_url == "https://desk.example/sync/zoho/notify/"
    assert sim.state.notifier.channels[channel.channel_id]["token"] == channel.token


@pytest.mark.django_db(transaction=True)
def test_with_leads_configured_a_leads_edit_callback_pulls_the_lead_and_a_conversion_moves_the_link(
    live_server: Any, sim_settings: Any, leads_too: Any, sim: Sim, ledger: Any
) -> None:
    lead_id = add_lead(sim, "lena@example.com", SMS_Opt_In=True)
    contact = ledger.change("lena@example.com", "sms_marketing", "opted_in", minutes_ago=60 * 24)
    with ZohoClient.from_settings() as zoho:
        contacts_link(contacts=[contact], zoho=zoho)
        channel = crm_watch_ensure(zoho=zoho, notify_url=f"{live_server.url}/sync/zoho/notify/")
    assert sim.state.notifier.channels[channel.channel_id]["events"] == ["Contacts.edit", "Leads.edit"]

    lead_edit(sim, lead_id, SMS_Opt_In=False)  # a CRM user opts the person out on the Lead
    sim.state.notifier.wait_idle()

    (delivery,) = sim.state.notifier.deliveries
    assert delivery["status"] == 200
    assert delivery["body"]["module"] == "Leads" and delivery["body"]["ids"] == [lead_id]
    event = ConsentEvent.objects.filter(contact=contact, source="crm").get()
    assert (event.status, event.evidence["zoho_id"], event.evidence["crm_module"]) == (
        "opted_out",
        lead_id,
        "Leads",
    )

    with ZohoClient.from_settings() as zoho:
        contact_record = convert(zoho, lead_id)  # Zoho calls back for the Lead, now gone
    sim.state.notifier.wait_idle()

    after = sim.state.notifier.deliveries[1:]  # the new Contact's values, then the Lead's conversion
    assert [(d["body"]["module"], d["status"]) for d in after] == [("Contacts", 200), ("Leads", 200)]
    (record,) = CrmLinkRecord.objects.filter(contact=contact)
    assert (record.module, record.record_id, record.converted_from) == ("Contacts", contact_record, lead_id)
    assert list(ConsentEvent.objects.filter(contact=contact).values_list("version", "status")) == [
        (1, "opted_in"),
        (2, "opted_out"),
    ]
    assert OutboxEntry.objects.filter(contact=contact, processed_at__isnull=True).exists(), "pushed again"


@pytest.mark.django_db
def test_a_channel_enabled_for_contacts_only_is_enabled_again_when_leads_are_configured(
    zoho: ZohoClient, sim: Sim, settings: Any
) -> None:
    crm_watch_ensure(zoho=zoho, notify_url="https://desk.example/sync/zoho/notify/")
    settings.ZOHO_MODULES = ["Contacts", "Leads"]

    channel = crm_watch_ensure(zoho=zoho, notify_url="https://desk.example/sync/zoho/notify/")

    assert len(sim.calls("crm.watch")) == 2
    assert channel.events == ["Contacts.edit", "Leads.edit"]
    assert sim.state.notifier.channels[channel.channel_id]["events"] == channel.events
