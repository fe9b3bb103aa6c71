"""Campaigns pull: unsubscribes become ledger events and hard bounces suppressions, once each."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from urllib.parse import parse_qs

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command

from compliance import services
from compliance.models import ConsentEvent, ConsentState, Contact, OutboxEntry, Suppression
from compliance.services import ConsentDecision, ContactIdentity
from sync.campaigns_pull import campaigns_pull, soft_bounces, unsubscribe_key
from sync.models import CampaignsObservation
from sync.projection import project
from sync.zoho.campaigns_limits import CampaignsLimits, Window

pytestmark = pytest.mark.django_db

WHEN = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


def seed_lists(sim, *, extra_unsub: int = 0) -> None:
    sim.seed(
        lists=[
            {
                "listkey": "LK1",
                "name": "News",
                "subscribers": [
                    "ana@example.com",
                    "ben@example.com",
                    "cy@example.com",
                    "dee@example.com",
                    *[{"email": f"gone{i}@example.com", "status": "unsub"} for i in range(extra_unsub)],
                ],
            },
            {"listkey": "LK2", "name": "Offers", "subscribers": ["ana@example.com"]},
        ],
        campaigns=[{"campaignkey": "CK1", "name": "Spring", "listkeys": ["LK1"]}],
    )


def opt_in(email: str) -> Contact:
    services.policy_version_publish(label="2026-01", effective_at="2026-01-01", text="notice")
    for status, evidence in (
        ("pending", {}),
        ("opted_in", {"double_opt_in_confirmed_at": "2026-01-10T09:05:00Z"}),
    ):
        services.consent_ingest(
            identity=ContactIdentity(email=email),
            decision=ConsentDecision(
                purpose="email_marketing",
                status=status,
                source="web_portal",
                occurred_at=WHEN,
                idempotency_key=f"web-{email}-{status}",
                policy_version="2026-01" if status == "opted_in" else None,
                evidence=evidence,
            ),
        )
    return Contact.objects.get(email=email)


def test_unsubscribes_and_bounces_pulled_twice_are_recorded_once(sim, zoho):
    seed_lists(sim)
    ana = opt_in("ana@example.com")
    sim.post("/_sim/campaigns/unsubscribe", email="ana@example.com", listkey="LK1")
    sim.post("/_sim/campaigns/unsubscribe", email="dee@example.com", listkey="LK1")  # not in the ledger
    sim.post("/_sim/campaigns/bounce", email="ben@example.com", kind="hard", listkey="LK1", campaignkey="CK1")
    sim.post("/_sim/campaigns/bounce", email="cy@example.com", kind="soft", campaignkey="CK1")

    first = campaigns_pull(client=zoho, list_keys=["LK1", "LK2"])
    second = campaigns_pull(client=zoho, list_keys=["LK1", "LK2"])

    # Ana's unsubscribe: one campaigns event, however often it is seen, with its evidence.
    events = ConsentEvent.objects.filter(contact=ana, source="campaigns")
    assert events.count() == 1
    event = events.get()
    assert (event.status, event.purpose.code) == ("opted_out", "email_marketing")
    assert event.idempotency_key == unsubscribe_key("LK1", "ana@example.com")
    assert event.evidence["campaigns_list_key"] == "LK1"
    assert event.shown_evidence["campaigns_row"]["contact_email"] == "ana@example.com"
    assert ConsentState.objects.get(contact=ana, purpose__code="email_marketing").status == "opted_out"
    # An address we held no contact for is still a person's decision.
    dee = Contact.objects.get(email="dee@example.com")
    assert ConsentEvent.objects.filter(contact=dee, source="campaigns", status="opted_out").count() == 1
    # Ben's hard bounce, seen in the list and in the campaign: one suppression, pushed to CRM.
    ben = Contact.objects.get(email="ben@example.com")
    assert Suppression.objects.filter(contact=ben, kind="hard_bounce").count() == 1
    assert OutboxEntry.objects.filter(contact=ben).count() == 1
    values = project([ben.pk])[ben.pk].values
    assert values["Email_Opt_Out"] is True
    assert values["Email_Bounce_Reason"].startswith("hard_bounce")
    # Cy's soft bounce is counted, not suppressed.
    assert soft_bounces(email="cy@example.com") == 1
    assert not Suppression.objects.filter(contact__email="cy@example.com").exists()

    assert (first.unsubscribes_recorded, first.suppressions_added, first.soft_bounces_counted) == (2, 1, 1)
    assert (second.unsubscribes_recorded, second.suppressions_added, second.soft_bounces_counted) == (0, 0, 0)
    assert second.unsubscribes_seen == first.unsubscribes_seen == 2
    assert ConsentEvent.objects.filter(source="campaigns").count() == 2


def test_the_pull_pages_through_long_lists(sim, zoho):
    seed_lists(sim, extra_unsub=230)  # three pages of 100

    result = campaigns_pull(client=zoho, list_keys=["LK1"])

    assert result.unsubscribes_recorded == 230
    assert ConsentEvent.objects.filter(source="campaigns").count() == 230
    assert CampaignsObservation.objects.filter(status="unsub").count() == 230
    assert len(sim.calls("campaigns.getlistsubscribers")) >= 3


def test_an_echo_of_our_own_unsubscribe_is_observed_not_recorded_again(sim, zoho):
    seed_lists(sim)
    services.consent_ingest(
        identity=ContactIdentity(email="ana@example.com"),
        decision=ConsentDecision(
            purpose="email_marketing",
            status="opted_out",
            source="mobile_app",
            occurred_at=WHEN,
            idempotency_key="app-out",
        ),
    )
    sim.post("/_sim/campaigns/unsubscribe", email="ana@example.com", listkey="LK1")

    campaigns_pull(client=zoho, list_keys=["LK1"])

    assert not ConsentEvent.objects.filter(source="campaigns").exists()
    assert CampaignsObservation.objects.filter(email="ana@example.com", status="unsub").count() == 1


def test_a_bad_list_key_is_reported_and_the_other_lists_still_pulled(sim, zoho):
    seed_lists(sim)
    sim.post("/_sim/campaigns/unsubscribe", email="ana@example.com", listkey="LK1")

    result = campaigns_pull(client=zoho, list_keys=["NOPE", "LK1"])

    assert result.unsubscribes_recorded == 1
    assert any("NOPE" in e for e in result.errors)


def test_the_command_runs_the_pull(sim, zoho, settings, capsys):
    seed_lists(sim)
    sim.post("/_sim/campaigns/unsubscribe", email="ana@example.com", listkey="LK1")
    settings.ZOHO_ACCOUNTS_URL = sim.url
    settings.ZOHO_CAMPAIGNS_URL = sim.url
    settings.ZOHO_CLIENT_ID = "zohosim-client"
    settings.ZOHO_CLIENT_SECRET = "zohosim-secret"
    settings.ZOHO_REFRESH_TOKEN = "zohosim-refresh-token"
    settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1"]

    call_command("pull_campaigns")

    assert "unsubscribes_recorded: 1" in capsys.readouterr().out
    assert ConsentEvent.objects.filter(source="campaigns").count() == 1


def test_a_pull_over_lists_with_nothing_to_pull_records_no_error(sim, zoho):
    seed_lists(sim)  # nobody unsubscribed or bounced; the campaign had no bounce

    result = campaigns_pull(client=zoho, list_keys=["LK1", "LK2"])

    assert result.errors == [] and result.transient_errors == 0
    assert (result.lists, result.campaigns) == (2, 1)
    assert result.unsubscribes_seen == result.hard_bounces_seen == 0
    # Every read was answered "no contacts" (2203 for a list's status, 6302 for a campaign's action).
    assert {c["code"] for c in sim.calls("campaigns.getlistsubscribers")} == {"2203"}
    assert {c["code"] for c in sim.calls("campaigns.getcampaignrecipientsdata")} == {"6302"}


def test_a_pull_over_exactly_one_full_page_ends_on_no_contacts(sim, zoho):
    seed_lists(sim, extra_unsub=100)  # exactly the page size

    result = campaigns_pull(client=zoho, list_keys=["LK1"])

    assert result.errors == []
    assert result.unsubscribes_recorded == 100
    unsub_pages = [c for c in sim.calls("campaigns.getlistsubscribers") if "status=unsub" in c["query"]]
    assert [c["code"] for c in unsub_pages] == ["0", "2203"]


def two_calls_a_window(zoho, method: str) -> list[float]:
    """The client may send `method` twice in 5 minutes (Zoho's 500, scaled down: 90 % of 3), on a
    clock the test moves (returned)."""
    clock = [1_800_000_000.0]
    zoho.transport.campaigns_limits = CampaignsLimits(
        LocMemCache(f"t-{uuid.uuid4().hex}", {}),
        zoho.config.cache_prefix,
        limits={method: (Window(3, 300, 15),)},
        clock=lambda: clock[0],
    )
    return clock


def test_a_pull_cut_short_by_campaigns_limits_goes_on_where_it_stopped(sim, zoho):
    # 250 unsubscribes in one list; the client may send only 2 getlistsubscribers calls in the
    # window (Zoho's 500 in 5 minutes, scaled down): the first pull reads 200 of them.
    seed_lists(sim, extra_unsub=250)
    clock = two_calls_a_window(zoho, "getlistsubscribers")

    first = campaigns_pull(client=zoho, list_keys=["LK1"])

    assert first.unsubscribes_recorded == 200
    assert first.transient_errors == 2  # unsub cut at row 201; bounce not read at all
    assert any("the next pull goes on from row 201" in error for error in first.errors)

    clock[0] += 400  # the window has room again (a retry of the task)
    second = campaigns_pull(client=zoho, list_keys=["LK1"])

    assert (second.unsubscribes_recorded, second.errors) == (50, [])
    assert Contact.objects.filter(email__startswith="gone").count() == 250
    froms = [
        parse_qs(c["query"])["fromindex"][0]
        for c in sim.calls("campaigns.getlistsubscribers")
        if "status=unsub" in c["query"]
    ]
    assert froms == ["1", "101", "201"]

    # A read that reached the end starts from the first row next time.
    clock[0] += 400
    third = campaigns_pull(client=zoho, list_keys=["LK1"])
    assert (third.unsubscribes_seen, third.unsubscribes_recorded) == (200, 0)
    assert "list LK1 unsub (from row 1; the next pull goes on from row 201)" in third.errors[0]
    assert [
        parse_qs(c["query"])["fromindex"][0]
        for c in sim.calls("campaigns.getlistsubscribers")
        if "status=unsub" in c["query"]
    ][3:] == ["1", "101"]


def test_a_campaigns_bounces_read_cut_short_goes_on_where_it_stopped(sim, zoho):
    # 250 hard bounces of one campaign; the client may send only 2 calls for its recipients in the
    # window: the first pull reads 200 of them, the retry the other 50 (not all 250 again).
    seed_lists(sim)
    for i in range(250):
        sim.post("/_sim/campaigns/bounce", email=f"bounced{i}@example.com", kind="hard", campaignkey="CK1")
    clock = two_calls_a_window(zoho, "getcampaignrecipientsdata")

    first = campaigns_pull(client=zoho, list_keys=[])

    assert first.hard_bounces_seen == 200
    assert any(
        "campaign CK1 senthardbounce (from row 1; the next pull goes on from row 201)" in e
        for e in first.errors
    )

    clock[0] += 400  # the window has room again (a retry of the task)
    second = campaigns_pull(client=zoho, list_keys=[])

    assert second.hard_bounces_seen == 50 and not any("senthardbounce" in e for e in second.errors)
    # Campaigns was asked for rows 1, 101 and 201 of the hard bounces (and once for the soft)
    assert len(sim.calls("campaigns.getcampaignrecipientsdata")) == 4
    assert Suppression.objects.filter(kind="hard_bounce").count() == 250
