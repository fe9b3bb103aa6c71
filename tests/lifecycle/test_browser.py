"""The public pages in a real headless Chromium (tests/browser.py's), as the person who got the mail:
the double opt-in click, the preference centre in English and German, the unsubscribe page.
Each page is also shot at a desktop and a phone size into SHOTS, to be looked at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compliance.lifecycle import links
from compliance.models import ConsentEvent, ConsentState, LifecycleMessage
from tests.lifecycle.conftest import confirm_path, path_of, record

SHOTS = Path("/tmp/helpers/shots/lifecycle")
PHONE = {"width": 390, "height": 844}

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def person(browser: Any, live_server: Any) -> Iterator[Any]:
    """Opens a tab as a person would: a language, a screen size."""
    contexts = []

    def open_tab(locale: str = "en-GB", viewport: dict[str, int] | None = None) -> Any:
        context = browser.new_context(
            base_url=live_server.url, locale=locale, viewport=viewport or {"width": 1280, "height": 900}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_tab
    for context in contexts:
        context.close()


def shoot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def state(contact_id: int, purpose: str) -> ConsentState:
    return ConsentState.objects.get(contact_id=contact_id, purpose__code=purpose)


def test_the_double_opt_in_click(person: Any, confirmation: LifecycleMessage) -> None:
    path = confirm_path(confirmation)
    for size, viewport in (("phone", PHONE), ("desktop", None)):
        tab = person(viewport=viewport)
        tab.goto(path)
        shoot(tab, f"confirm-{size}")
    assert state(confirmation.contact_id, "email_marketing").status == "pending"  # looking changed nothing

    tab.get_by_role("button", name="Yes, confirm").click()

    assert tab.locator("h1").inner_text() == "Thank you, you are subscribed"
    shoot(tab, "confirmed-desktop")
    assert state(confirmation.contact_id, "email_marketing").status == "opted_in"
    # the same link again: a clear page, nothing recorded
    count = ConsentEvent.objects.count()
    tab.goto(path)
    assert tab.locator("h1").inner_text() == "This link cannot be used"
    shoot(tab, "link-used-desktop")
    assert ConsentEvent.objects.count() == count


def test_the_preference_centre_in_english_with_the_keyboard(person: Any, pending: ConsentEvent) -> None:
    contact = pending.contact
    record(contact, "sms_marketing", "opted_in", frequency="weekly")
    path = path_of(links.preferences_url(contact=contact))
    tab = person(viewport=PHONE)
    tab.goto(path)
    shoot(tab, "preferences-en-phone")

    sms = tab.get_by_role("group", name="SMS marketing")
    assert "Now: Yes" in sms.inner_text()
    sms.get_by_label("How often").focus()
    tab.keyboard.press("End")  # the last choice: Monthly
    sms.get_by_label("No, thank you", exact=True).check()
    tab.get_by_role("group", name="Profiling").get_by_label("Yes, please").check()
    tab.get_by_role("button", name="Save my choices").click()

    assert "Saved. Thank you." in tab.get_by_role("status").inner_text()
    shoot(tab, "preferences-saved-en-phone")
    assert state(contact.pk, "sms_marketing").status == "opted_out"
    profiling = state(contact.pk, "profiling")
    assert profiling.status == "opted_in" and profiling.event.source == "preference_centre"  # type: ignore[union-attr]


def test_the_preference_centre_in_german_changes_a_frequency(person: Any, pending: ConsentEvent) -> None:
    contact = pending.contact
    record(contact, "sms_marketing", "opted_in", frequency="weekly")
    path = path_of(links.preferences_url(contact=contact))
    desktop = person(locale="de-DE")
    desktop.goto(path)
    shoot(desktop, "preferences-de-desktop")
    tab = person(locale="de-DE", viewport=PHONE)
    tab.goto(path)
    shoot(tab, "preferences-de-phone")

    assert tab.locator("h1").inner_text() == "Ihre Einstellungen"
    assert tab.locator("html").get_attribute("lang") == "de"
    sms = tab.get_by_role("group", name="SMS-Werbung")
    assert "Derzeit: Ja" in sms.inner_text()
    sms.get_by_label("Wie oft").select_option("monthly")
    tab.get_by_role("button", name="Einstellungen speichern").click()

    assert "Gespeichert" in tab.get_by_role("status").inner_text()
    sms_state = state(contact.pk, "sms_marketing")
    assert (sms_state.status, sms_state.frequency) == ("opted_in", "monthly")
    assert sms_state.event.source == "preference_centre"  # type: ignore[union-attr]


def test_the_unsubscribe_page(person: Any, pending: ConsentEvent) -> None:
    contact = pending.contact
    path = path_of(links.unsubscribe_url(contact=contact))
    for size, viewport in (("phone", PHONE), ("desktop", None)):
        tab = person(viewport=viewport)
        tab.goto(path)
        shoot(tab, f"unsubscribe-{size}")
    german = person(locale="de-DE", viewport=PHONE)
    german.goto(path)
    shoot(german, "unsubscribe-de-phone")
    assert state(contact.pk, "email_marketing").status == "pending"

    tab.get_by_role("button", name="Unsubscribe").click()

    assert tab.locator("h1").inner_text() == "You are unsubscribed"
    shoot(tab, "unsubscribed-desktop")
    event = state(contact.pk, "email_marketing").event
    assert event is not None and (event.status, event.source) == ("opted_out", "email_link")
    assert "Chrome" in event.shown_user_agent
    tab.get_by_role("link", name="Open your preference centre").click()
    assert tab.locator("h1").inner_text() == "Your choices"


def test_the_demo_flow_from_the_sent_mail_page(
    page: Any, live_server: Any, admin_user: Any, policy: Any, settings: Any
) -> None:
    from compliance.lifecycle.services import lifecycle_cycle
    from tests.browser import log_in

    settings.DEMO_MODE = True
    settings.PUBLIC_BASE_URL = live_server.url
    log_in(page, admin_user.username)

    # An admin signs a newcomer up; the cycle sends the confirmation mail
    page.goto("/lifecycle/sent-mail/")
    page.get_by_label("Email address").fill("newcomer@example.com")
    page.get_by_role("button", name="Sign up").click()
    assert lifecycle_cycle(send_grace_s=0).sent == 1
    page.reload()
    shoot(page, "sent-mail-desktop")

    # The newcomer clicks the mail's confirm link and confirms
    page.locator("pre.mail-body a[href*='/c/']").click()
    page.get_by_role("button", name="Yes, confirm").click()
    assert page.locator("h1").inner_text() == "Thank you, you are subscribed"
    contact_id = LifecycleMessage.objects.get().contact_id
    assert state(contact_id, "email_marketing").status == "opted_in"

    # then unsubscribes with one click, as a mail client would
    page.goto("/lifecycle/sent-mail/")
    page.get_by_role("button", name="One-click unsubscribe, as a mail client sends it").click()
    assert "Unsubscribed." in page.content()
    unsubscribed = state(contact_id, "email_marketing")
    assert unsubscribed.status == "opted_out" and unsubscribed.event.evidence["link"] == "one_click"  # type: ignore[union-attr]


def test_the_refresh_page_and_a_bad_link_in_german(person: Any, policy: Any) -> None:
    from datetime import timedelta

    import time_machine

    from compliance.lifecycle.services import lifecycle_cycle

    event = record(None, "sms_marketing", "opted_in", frequency="weekly")
    due = state(event.contact_id, "sms_marketing").refresh_due_at
    assert due is not None
    with time_machine.travel(due - timedelta(days=10), tick=False):
        lifecycle_cycle(send_grace_s=0)
    path = confirm_path(LifecycleMessage.objects.get(kind="refresh"))

    with time_machine.travel(due - timedelta(days=9)):
        tab = person(locale="de-DE", viewport=PHONE)
        tab.goto(path)
        shoot(tab, "refresh-de-phone")
        assert tab.locator("h1").inner_text() == "Einwilligung verlängern"
        tab.goto(path[:-4] + "AAAA")
        shoot(tab, "link-invalid-de-phone")
        assert tab.locator("h1").inner_text() == "Dieser Link kann nicht verwendet werden"
        tab.goto(path)
        tab.get_by_role("button", name="Ja, behalten").click()
        assert tab.locator("h1").inner_text() == "Vielen Dank, Ihre Einwilligung ist verlängert"
    assert state(event.contact_id, "sms_marketing").event.evidence["refresh"] is True  # type: ignore[union-attr]
