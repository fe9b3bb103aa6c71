"""CampaignsClient against zohosim over real HTTP."""

from __future__ import annotations

import pytest

from sync.models import ZohoCall
from sync.zoho import ZohoAuthError, ZohoClient, ZohoPermanentError, ZohoRateLimited, ZohoTransientError
from tests.sync.conftest import Sim

LIST = "3zlisttest0001"
CAMPAIGN = "3ccamptest0001"


def seed_list(sim: Sim, subscribers: list[dict[str, str]]) -> None:
    sim.seed(lists=[{"listkey": LIST, "name": "Newsletter", "subscribers": subscribers}])


def test_list_subscribers_by_status_pages_through_the_list(zoho: ZohoClient, sim: Sim) -> None:
    subs = [{"email": f"u{i}@example.com", "status": "unsub" if i % 3 == 0 else "active"} for i in range(250)]
    subs.append({"email": "b@example.com", "status": "bounce"})
    seed_list(sim, subs)

    unsub = list(zoho.campaigns.list_subscribers(LIST, "unsub", page_size=40))
    bounced = list(zoho.campaigns.list_subscribers(LIST, "bounce"))
    active = list(zoho.campaigns.list_subscribers(LIST, "active"))

    assert sorted(r["contact_email"] for r in unsub) == sorted(f"u{i}@example.com" for i in range(0, 250, 3))
    assert [r["contact_email"] for r in bounced] == ["b@example.com"]
    assert len(active) == 250 - len(unsub)
    row = ZohoCall.objects.filter(operation="campaigns.list_subscribers").first()
    assert row is not None
    assert (row.service, row.credits, row.path) == ("campaigns", 0, "/api/v1.1/getlistsubscribers")


def test_an_empty_status_yields_nothing(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])

    assert list(zoho.campaigns.list_subscribers(LIST, "bounce")) == []


def test_unsubscribe_moves_the_contact_to_unsub(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}, {"email": "b@example.com"}])

    result = zoho.campaigns.unsubscribe(LIST, "a@example.com")

    assert result.code in ("0", "")
    assert [r["contact_email"] for r in zoho.campaigns.list_subscribers(LIST, "unsub")] == ["a@example.com"]
    assert ZohoCall.objects.get(operation="campaigns.unsubscribe").records == 1


def test_subscribe_adds_the_contact(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [])

    result = zoho.campaigns.subscribe(LIST, "new@example.com", fields={"First Name": "New"})

    assert result.code in ("0", "")
    assert [r["contact_email"] for r in zoho.campaigns.list_subscribers(LIST, "active")] == [
        "new@example.com"
    ]


def test_a_bad_list_key_is_a_permanent_error(zoho: ZohoClient, sim: Sim) -> None:
    with pytest.raises(ZohoPermanentError) as caught:
        zoho.campaigns.unsubscribe("no-such-list", "a@example.com")

    assert caught.value.http_status == 200  # Campaigns answers 200 even on error
    assert caught.value.code in ("2501", "2002", "2102")
    row = ZohoCall.objects.get(operation="campaigns.unsubscribe")
    assert (row.outcome, row.permanent, row.zoho_code) == ("error", True, caught.value.code)


def test_a_locked_method_is_a_transient_rate_limit(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])
    sim.fault("campaigns_lock")

    with pytest.raises(ZohoRateLimited) as caught:
        zoho.campaigns.unsubscribe(LIST, "a@example.com")

    assert caught.value.permanent is False
    with pytest.raises(ZohoRateLimited):
        list(zoho.campaigns.list_subscribers(LIST, "unsub"))


def test_unauthorized_1007_refreshes_the_token_once(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])
    list(zoho.campaigns.list_subscribers(LIST, "active"))
    sim.expire_tokens()

    rows = list(zoho.campaigns.list_subscribers(LIST, "active"))

    assert [r["contact_email"] for r in rows] == ["a@example.com"]
    assert sim.mints() == 2
    codes = list(
        ZohoCall.objects.filter(operation="campaigns.list_subscribers")
        .order_by("id")
        .values_list("zoho_code", "outcome")
    )
    assert codes[1] == ("1007", "error")
    assert codes[2][1] == "ok"


def test_campaign_recipients_by_hard_and_soft_bounce(zoho: ZohoClient, sim: Sim) -> None:
    sim.seed(
        campaigns=[
            {
                "campaignkey": CAMPAIGN,
                "name": "Spring",
                "recipients": [
                    {"email": "hard@example.com", "actions": ["senthardbounce"]},
                    {"email": "soft@example.com", "actions": ["sentsoftbounce"]},
                    {"email": "fine@example.com"},
                ],
            }
        ]
    )

    hard = list(zoho.campaigns.campaign_recipients(CAMPAIGN, "senthardbounce"))
    soft = list(zoho.campaigns.campaign_recipients(CAMPAIGN, "sentsoftbounce"))

    assert [r["contactemailaddress"] for r in hard] == ["hard@example.com"]
    assert [r["contactemailaddress"] for r in soft] == ["soft@example.com"]


def test_a_simulated_bounce_shows_in_the_recipients(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])
    sim.seed(campaigns=[{"campaignkey": CAMPAIGN, "listkeys": [LIST]}])
    sim.post("/_sim/campaigns/bounce", email="a@example.com", kind="hard", campaignkey=CAMPAIGN, listkey=LIST)
    sim.post("/_sim/campaigns/unsubscribe", email="a@example.com", listkey=LIST)

    hard = list(zoho.campaigns.campaign_recipients(CAMPAIGN, "senthardbounce"))

    assert [r["contactemailaddress"] for r in hard] == ["a@example.com"]


def test_an_unknown_campaign_is_a_permanent_error(zoho: ZohoClient, sim: Sim) -> None:
    with pytest.raises(ZohoPermanentError):
        list(zoho.campaigns.campaign_recipients("no-such-campaign", "senthardbounce"))


def test_recent_campaigns_lists_sent_campaigns(zoho: ZohoClient, sim: Sim) -> None:
    sim.seed(
        campaigns=[
            {"campaignkey": CAMPAIGN, "name": "Spring", "recipients": []},
            {"campaignkey": "3ccamptest0002", "name": "Summer", "recipients": []},
        ]
    )

    campaigns = zoho.campaigns.recent_campaigns()

    assert {c["campaign_key"] for c in campaigns} == {CAMPAIGN, "3ccamptest0002"}


def test_the_500_calls_per_window_lock_is_a_rate_limit(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}, {"email": "b@example.com"}])
    sim.config(campaigns_method_limit=1)
    zoho.campaigns.unsubscribe(LIST, "a@example.com")

    with pytest.raises(ZohoRateLimited) as caught:
        zoho.campaigns.unsubscribe(LIST, "b@example.com")

    assert caught.value.http_status == 200
    assert "retry" in str(caught.value).lower()


def test_campaigns_rate_limit_fault(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])
    sim.fault("rate_limit", ratio=1.0, ops=["campaigns.*"])

    with pytest.raises(ZohoRateLimited):
        zoho.campaigns.subscribe(LIST, "b@example.com")


def test_campaigns_server_error_is_transient(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])
    sim.fault("server_error", ratio=1.0, ops=["campaigns.*"])

    with pytest.raises(ZohoTransientError) as caught:
        zoho.campaigns.recent_campaigns()

    assert caught.value.http_status == 500


def test_campaigns_slow_answer_beyond_the_timeout_is_transient(sim: Sim, db: None) -> None:
    from tests.sync.conftest import make_client

    client = make_client(sim, timeout_s=0.2)
    seed_list(sim, [{"email": "a@example.com"}])
    sim.fault("slow", ratio=1.0, delay_s=0.6, ops=["campaigns.*"])

    with pytest.raises(ZohoTransientError) as caught:
        client.campaigns.unsubscribe(LIST, "a@example.com")

    assert caught.value.code == "timeout"
    sim.wait_for_calls("campaigns.listunsubscribe", 1)


def test_campaigns_wrong_dc_is_an_auth_error(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])
    list(zoho.campaigns.list_subscribers(LIST, "active"))
    sim.fault("wrong_dc")

    with pytest.raises(ZohoAuthError) as caught:
        list(zoho.campaigns.list_subscribers(LIST, "active"))

    assert caught.value.code == "invalid_client"
    assert "data centre" in str(caught.value)


def test_each_call_uses_the_http_method_the_doc_gives(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": "a@example.com"}])
    sim.seed(campaigns=[{"campaignkey": CAMPAIGN, "listkeys": [LIST]}])

    list(zoho.campaigns.list_subscribers(LIST, "active"))
    zoho.campaigns.subscribe(LIST, "b@example.com")
    zoho.campaigns.unsubscribe(LIST, "a@example.com")
    list(zoho.campaigns.campaign_recipients(CAMPAIGN, "sentcontacts"))
    zoho.campaigns.recent_campaigns()

    methods = {c["op"]: c["method"] for c in sim.calls() if str(c["op"]).startswith("campaigns.")}
    assert methods == {
        "campaigns.getlistsubscribers": "GET",  # GET|POST
        "campaigns.listsubscribe": "POST",
        "campaigns.listunsubscribe": "POST",
        "campaigns.getcampaignrecipientsdata": "POST",
        "campaigns.recentsentcampaigns": "GET",
    }
    assert {c["code"] for c in sim.calls() if str(c["op"]).startswith("campaigns.")} == {"0"}


def test_a_page_answering_no_contacts_ends_the_list(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [{"email": f"u{i:03}@example.com", "status": "unsub"} for i in range(100)])

    rows = list(zoho.campaigns.list_subscribers(LIST, "unsub"))  # exactly one full page of 100

    assert len(rows) == 100
    pages = sim.calls("campaigns.getlistsubscribers")
    assert [(c["status"], c["code"]) for c in pages] == [(200, "0"), (200, "2203")]
    assert "fromindex=101" in pages[1]["query"]
    # The empty page is an answer, not an error: it counts in no error rate.
    logged = ZohoCall.objects.filter(operation="campaigns.list_subscribers").order_by("pk")
    assert [(c.outcome, c.zoho_code, c.error) for c in logged] == [
        (ZohoCall.Outcome.OK, "0", ""),
        (ZohoCall.Outcome.OK, "2203", ""),
    ]


def test_an_empty_recipient_page_ends_the_read(zoho: ZohoClient, sim: Sim) -> None:
    sim.seed(
        campaigns=[
            {
                "campaignkey": CAMPAIGN,
                "recipients": [
                    {"email": "h1@example.com", "actions": ["senthardbounce"]},
                    {"email": "h2@example.com", "actions": ["senthardbounce"]},
                    {"email": "fine@example.com"},
                ],
            }
        ]
    )

    hard = list(zoho.campaigns.campaign_recipients(CAMPAIGN, "senthardbounce", page_size=2))
    soft = list(zoho.campaigns.campaign_recipients(CAMPAIGN, "sentsoftbounce"))

    assert sorted(r["contactemailaddress"] for r in hard) == ["h1@example.com", "h2@example.com"]
    assert soft == []
    assert [c["code"] for c in sim.calls("campaigns.getcampaignrecipientsdata")] == ["0", "6302", "6302"]


def test_no_recent_campaigns_answering_no_contacts_is_none(zoho: ZohoClient, sim: Sim) -> None:
    sim.config(campaigns_empty_page_codes={"recentsentcampaigns": "6302"})

    assert zoho.campaigns.recent_campaigns() == []
    assert [c["code"] for c in sim.calls("campaigns.recentsentcampaigns")] == ["6302"]


def test_an_unknown_list_is_still_an_error_when_reading(zoho: ZohoClient, sim: Sim) -> None:
    seed_list(sim, [])

    with pytest.raises(ZohoPermanentError) as caught:
        list(zoho.campaigns.list_subscribers("no-such-list", "unsub"))

    assert caught.value.code == "2501"
    assert list(zoho.campaigns.list_subscribers(LIST, "unsub")) == []  # the known, empty list: 2203
