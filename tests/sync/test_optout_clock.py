"""The opt-out clock: business days, when a withdrawal takes effect, the page, its export, the alert."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from compliance.models import AccessLog
from config.celery import app as celery_app
from sync.alerts import alert_opt_out_deadline
from sync.models import Alert, CampaignsObservation, CrmLink, WithdrawalClock
from sync.optout_clock import (
    _time_to_effect_in_python,
    business_days_between,
    deadline_after,
    time_to_effect,
    time_to_effect_recent,
    withdrawal_clocks_open,
    withdrawal_clocks_settle,
    withdrawal_clocks_unsubscribed,
)
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.tasks.optout_clock import optout_clock_run
from sync.verify import pushes_verify_due

URL = "/sync/opt-out-clock/"
# Thursday 24 December 2026: Friday the 25th is a public holiday in Germany, then a weekend.
CHRISTMAS_EVE = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
# A Monday with no German holiday in the next three weeks.
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def push_all(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)


def withdraw(ledger: Any, email: str, *, at: datetime, purpose: str = "email_marketing") -> Any:
    """An opt-in, then its withdrawal recorded at `at`."""
    with time_machine.travel(at - timedelta(hours=1), tick=False):
        ledger.change(email, purpose, "opted_in")
    with time_machine.travel(at, tick=False):
        return ledger.change(email, purpose, "opted_out")


# -- business days -----------------------------------------------------------------------------


def test_business_days_skip_weekends_and_the_countrys_holidays(settings: Any) -> None:
    settings.COMPLIANCE_HOLIDAYS_COUNTRY = ""
    # Weekends only: Friday the 25th counts, Saturday and Sunday do not.
    assert deadline_after(CHRISTMAS_EVE, 2) == datetime(2026, 12, 28, 10, 0, tzinfo=UTC)
    assert business_days_between(CHRISTMAS_EVE, datetime(2026, 12, 28, 10, 0, tzinfo=UTC)) == pytest.approx(
        2.0
    )

    settings.COMPLIANCE_HOLIDAYS_COUNTRY = "DE"
    # Christmas Day (Friday) is a holiday in Germany, and so is Boxing Day (a Saturday anyway).
    assert deadline_after(CHRISTMAS_EVE, 2) == datetime(2026, 12, 29, 10, 0, tzinfo=UTC)
    # 14 h of Thursday + nothing on Friday, Saturday, Sunday + 10 h of Monday = one business day.
    assert business_days_between(CHRISTMAS_EVE, datetime(2026, 12, 28, 10, 0, tzinfo=UTC)) == pytest.approx(
        1.0
    )
    # Within one business day: hours count as fractions.
    assert business_days_between(MONDAY, MONDAY + timedelta(hours=6)) == pytest.approx(0.25)


def test_an_unknown_holiday_country_is_a_clear_configuration_error(settings: Any) -> None:
    settings.COMPLIANCE_HOLIDAYS_COUNTRY = "XX"
    with pytest.raises(ImproperlyConfigured, match="COMPLIANCE_HOLIDAYS_COUNTRY"):
        deadline_after(MONDAY, 1)


# -- when a withdrawal is in effect ------------------------------------------------------------


def test_a_withdrawal_is_in_effect_only_once_crm_verified_it_and_every_list_unsubscribed_it(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    # Given three Campaigns lists, of which zohosim knows two (the third refuses the unsubscribe)
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1", "LK2", "LK3"]
    engine_settings.CONSENT_VERIFY_DELAY_S = 60
    sim.seed(
        lists=[
            {"listkey": "LK1", "name": "News", "subscribers": ["leave@example.com"]},
            {"listkey": "LK2", "name": "Offers", "subscribers": ["leave@example.com"]},
        ]
    )
    contact = ledger.change(
        "leave@example.com", "email_marketing", "opted_in", zoho_id=crm("leave@example.com")
    )
    push_all(zoho)
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    event = ledger.change("leave@example.com", "email_marketing", "opted_out").events.latest("id")

    # When the withdrawal is pushed: unsubscribed from LK1 and LK2 at once, CRM awaiting read-back
    push_all(zoho)

    clock = WithdrawalClock.objects.get(event=event)
    assert clock.contact_id == contact.pk and clock.crm_required
    assert clock.lists_required == ["LK1", "LK2", "LK3"]
    assert sorted(clock.lists_unsubscribed) == ["LK1", "LK2"]
    assert clock.crm_verified_at is None and clock.effective_at is None

    # When the read-back verifies the push: still not in effect, LK3 is missing
    pushes_verify_due(zoho=zoho, ignore_delay=True)
    clock.refresh_from_db()
    assert clock.crm_verified_at is not None and clock.crm_push is not None
    assert clock.crm_push.ledger_versions["email_marketing"] == event.version
    assert clock.effective_at is None

    # When LK3 unsubscribes the address too: in effect, at the last of its legs
    withdrawal_clocks_unsubscribed(done=[("leave@example.com", "LK3")])
    clock.refresh_from_db()
    assert clock.effective_at == datetime.fromisoformat(clock.lists_unsubscribed["LK3"])
    assert clock.effective_at >= clock.crm_verified_at
    assert clock.business_days_to_effect is not None


def test_a_newer_opt_in_before_it_took_effect_supersedes_the_withdrawal(
    ledger: Any, engine_settings: Any
) -> None:
    withdraw(ledger, "back@example.com", at=MONDAY)
    with time_machine.travel(MONDAY + timedelta(hours=2), tick=False):
        ledger.change("back@example.com", "email_marketing", "opted_in")

    optout_clock_run(now=MONDAY + timedelta(hours=3))

    clock = WithdrawalClock.objects.get()
    assert clock.superseded_at == MONDAY + timedelta(hours=2)
    assert clock.effective_at is None


def test_a_restated_opt_out_is_not_a_withdrawal_of_its_own(ledger: Any, engine_settings: Any) -> None:
    withdraw(ledger, "twice@example.com", at=MONDAY)
    with time_machine.travel(MONDAY + timedelta(hours=1), tick=False):
        ledger.change("twice@example.com", "email_marketing", "opted_out")

    withdrawal_clocks_open(now=MONDAY + timedelta(hours=2))

    assert WithdrawalClock.objects.count() == 1


def test_a_campaigns_sighting_and_a_contact_not_in_crm_complete_a_withdrawal_without_the_hooks(
    ledger: Any, engine_settings: Any
) -> None:
    # Given a contact that CRM does not hold, and whose address the Campaigns pull saw unsubscribed
    # from the list an hour before the withdrawal (unsubscribed already)
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1"]
    contact = withdraw(ledger, "pulled@example.com", at=MONDAY)
    CrmLink.objects.create(contact=contact, state=CrmLink.State.NOT_IN_CRM, checked_at=MONDAY)
    observation = CampaignsObservation.objects.create(
        list_key="LK1", email="pulled@example.com", status=CampaignsObservation.Status.UNSUBSCRIBED
    )
    CampaignsObservation.objects.filter(pk=observation.pk).update(first_seen_at=MONDAY - timedelta(hours=1))

    optout_clock_run(now=MONDAY + timedelta(minutes=5))

    clock = WithdrawalClock.objects.get()
    assert clock.crm_required is False  # nothing to verify in CRM
    assert clock.lists_unsubscribed == {"LK1": MONDAY.isoformat()}  # counted from the withdrawal
    assert clock.effective_at == MONDAY and clock.business_days_to_effect == 0


def test_settling_open_withdrawals_takes_the_same_queries_for_3_or_30(
    ledger: Any, engine_settings: Any, django_assert_num_queries: Any
) -> None:
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1"]
    for n in range(3):
        withdraw(ledger, f"few{n}@example.com", at=MONDAY + timedelta(minutes=n))
    withdrawal_clocks_open(now=MONDAY + timedelta(hours=1))
    with CaptureQueriesContext(connection) as few:
        withdrawal_clocks_settle(now=MONDAY + timedelta(hours=1))
    for n in range(27):
        withdraw(ledger, f"many{n}@example.com", at=MONDAY + timedelta(minutes=10 + n))
    withdrawal_clocks_open(now=MONDAY + timedelta(hours=1))
    assert WithdrawalClock.objects.filter(effective_at__isnull=True).count() == 30

    with django_assert_num_queries(len(few)):
        withdrawal_clocks_settle(now=MONDAY + timedelta(hours=1))


def test_the_command_runs_one_cycle(ledger: Any, engine_settings: Any) -> None:
    withdraw(ledger, "cmd@example.com", at=timezone.now() - timedelta(hours=1))
    out = io.StringIO()

    call_command("optout_clock_now", stdout=out)

    assert out.getvalue().strip() == "1 clock(s) started, 0 withdrawal(s) in effect, 0 alert(s) raised."
    assert WithdrawalClock.objects.get().contact.email == "cmd@example.com"


# -- the page, its figures and its export ------------------------------------------------------


def table_rows(html: str) -> list[list[str]]:
    body = html.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, flags=re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        rows.append([re.sub(r"<[^>]+>", "", cell).strip() for cell in cells])
    return rows


@pytest.fixture
def three_open(ledger: Any, engine_settings: Any) -> list[Any]:
    """Three withdrawals never pushed, recorded on three days; the middle one is a phone purpose
    (CRM only), the others email (CRM and one list)."""
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["LK1"]
    contacts = [
        withdraw(ledger, "third@example.com", at=MONDAY + timedelta(days=2)),
        withdraw(ledger, "second@example.com", at=MONDAY + timedelta(days=1), purpose="phone_marketing"),
        withdraw(ledger, "first@example.com", at=MONDAY),
    ]
    optout_clock_run(now=MONDAY + timedelta(days=3))
    return contacts


def test_the_page_lists_open_withdrawals_oldest_first_with_what_each_waits_for(
    three_open: Any, officer: Any, client_for: Any
) -> None:
    with time_machine.travel(MONDAY + timedelta(days=3), tick=False):  # Thursday 09:00
        response = client_for(officer).get(URL)

    assert response.status_code == 200
    rows = table_rows(response.content.decode())
    assert [row[2] for row in rows] == ["first@example.com", "second@example.com", "third@example.com"]
    assert [row[4] for row in rows] == ["3.0", "2.0", "1.0"]
    assert [row[3] for row in rows] == ["email_marketing", "phone_marketing", "email_marketing"]
    assert [row[6] for row in rows] == ["CRM verify, list LK1", "CRM verify", "CRM verify, list LK1"]
    assert all(row[7] == "on time" for row in rows)
    assert 'class="value open-count">3<' in response.content.decode()


def test_the_csv_export_equals_the_table_and_is_logged(
    three_open: Any, officer: Any, client_for: Any
) -> None:
    client = client_for(officer)
    with time_machine.travel(MONDAY + timedelta(days=3), tick=False):
        page = table_rows(client.get(URL).content.decode())
        response = client.get(URL, {"_export": "csv"})

    assert response.status_code == 200
    exported = list(csv.reader(io.StringIO(response.content.decode())))
    header, body = exported[0], exported[1:]
    assert header == [
        "Recorded",
        "Event",
        "Contact",
        "Purpose",
        "Age (business days)",
        "Deadline",
        "Waiting for",
        "State",
    ]
    assert len(body) == len(page) == 3
    clocks = list(WithdrawalClock.objects.order_by("recorded_at"))
    assert [int(row[1]) for row in body] == [c.event_id for c in clocks] == [int(row[1]) for row in page]
    assert [int(row[2]) for row in body] == [c.contact_id for c in clocks]
    assert [row[3] for row in body] == [row[3] for row in page]
    assert [round(float(row[4]), 1) for row in body] == [float(row[4]) for row in page]
    assert [row[6] for row in body] == [row[6] for row in page]
    assert [row[0] for row in body] == [c.recorded_at.isoformat() for c in clocks]
    entry = AccessLog.objects.get(kind=AccessLog.Kind.EXPORT)
    assert entry.path == URL and entry.detail == "opt-out-clock CSV (3 rows)"
    assert sorted(entry.contacts.values_list("contact_id", flat=True)) == sorted(c.contact_id for c in clocks)


def test_median_and_p95_are_computed_over_the_windows_completed_withdrawals(
    ledger: Any, engine_settings: Any, officer: Any, client_for: Any
) -> None:
    # Given 20 withdrawals that took 1 to 20 hours (and business days, for the test), and one
    # that took effect before the 90-day window
    for n in range(1, 22):
        withdraw(ledger, f"w{n}@example.com", at=MONDAY + timedelta(minutes=n))
    withdrawal_clocks_open(now=MONDAY + timedelta(hours=1))
    clocks = list(WithdrawalClock.objects.order_by("recorded_at"))
    for n, clock in enumerate(clocks, start=1):
        clock.effective_at = clock.recorded_at + timedelta(hours=n)
        clock.business_days_to_effect = float(n)
    clocks[-1].effective_at = MONDAY - timedelta(days=200)
    WithdrawalClock.objects.bulk_update(clocks, ["effective_at", "business_days_to_effect"])

    figures = time_to_effect(now=MONDAY + timedelta(days=5))

    # Nearest rank: the median of 1..20 is the 10th value, the 95th percentile the 19th.
    assert figures.count == 20
    assert figures.median_business_days == 10.0 and figures.p95_business_days == 19.0
    assert figures.median_hours == pytest.approx(10.0) and figures.p95_hours == pytest.approx(19.0)
    assert figures.late == 10  # more than OPT_OUT_DEADLINE_BUSINESS_DAYS (10)
    # and where the database has no percentile_disc (SQLite, the demo), Python gives the same
    now = MONDAY + timedelta(days=5)
    assert _time_to_effect_in_python(now=now, since=now - timedelta(days=90), window_days=90) == figures
    with time_machine.travel(MONDAY + timedelta(days=5), tick=False):
        html = client_for(officer).get(URL).content.decode()
    assert 'class="value effect-median">10.00' in html and 'class="value effect-p95">19.00' in html
    assert "Every withdrawal is in effect" in html


def test_the_page_shows_the_clock_runs_figures_while_recent_then_its_own(
    ledger: Any, engine_settings: Any, officer: Any, client_for: Any
) -> None:
    # Given three withdrawals that took 1, 2 and 3 business days, and the clock run's figures
    for n in range(1, 4):
        withdraw(ledger, f"w{n}@example.com", at=MONDAY + timedelta(minutes=n))
    run_at = MONDAY + timedelta(days=5)
    withdrawal_clocks_open(now=run_at)
    clocks = list(WithdrawalClock.objects.order_by("recorded_at"))
    for n, clock in enumerate(clocks, start=1):
        clock.effective_at = clock.recorded_at + timedelta(hours=n)
        clock.business_days_to_effect = float(n)
    WithdrawalClock.objects.bulk_update(clocks, ["effective_at", "business_days_to_effect"])
    with time_machine.travel(run_at, tick=False):
        optout_clock_run(now=run_at)
    # When a fourth takes effect (a hook, between two runs) and the page is seen a minute later
    withdraw(ledger, "w4@example.com", at=MONDAY + timedelta(minutes=4))
    withdrawal_clocks_open(now=run_at)
    late = WithdrawalClock.objects.get(contact__email="w4@example.com")
    late.effective_at, late.business_days_to_effect = late.recorded_at + timedelta(hours=4), 4.0
    late.save(update_fields=["effective_at", "business_days_to_effect"])
    with time_machine.travel(run_at + timedelta(minutes=1), tick=False):
        html = client_for(officer).get(URL).content.decode()
    # Then it shows the run's figures (three withdrawals), and says as of when
    assert "Over the 3 withdrawals" in html and 'class="value effect-p95">3.00' in html
    assert "As of 2026-11-07 09:00:00" in html
    # and once they are older than FIGURES_FRESH (beat stopped), its own over all four
    with time_machine.travel(run_at + timedelta(minutes=6), tick=False):
        html = client_for(officer).get(URL).content.decode()
    assert "Over the 4 withdrawals" in html and 'class="value effect-p95">4.00' in html
    assert time_to_effect_recent(now=run_at + timedelta(minutes=6)).count == 4


# -- the alert ---------------------------------------------------------------------------------


def test_the_alert_fires_once_two_business_days_before_the_deadline(
    ledger: Any, engine_settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # Given a withdrawal recorded on Monday 2 November, 09:00: its deadline is ten business days
    # later (Monday 16th), its alert two business days before (Thursday 12th, 09:00)
    withdraw(ledger, "late@example.com", at=MONDAY)
    optout_clock_run(now=MONDAY + timedelta(minutes=1))
    clock = WithdrawalClock.objects.get()
    assert clock.deadline_at == datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    assert clock.alert_at == datetime(2026, 11, 12, 9, 0, tzinfo=UTC)

    # Not a minute before
    assert optout_clock_run(now=clock.alert_at - timedelta(minutes=1))["alerted"] == 0
    assert not Alert.objects.exists()

    # When the alert time has come: one alert, mailed once committed
    with django_capture_on_commit_callbacks(execute=True):
        assert optout_clock_run(now=clock.alert_at + timedelta(minutes=1))["alerted"] == 1
    alert = Alert.objects.get()
    assert alert.kind == Alert.Kind.OPT_OUT_DEADLINE and alert.withdrawal_id == clock.pk
    assert "CRM verify" in alert.message and "2026-11-16 09:00" in alert.message
    assert len(mail.outbox) == 1 and "close to its deadline" in mail.outbox[0].subject
    assert Alert.objects.get().emailed_to == ["compliance@example.com"]

    # Never twice: not the next run, not past the deadline, not a direct second call
    assert optout_clock_run(now=clock.alert_at + timedelta(hours=1))["alerted"] == 0
    assert optout_clock_run(now=clock.deadline_at + timedelta(days=1))["alerted"] == 0
    assert alert_opt_out_deadline(clock=clock, missing="CRM verify", now=clock.deadline_at) is None
    assert Alert.objects.count() == 1 and len(mail.outbox) == 1


def test_no_alert_for_a_withdrawal_in_effect_before_its_alert_time(ledger: Any, engine_settings: Any) -> None:
    withdraw(ledger, "quick@example.com", at=MONDAY)
    withdrawal_clocks_open(now=MONDAY)
    WithdrawalClock.objects.update(crm_required=False)  # e.g. not in CRM: nothing left to wait for
    optout_clock_run(now=MONDAY + timedelta(minutes=5))
    assert WithdrawalClock.objects.get().effective_at == MONDAY

    assert optout_clock_run(now=MONDAY + timedelta(days=30))["alerted"] == 0
    assert not Alert.objects.exists()


def test_no_alert_for_old_withdrawals_the_first_run_finds_past_their_deadline(
    ledger: Any, engine_settings: Any
) -> None:
    # Given a withdrawal recorded a month before the clock's first run (its backfill)
    withdraw(ledger, "old@example.com", at=MONDAY)

    report = optout_clock_run(now=MONDAY + timedelta(days=30))

    # Then the page lists it as overdue, but no alert comes a month late
    assert report == {"started": 1, "effective": 0, "alerted": 0}
    assert WithdrawalClock.objects.get().started_at == MONDAY + timedelta(days=30)
    assert not Alert.objects.exists()


# -- who may see it ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "status"), [("officer", 200), ("admin_user", 200), ("auditor", 403), ("outsider", 403)]
)
def test_only_officers_and_admins_see_the_page(
    who: str, status: int, request: Any, client_for: Any, engine_settings: Any
) -> None:
    user = request.getfixturevalue(who)
    assert client_for(user).get(URL).status_code == status
    assert client_for(user).get(URL, {"_export": "csv"}).status_code == status


def test_the_navigation_links_the_page_for_officers_only(
    client_for: Any, officer: Any, auditor: Any, engine_settings: Any
) -> None:
    link = f'<a href="{URL}">Opt-out clock</a>'
    assert link in client_for(officer).get("/").content.decode()
    assert link not in client_for(auditor).get("/").content.decode()


def test_beat_runs_the_clock_every_minute(settings: Any) -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["optout-clock"]
    celery_app.loader.import_default_modules()  # what a worker does when it starts

    assert entry["task"] == "sync.optout_clock" and entry["task"] in celery_app.tasks
    assert entry["schedule"] == 60.0 and entry["options"]["expires"] < 60
