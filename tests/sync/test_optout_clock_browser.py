"""An officer reads the opt-out clock: open withdrawals oldest first, what each waits for, and the
time to effect (headless Chromium, Debian's)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.db.models import F
from django.utils import timezone

from sync.models import WithdrawalClock
from sync.optout_clock import deadline_after, withdrawal_clocks_open
from sync.tasks.optout_clock import optout_clock_run
from tests.browser import log_in, nav_go

SHOTS = Path("/tmp/helpers/shots/record")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def withdraw(ledger: Any, email: str, at: Any, purpose: str = "email_marketing") -> None:
    with time_machine.travel(at - timedelta(hours=1), tick=False):
        ledger.change(email, purpose, "opted_in")
    with time_machine.travel(at, tick=False):
        ledger.change(email, purpose, "opted_out")


def test_an_officer_sees_the_open_withdrawals_oldest_first_and_the_time_to_effect(
    page: Any, officer: Any, ledger: Any, engine_settings: Any
) -> None:
    # Given withdrawals past their deadline, close to it and fresh, and ten that took effect
    engine_settings.ZOHO_CAMPAIGNS_LIST_KEYS = ["NEWS", "OFFERS"]
    now = timezone.now()
    withdraw(ledger, "fresh@example.com", now - timedelta(hours=3))
    withdraw(ledger, "old@example.com", now - timedelta(days=21))
    # Close: past its alert time (8 business days), not yet past its deadline (10), whatever
    # weekday the test runs on.
    candidates = (now - timedelta(days=days, hours=1) for days in range(9, 20))
    close_at = next(at for at in candidates if deadline_after(at, 8) <= now < deadline_after(at, 10))
    withdraw(ledger, "close@example.com", close_at, purpose="phone_marketing")
    for n in range(10):
        withdraw(ledger, f"done{n}@example.com", now - timedelta(days=30, hours=n))
    withdrawal_clocks_open(now=now)
    # As if beat had started each clock as it was recorded (not a backfill of old withdrawals).
    WithdrawalClock.objects.update(started_at=F("recorded_at"))
    done = WithdrawalClock.objects.filter(contact__email__startswith="done")
    for n, clock in enumerate(done.order_by("id")):
        clock.effective_at = clock.recorded_at + timedelta(hours=4 + 6 * n)
        clock.business_days_to_effect = (4 + 6 * n) / 24
        clock.save(update_fields=["effective_at", "business_days_to_effect"])
    WithdrawalClock.objects.filter(contact__email="old@example.com").update(
        lists_unsubscribed={"NEWS": now.isoformat()}
    )
    optout_clock_run(now=now)
    SHOTS.mkdir(parents=True, exist_ok=True)

    log_in(page, officer.username)
    nav_go(page, "Opt-out clock")

    rows = page.locator("table.optout-clock tbody tr")
    assert rows.count() == 3
    assert rows.nth(0).locator("td").nth(2).inner_text() == "old@example.com"
    assert rows.nth(0).locator("td").nth(6).inner_text() == "CRM verify, list OFFERS"
    assert rows.nth(0).locator("td").nth(7).inner_text() == "overdue"
    assert rows.nth(1).locator("td").nth(2).inner_text() == "close@example.com"
    close = WithdrawalClock.objects.get(contact__email="close@example.com")
    assert deadline_after(close.recorded_at, 8) <= now  # its alert time has passed
    assert rows.nth(1).locator("td").nth(7).inner_text() == "due soon"
    assert rows.nth(2).locator("td").nth(2).inner_text() == "fresh@example.com"
    assert page.locator(".open-count").inner_text() == "3"
    assert page.locator(".overdue-count").inner_text() == "1"
    # The alerts of the two withdrawals whose alert time has come (none for those in effect)
    assert "2 unacknowledged alerts" in page.locator("body").inner_text()
    assert page.locator(".effect-median").inner_text().startswith("1.17")  # 28 h: the 5th of ten
    page.screenshot(path=str(SHOTS / "optout_clock.png"), full_page=True)
