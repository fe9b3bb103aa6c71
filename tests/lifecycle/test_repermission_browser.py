"""Re-permission in a real headless Chromium: an admin opens it from the policies page, reviews
and starts a mail run, watches it finish, and sees a response come in. Shots into SHOTS."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from compliance.lifecycle import mail, repermission
from compliance.models import ConsentState, LifecycleMessage, RepermissionRun
from tests.browser import log_in
from tests.lifecycle.conftest import confirm_path

SHOTS = Path("/tmp/helpers/shots/lifecycle")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_an_admin_starts_a_re_permission_run_and_watches_it(
    page: Any, admin_user: Any, new_policy: Any, people: Any
) -> None:
    log_in(page, admin_user.username)
    page.goto("/policies/")
    shot(page, "policy_list")
    page.click("text=Re-permission for 2027-01")
    page.wait_for_url(re.compile(r".*/policies/\d+/repermission/$"))

    # The counts per purpose, and who they are
    row = page.locator("table.repermission-counts tr.purpose-email_marketing")
    assert row.locator("td.older").inner_text() == "3" and row.locator("td.none").inner_text() == "0"
    assert row.locator("td.legacy").inner_text() == "1"
    assert page.locator("table.repermission tbody tr").count() == 4
    shot(page, "repermission")

    # Review: only the newsletter
    page.uncheck("input[name=purposes][value=profiling]")
    page.check("input[name=action][value=mail]")
    page.click("button:has-text('Review and start')")
    assert page.locator("#confirm-count").inner_text() == "3"
    assert not RepermissionRun.objects.exists()
    shot(page, "repermission_confirm")

    page.click("button:has-text('Yes, start it')")
    page.wait_for_url(re.compile(r".*/policies/repermission/\d+/$"))
    run = RepermissionRun.objects.get()
    assert (run.created_by_id, run.total) == (admin_user.pk, 3)
    assert "Queued" in page.locator("#run-status").inner_text()
    shot(page, "repermission_run_queued")

    # The task runs (no broker in this test: in-process), the page shows it done
    repermission.repermission_run_execute(run_pk=run.pk)
    page.reload()
    assert "Done" in page.locator("#run-status").inner_text()
    assert page.locator("#run-percent").inner_text() == "100 %"

    # Ben answers through his mail's link
    message = LifecycleMessage.objects.get(kind="repermission", to_email="ben@example.com")
    mail.message_send(message_pk=message.pk)
    message.refresh_from_db()
    run_page = page.url
    page.goto(confirm_path(message))  # the public page, as Ben opens it from his mail
    text = page.locator("body").inner_text()
    assert "2027-01" in text and "Our privacy policy has changed" in text and "runs out" not in text
    shot(page, "repermission_confirm_public")
    page.click("button.public-button")
    assert (
        ConsentState.objects.get(contact=people["ben"], purpose__code="email_marketing").status == "opted_in"
    )
    shot(page, "repermission_confirmed_public")
    page.goto(run_page)
    assert (
        ConsentState.objects.get(contact=people["ben"], purpose__code="email_marketing").policy_version
        == new_policy
    )

    page.reload()
    assert page.locator("#answered").inner_text() == "1" and page.locator("#asked").inner_text() == "3"
    assert page.locator("#rate-now").inner_text() == "33.3 %"
    assert page.locator("figure.chart-figure svg title").count() == 1
    page.click("summary:has-text('Table of this chart')")
    assert "33.3" in page.locator("table.chart-table").inner_text()
    shot(page, "repermission_run_done")
