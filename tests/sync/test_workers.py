"""Real Celery workers on Redis against zohosim over HTTP: 429/5xx storms and workers killed mid-batch.

Nothing lost (every change ends verified with Zoho holding the ledger's values),
nothing written twice for one ledger version, no alert where nothing really failed.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection

from compliance.models import ConsentEvent, OutboxEntry, Suppression
from sync.campaigns_pull import soft_bounces
from sync.models import Alert, Discrepancy, SyncPush, ZohoCall
from tests.sync.convergence import all_verified, assert_no_version_written_twice, assert_zoho_holds_the_ledger

# Minutes of real worker processes: CI runs them, a developer may skip them with -m "not soak".
pytestmark = pytest.mark.soak


def make_changes(ledger: Any, crm: Any, count: int, first: int = 0) -> dict[int, str]:
    """`count` contacts with an SMS opt-in; every third one changes its mind after."""
    records = {}
    for i in range(first, first + count):
        contact = ledger.change(
            f"w{i}@example.com", "sms_marketing", "opted_in", zoho_id=crm(f"w{i}@example.com"), minutes_ago=3
        )
        if i % 3 == 0:
            ledger.change(f"w{i}@example.com", "sms_marketing", "opted_out", minutes_ago=2)
        records[contact.pk] = contact.zoho_id
    return records


STORM_S = 120
WAVE_S = 3


def test_every_change_converges_through_minutes_of_429s_and_5xx(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given three workers running, and Zoho answering 429 to 30 % and 500 to 10 % of CRM calls
    workers.start(3)
    workers.wait_ready()
    # (and, so that both surely happen, to every update call of the first 6 s and every read of
    # the first 12 s)
    sim.http.put(
        "/_sim/faults",
        json={
            "rate_limit": [{"ops": ["crm.update"], "for_s": 6}, {"ratio": 0.3}],
            "server_error": [{"ops": ["crm.get", "crm.list"], "for_s": 12}, {"ratio": 0.1}],
        },
    ).raise_for_status()
    # and two contacts whose CRM records do not exist: their pushes really fail
    doomed = [
        ledger.change(
            f"doomed{i}@example.com", "sms_marketing", "opted_in", zoho_id=f"572576700009999999{i}"
        ).pk
        for i in range(2)
    ]

    # When, for two minutes, a wave of changes commits every 3 s: 6 new contacts, and 3 of the
    # wave before changing their minds again (a newer version of a record just written)
    records: dict[int, str] = {}
    emails: dict[int, str] = {}
    opted_in: dict[int, bool] = {}
    previous_wave: list[int] = []
    started = time.monotonic()
    for wave in range(STORM_S // WAVE_S):
        for contact_id in previous_wave[:3]:
            opted_in[contact_id] = not opted_in[contact_id]
            status = "opted_in" if opted_in[contact_id] else "opted_out"
            ledger.change(emails[contact_id], "sms_marketing", status, minutes_ago=0)
        first = 100 * wave
        fresh = make_changes(ledger, crm, 6, first=first)
        for i, contact_id in enumerate(fresh, start=first):
            emails[contact_id] = f"w{i}@example.com"
            opted_in[contact_id] = i % 3 != 0  # (make_changes: every third one opted out again)
        records.update(fresh)
        previous_wave = list(fresh)
        workers.wait_until(
            lambda wave=wave: time.monotonic() - started >= (wave + 1) * WAVE_S, f"wave {wave + 1}"
        )
    workers.wait_until(lambda: all_verified(records), "every change verified", deadline_s=180)
    workers.wait_until(
        lambda: Alert.objects.filter(discrepancy__contact_id__in=doomed).count() == len(doomed),
        "an alert for each record that really failed",
    )

    # Then every change converged through the storm, none twice, and the only alerts are the
    # two records that really failed, one each
    statuses = Counter(call["status"] for call in sim.calls())
    assert statuses[429] >= 5 and statuses[500] >= 2, statuses
    assert_zoho_holds_the_ledger(sim, records)
    assert_no_version_written_twice(sim, records)
    assert sorted(Alert.objects.values_list("discrepancy__contact_id", "discrepancy__kind")) == [
        (contact_id, Discrepancy.Kind.RECORD_MISSING) for contact_id in doomed
    ]
    assert not Discrepancy.objects.filter(status="open").exclude(contact_id__in=doomed).exists()
    # and the batches stayed at 100 records, one update call per batch attempt
    assert max(ZohoCall.objects.filter(operation="crm.update").values_list("records", flat=True)) <= 100


def test_workers_killed_mid_batch_lose_no_change(workers: Any, ledger: Any, crm: Any, sim: Any) -> None:
    # Given slow update calls, so a batch is in flight when the workers die
    records = make_changes(ledger, crm, 250)
    sim.fault("slow", ratio=1, delay_s=1.5, ops=["crm.update", "crm.get"])
    workers.start(2)

    # When the workers are killed with SIGKILL in the middle of a batch, three times,
    # new changes arriving before each kill (a kill that lands just after the call in flight
    # came back cut nothing off: it is not counted, and the workers are killed once more)
    cut_off = kills = 0
    while cut_off < 3 and kills < 8:
        if kills:
            records.update(make_changes(ledger, crm, 100, first=1000 * kills))
        seen = ZohoCall.objects.order_by("-id").values_list("id", flat=True).first() or 0
        in_flight = ZohoCall.objects.filter(
            operation__in=["crm.update", "crm.get"], outcome="pending", id__gt=seen
        )
        workers.wait_until(in_flight.exists, f"a batch in flight (kill {kills + 1})")
        workers.kill_all()
        kills += 1
        connection.close()  # read what the workers committed before they died
        cut_off += in_flight.exists()
        workers.start(2)
    assert cut_off == 3, f"only {cut_off} of {kills} kills landed while a call was in flight"
    sim.clear_faults()

    # Then, once they have caught up, every change is verified and Zoho holds the ledger's values
    workers.wait_until(lambda: all_verified(records), "every change verified after the kills")
    assert_zoho_holds_the_ledger(sim, records)
    # and the calls the kills cut off are still on record as sent, their answer never read
    assert ZohoCall.objects.filter(outcome="pending").count() >= cut_off
    assert not Alert.objects.exists()


def update_batch_sizes(sim: Any) -> list[int]:
    """How many records each update call that reached zohosim carried (its per-record answers)."""
    return [len(call["entry_codes"] or []) for call in sim.calls("crm.update")]


def test_a_committed_change_is_pushed_and_verified_without_waiting_for_beat(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given workers running and nothing sending the periodic sweep
    workers.start(2)

    # When 40 changes commit
    records = {}
    for i in range(40):
        email = f"k{i}@example.com"
        contact = ledger.change(email, "sms_marketing", "opted_in", zoho_id=crm(email))
        records[contact.pk] = contact.zoho_id

    # Then every one reaches Zoho through the kick each commit sends, and is read back
    # when its verify delay has passed
    workers.wait_until(lambda: all_verified(records), "every change verified without beat", beat=False)
    assert_zoho_holds_the_ledger(sim, records)
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()
    # and they went out together: fewer update calls than changes, none over 100 records
    sizes = update_batch_sizes(sim)
    assert sum(sizes) == len(records)
    assert len(sizes) < len(records) and max(sizes) <= 100, sizes


def test_a_newer_event_during_the_verify_delay_wins(workers: Any, ledger: Any, crm: Any, sim: Any) -> None:
    # Given a verify delay long enough for a second decision to arrive before the read-back
    workers.env["CONSENT_VERIFY_DELAY_S"] = "8"
    workers.start(2)
    email = "mind@example.com"
    contact = ledger.change(email, "sms_marketing", "opted_in", zoho_id=crm(email), minutes_ago=2)
    workers.wait_until(lambda: SyncPush.objects.filter(contact=contact).exists(), "the opt-in pushed")

    # When the person opts out before the opt-in's read-back
    ledger.change(email, "sms_marketing", "opted_out", minutes_ago=1)

    # Then the opt-in's push is superseded, the opt-out's is verified, and Zoho holds the opt-out
    def settled() -> bool:
        verifications = list(
            SyncPush.objects.filter(contact=contact).order_by("id").values_list("verification", flat=True)
        )
        return len(verifications) == 2 and verifications == ["superseded", "verified"]

    workers.wait_until(settled, "the opt-in superseded and the opt-out verified")
    assert sim.contact(contact.zoho_id)["SMS_Opt_In"] is False
    assert not Discrepancy.objects.exists()


def test_duplicates_are_never_written_by_the_workers(workers: Any, ledger: Any, crm: Any, sim: Any) -> None:
    # Given two CRM records with one email, and 150 contacts with one record each
    twins = {crm("twin@example.com"), crm("twin@example.com")}
    records = make_changes(ledger, crm, 150)
    twin = ledger.change("twin@example.com", "sms_marketing", "opted_in")

    # When the workers push everything
    workers.start(2)
    workers.wait_until(
        lambda: (
            all_verified(records)
            and Discrepancy.objects.filter(contact=twin, kind=Discrepancy.Kind.DUPLICATE).exists()
        ),
        "the others verified and the twin flagged as a duplicate",
    )

    # Then neither twin record was ever written, the duplicate is open for an admin,
    # and no update call carried more than 100 records
    assert not [w for w in sim.writes() if w["record_id"] in twins]
    duplicate = Discrepancy.objects.get(contact=twin, kind=Discrepancy.Kind.DUPLICATE)
    assert duplicate.status == "open"
    assert_zoho_holds_the_ledger(sim, records)
    sizes = update_batch_sizes(sim)
    assert sum(sizes) >= len(records) and max(sizes) <= 100, sizes


def test_concurrent_campaigns_pulls_record_each_unsubscribe_and_bounce_once(
    workers: Any, sim: Any, ledger: Any
) -> None:
    # Given an unsubscribe, a hard and a soft bounce waiting in Campaigns
    from tests.sync.test_campaigns_pull import opt_in, seed_lists

    seed_lists(sim)
    ana = opt_in("ana@example.com")
    sim.post("/_sim/campaigns/unsubscribe", email="ana@example.com", listkey="LK1")
    sim.post("/_sim/campaigns/bounce", email="ben@example.com", kind="hard", listkey="LK1", campaignkey="CK1")
    sim.post("/_sim/campaigns/bounce", email="cy@example.com", kind="soft", campaignkey="CK1")

    # When three pulls run at once on two workers, then once more after them
    workers.env["ZOHO_CAMPAIGNS_LIST_KEYS"] = "LK1,LK2"
    workers.start(2)
    for _ in range(3):
        workers.sender.send_task("sync.campaigns_pull")
    workers.wait_until(
        lambda: Suppression.objects.exists() and workers.drained(), "the pulls done", beat=False
    )
    workers.sender.send_task("sync.campaigns_pull")
    workers.wait_until(workers.drained, "the last pull done", beat=False)

    # Then each is recorded once: one event, one suppression, one soft bounce counted
    assert ConsentEvent.objects.filter(contact=ana, source="campaigns", status="opted_out").count() == 1
    assert Suppression.objects.filter(contact__email="ben@example.com", kind="hard_bounce").count() == 1
    assert soft_bounces(email="cy@example.com") == 1
    assert not Suppression.objects.filter(contact__email="cy@example.com").exists()
    # and all four pulls really ran: each reads both lists twice (unsubscribes, bounces)
    assert len(sim.calls("campaigns.getlistsubscribers")) >= 4 * 4


def test_a_change_that_waited_for_its_contacts_push_in_flight_follows_without_beat(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given a slow Zoho and a push of the contact in flight
    sim.fault("slow", ratio=1, delay_s=2, ops=["crm.update"])
    workers.start(2)
    email = "busy@example.com"
    contact = ledger.change(email, "sms_marketing", "opted_in", zoho_id=crm(email), minutes_ago=2)
    workers.wait_until(
        lambda: ZohoCall.objects.filter(operation="crm.update", outcome="pending").exists(),
        "the opt-in's push in flight",
        beat=False,
    )

    # When the person changes their mind meanwhile (the claim leaves the row: the contact is busy)
    ledger.change(email, "sms_marketing", "opted_out", minutes_ago=1)

    # Then, once the first push is done, the opt-out goes out too, with nothing sending a sweep
    workers.wait_until(
        lambda: all_verified({contact.pk: contact.zoho_id}), "the opt-out verified", beat=False
    )
    assert sim.contact(contact.zoho_id)["SMS_Opt_In"] is False


def test_email_withdrawals_reach_every_campaigns_list_through_5xx_each_unsubscribe_taken_once(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given twelve people in two Campaigns lists who opted in to email, then withdrew
    emails = [f"leave{i}@example.com" for i in range(12)]
    sim.seed(
        lists=[
            {"listkey": "LK1", "name": "News", "subscribers": emails},
            {"listkey": "LK2", "name": "Offers", "subscribers": emails},
        ]
    )
    records = {}
    for email in emails:
        contact = ledger.change(email, "email_marketing", "opted_in", zoho_id=crm(email), minutes_ago=3)
        ledger.change(email, "email_marketing", "opted_out", minutes_ago=1)
        records[contact.pk] = contact.zoho_id
    # and Campaigns answering 500 to a quarter of the unsubscribes (seeded)
    sim.config(fault_seed=7)
    sim.fault("server_error", ratio=0.25, ops=["campaigns.listunsubscribe"])

    # When two workers push them
    workers.env["ZOHO_CAMPAIGNS_LIST_KEYS"] = "LK1,LK2"
    workers.start(2)

    def everyone_unsubscribed() -> bool:
        lists = sim.http.get("/_sim/lists").json()["lists"]
        return all(s["status"] == "unsub" for row in lists for s in row["subscribers"]) and all_verified(
            records
        )

    workers.wait_until(everyone_unsubscribed, "every address out of both lists, CRM verified", deadline_s=120)
    workers.wait_until(workers.drained, "the workers done")

    # Then every withdrawal is out of both lists and in CRM, and each of the 24 unsubscribes
    # was taken by Campaigns once: a batch's retry sent only those a 500 had stopped
    unsubscribes = Counter(call["status"] for call in sim.calls("campaigns.listunsubscribe"))
    assert unsubscribes[500] >= 1, unsubscribes
    assert unsubscribes[200] == 24, unsubscribes
    assert_zoho_holds_the_ledger(sim, records)
    assert not OutboxEntry.objects.filter(processed_at__isnull=True).exists()


def test_contacts_found_by_email_link_through_5xx_each_lookup_answered_once(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given ninety people who gave only their email (their CRM records exist; nobody told us the
    # ids), looked up in Contacts and Leads, 50 addresses a query: four queries a batch
    records = {}
    for i in range(90):
        email = f"found{i}@example.com"
        record_id = crm(email)
        records[ledger.change(email, "sms_marketing", "opted_in", minutes_ago=2).pk] = record_id
    # and Zoho answering 500 to the second COQL look-up and a third of the others (seeded)
    sim.config(fault_seed=11)
    sim.http.put(
        "/_sim/faults",
        json={"server_error": [{"ops": ["crm.coql"], "nth": [2]}, {"ops": ["crm.coql"], "ratio": 0.35}]},
    ).raise_for_status()

    # When two workers push them
    workers.env["ZOHO_MODULES"] = "Contacts,Leads"
    workers.start(2)
    workers.wait_until(
        lambda: all_verified(records), "every change linked, pushed and verified", deadline_s=120
    )
    workers.wait_until(workers.drained, "the workers done")

    # Then every record holds its consent, and each look-up Zoho answered was asked once: a
    # batch's retry asked only those a 500 had stopped
    lookups = sim.calls("crm.coql")
    statuses = Counter(call["status"] for call in lookups)
    assert statuses[500] >= 1, statuses
    answered = Counter(call["select_query"] for call in lookups if call["status"] in (200, 204))
    assert answered and max(answered.values()) == 1, answered
    assert_zoho_holds_the_ledger(sim, records)
    assert not Alert.objects.exists()
