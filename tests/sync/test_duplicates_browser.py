"""An admin settles duplicate CRM records on the duplicates page, reached from the discrepancies
page: "write to all" for one person, a primary for another; each choice is recorded with its
reason, the held pushes go out and are verified (headless Chromium, Debian's; real HTTP to zohosim)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sync.models import CrmLink, DuplicateDecision, SyncPush
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due
from tests.browser import log_in

SHOTS = Path("/tmp/helpers/shots/zoho")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def push_all(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)


def test_an_admin_writes_to_all_for_one_person_and_picks_a_primary_for_another(
    page: Any, admin_user: Any, ledger: Any, crm: Any, zoho: Any, sim: Any, sim_settings: Any
) -> None:
    shared = sorted([crm("ines@example.com", First_Name="Ines"), crm("ines@example.com", First_Name="Inès")])
    other = sorted([crm("ole@example.com", First_Name="Ole"), crm("ole@example.com", First_Name="Olaf")])
    ines = ledger.change("ines@example.com", "sms_marketing", "opted_in")
    ole = ledger.change("ole@example.com", "profiling", "opted_in")
    push_all(zoho)
    assert set(CrmLink.objects.values_list("state", flat=True)) == {"duplicate"}
    assert not sim.writes()
    SHOTS.mkdir(parents=True, exist_ok=True)
    log_in(page, admin_user.username)

    page.goto("/sync/discrepancies/")
    page.click("a.duplicates-link")
    page.wait_for_url("**/sync/duplicates/")
    assert "2 contacts" in page.locator(".duplicate-total").inner_text()
    ines_group = page.locator(f"#contact-{ines.pk}")
    assert "Inès" in ines_group.inner_text() and shared[1] in ines_group.inner_text()
    page.screenshot(path=str(SHOTS / "duplicates.png"), full_page=True)

    ines_group.locator("textarea[name=reason]").fill("Both records are hers: home and work")
    ines_group.locator("button[value=write_all]").click()
    page.wait_for_selector(".message-success")
    assert "write to all 2 records" in page.locator(".messages").inner_text()

    ole_group = page.locator(f"#contact-{ole.pk}")
    ole_group.locator(f"input[value='Contacts:{other[1]}']").check()
    ole_group.locator("textarea[name=reason]").fill("The other one is a typo of his name")
    ole_group.locator("button[value=primary]").click()
    page.wait_for_selector(".message-success")
    assert f"record {other[1]} as the primary" in page.locator(".messages").inner_text()
    assert page.locator(".nothing-held").is_visible()
    decisions = page.locator("table.duplicate-decisions").inner_text()
    assert "Both records are hers" in decisions and "typo of his name" in decisions
    page.screenshot(path=str(SHOTS / "duplicates_decided.png"), full_page=True)

    recorded = {d.contact_id: d for d in DuplicateDecision.objects.all()}
    assert (recorded[ines.pk].choice, recorded[ines.pk].decided_by_name) == ("write_all", admin_user.username)
    assert (recorded[ole.pk].choice, recorded[ole.pk].primary_record_id) == ("primary", other[1])

    # The held pushes go out (queued by the decisions) and are verified on every chosen record.
    push_all(zoho)
    pushes_verify_due(zoho=zoho)

    assert all(sim.contact(r)["SMS_Opt_In"] is True for r in shared)
    assert sim.contact(other[1])["Profiling_Consent"] is True
    assert sim.contact(other[0])["Profiling_Consent"] is False
    verified = set(SyncPush.objects.filter(verification="verified").values_list("contact_id", "zoho_id"))
    assert verified == {(ines.pk, shared[0]), (ines.pk, shared[1]), (ole.pk, other[1])}
