"""The public pages over HTTP: a GET never records; the POSTs record with the click's evidence;
RFC 8058's one-click POST needs no cookie, CSRF token or login; bad links record nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import time_machine
from django.test import Client
from django.utils import timezone

from compliance.lifecycle import tokens
from compliance.models import ConsentEvent, ConsentState, Contact, LifecycleMessage, OutboxEntry
from tests.lifecycle.conftest import confirm_path, events_of, record

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = "application/x-www-form-urlencoded"


def csrf_token_of(client: Client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200
    return str(response.cookies["csrftoken"].value)


def state_of(contact: Contact, purpose: str) -> ConsentState | None:
    return ConsentState.objects.filter(contact=contact, purpose__code=purpose).first()


# -- double opt-in -------------------------------------------------------------------------------


def test_the_confirmation_get_shows_one_button_and_records_nothing(
    public: Client, confirmation: LifecycleMessage
) -> None:
    before = ConsentEvent.objects.count()

    for _ in range(3):  # a mail scanner, a preview, the person
        response = public.get(confirm_path(confirmation))

    assert response.status_code == 200
    assert response.content.decode().count('type="submit"') == 1
    assert "Email marketing" in response.content.decode()
    assert ConsentEvent.objects.count() == before


def test_confirming_records_opted_in_with_the_clicks_evidence(
    public: Client, confirmation: LifecycleMessage
) -> None:
    path = confirm_path(confirmation)
    token = path.rsplit("/", 1)[1]
    csrf = csrf_token_of(public, path)

    response = public.post(path, {"csrfmiddlewaretoken": csrf}, REMOTE_ADDR="198.51.100.23")

    assert response.status_code == 200
    event = events_of(confirmation.contact)[-1]
    assert (event.status, event.source, event.purpose.code) == ("opted_in", "email_link", "email_marketing")
    assert event.shown_ip_address == "198.51.100.23"
    assert event.shown_user_agent == "Mozilla/5.0 (Lifecycle test)"
    assert event.policy_version is not None and event.policy_version.label == "2026-03"
    assert event.evidence["token_sha256"] == tokens.token_hash(token)
    assert token not in str(event.evidence)
    assert event.evidence["message_id"] == confirmation.message_id
    assert event.evidence["sent_at"] == confirmation.sent_at.isoformat()  # type: ignore[union-attr]
    assert event.evidence["clicked_at"] and event.evidence["double_opt_in_confirmed_at"]
    state = state_of(confirmation.contact, "email_marketing")
    assert state is not None and state.status == "opted_in"


def test_a_confirmation_post_needs_its_csrf_token(public: Client, confirmation: LifecycleMessage) -> None:
    before = ConsentEvent.objects.count()

    response = public.post(confirm_path(confirmation), {})

    assert response.status_code == 403
    assert ConsentEvent.objects.count() == before


def test_a_reused_confirmation_link_gives_a_clear_page_and_records_nothing(
    public: Client, confirmation: LifecycleMessage
) -> None:
    path = confirm_path(confirmation)
    csrf = csrf_token_of(public, path)
    public.post(path, {"csrfmiddlewaretoken": csrf})
    count = ConsentEvent.objects.count()

    again = public.post(path, {"csrfmiddlewaretoken": csrf})
    shown = public.get(path)

    assert again.status_code == 409 and shown.status_code == 409
    assert "used already" in again.content.decode()
    assert ConsentEvent.objects.count() == count


def test_an_expired_confirmation_link_records_nothing(public: Client, confirmation: LifecycleMessage) -> None:
    path = confirm_path(confirmation)
    csrf = csrf_token_of(public, path)
    before = ConsentEvent.objects.count()

    with time_machine.travel(timezone.now() + timedelta(hours=169), tick=False):
        response = public.post(path, {"csrfmiddlewaretoken": csrf})

    assert response.status_code == 410
    assert "expired" in response.content.decode()
    assert ConsentEvent.objects.count() == before


def test_a_tampered_confirmation_link_records_nothing(public: Client, confirmation: LifecycleMessage) -> None:
    path = confirm_path(confirmation)
    csrf = csrf_token_of(public, path)
    before = ConsentEvent.objects.count()

    response = public.post(
        path[:-2] + ("AA" if not path.endswith("AA") else "BB"), {"csrfmiddlewaretoken": csrf}
    )

    assert response.status_code == 404
    assert "not valid" in response.content.decode()
    assert ConsentEvent.objects.count() == before


def test_a_confirmation_after_a_withdrawal_records_nothing(
    public: Client, confirmation: LifecycleMessage
) -> None:
    path = confirm_path(confirmation)
    csrf = csrf_token_of(public, path)
    record(confirmation.contact, "email_marketing", "opted_out", occurred_at=timezone.now())
    before = ConsentEvent.objects.count()

    response = public.post(path, {"csrfmiddlewaretoken": csrf})

    assert response.status_code == 409
    assert ConsentEvent.objects.count() == before


# -- one-click unsubscribe (RFC 8058) ------------------------------------------------------------


def test_the_one_click_post_unsubscribes_without_cookie_csrf_or_login(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str]
) -> None:
    contact = pending.contact
    record(
        contact,
        "email_marketing",
        "opted_in",
        evidence={"double_opt_in_confirmed_at": "2026-03-02T10:00:00Z"},
    )
    path = unsubscribe_path(contact, purpose="email_marketing", campaign="CK-2026-11")

    response = public.post(
        path, ONE_CLICK, content_type=FORM, REMOTE_ADDR="192.0.2.44", HTTP_USER_AGENT="Gmail"
    )

    assert response.status_code == 200
    assert not response.cookies
    assert "Set-Cookie" not in response.headers
    event = events_of(contact)[-1]
    assert (event.status, event.source) == ("opted_out", "email_link")
    assert (event.shown_ip_address, event.shown_user_agent) == ("192.0.2.44", "Gmail")
    assert event.evidence["campaign_id"] == "CK-2026-11"
    assert event.evidence["link"] == "one_click"
    # and the withdrawal goes first in the sync's queue
    outbox = OutboxEntry.objects.get(event=event)
    assert outbox.priority == OutboxEntry.Priority.WITHDRAWAL


def test_a_repeated_one_click_records_nothing_new_and_still_answers_2xx(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str]
) -> None:
    path = unsubscribe_path(pending.contact, purpose="email_marketing")
    public.post(path, ONE_CLICK, content_type=FORM)
    count = ConsentEvent.objects.count()

    for _ in range(3):
        response = public.post(path, ONE_CLICK, content_type=FORM)

    assert response.status_code == 200
    assert ConsentEvent.objects.count() == count


def test_an_all_link_unsubscribes_every_email_purpose_and_nothing_else(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str]
) -> None:
    contact = pending.contact
    record(contact, "sms_marketing", "opted_in")

    public.post(unsubscribe_path(contact), ONE_CLICK, content_type=FORM)

    assert state_of(contact, "email_marketing").status == "opted_out"  # type: ignore[union-attr]
    assert state_of(contact, "sms_marketing").status == "opted_in"  # type: ignore[union-attr]


def test_a_post_without_the_one_click_body_is_the_pages_form_and_needs_csrf(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str]
) -> None:
    path = unsubscribe_path(pending.contact, purpose="email_marketing")
    before = ConsentEvent.objects.count()

    for body in ("", "List-Unsubscribe=One-Click&x=1", "list-unsubscribe=one-click"):
        assert public.post(path, body, content_type=FORM).status_code == 403
    assert ConsentEvent.objects.count() == before

    csrf = csrf_token_of(public, path)
    response = public.post(path, {"csrfmiddlewaretoken": csrf})

    assert response.status_code == 200
    assert "You are unsubscribed" in response.content.decode()
    event = events_of(pending.contact)[-1]
    assert (event.status, event.evidence["link"]) == ("opted_out", "unsubscribe_page")


def test_the_unsubscribe_get_shows_a_confirm_button_and_the_preference_centre_and_records_nothing(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str]
) -> None:
    before = ConsentEvent.objects.count()

    response = public.get(unsubscribe_path(pending.contact))

    assert response.status_code == 200
    page = response.content.decode()
    assert 'type="submit"' in page and "/p/" in page
    assert ConsentEvent.objects.count() == before


def test_a_bad_one_click_link_answers_400_or_404_and_records_nothing(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str]
) -> None:
    path = unsubscribe_path(pending.contact, purpose="email_marketing")
    before = ConsentEvent.objects.count()

    tampered = public.post(path[:-3] + "xyz", ONE_CLICK, content_type=FORM)
    with time_machine.travel(timezone.now() + timedelta(days=401), tick=False):
        expired = public.post(path, ONE_CLICK, content_type=FORM)
    tokens.links_revoke(contact=pending.contact)
    revoked = public.post(path, ONE_CLICK, content_type=FORM)

    assert (tampered.status_code, revoked.status_code, expired.status_code) == (400, 404, 404)
    assert ConsentEvent.objects.count() == before


def test_the_public_pages_are_rate_limited_per_ip(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str], settings: Any
) -> None:
    settings.LINK_RATE_LIMIT_PER_MIN = 3
    path = unsubscribe_path(pending.contact)

    answers = [public.get(path, REMOTE_ADDR="203.0.113.9").status_code for _ in range(4)]
    other = public.get(path, REMOTE_ADDR="203.0.113.10")

    assert answers == [200, 200, 200, 429]
    assert other.status_code == 200


# -- preference centre ---------------------------------------------------------------------------


def test_the_preference_centre_get_records_nothing(
    public: Client, pending: ConsentEvent, preferences_path: Callable[..., str]
) -> None:
    before = ConsentEvent.objects.count()

    response = public.get(preferences_path(pending.contact))

    assert response.status_code == 200
    page = response.content.decode()
    for name in ("Email marketing", "SMS marketing", "Profiling", "2026-03"):
        assert name in page
    assert ConsentEvent.objects.count() == before


def test_a_frequency_change_is_an_event_from_the_preference_centre(
    public: Client, pending: ConsentEvent, preferences_path: Callable[..., str]
) -> None:
    contact = pending.contact
    record(contact, "sms_marketing", "opted_in", frequency="weekly")
    path = preferences_path(contact)
    csrf = csrf_token_of(public, path)

    response = public.post(
        path,
        {
            "csrfmiddlewaretoken": csrf,
            "policy_version": "2026-03",
            "status_sms_marketing": "opted_in",
            "frequency_sms_marketing": "monthly",
        },
        REMOTE_ADDR="198.51.100.5",
    )

    assert response.status_code == 200
    event = events_of(contact)[-1]
    assert (event.source, event.status, event.frequency) == ("preference_centre", "opted_in", "monthly")
    assert event.shown_ip_address == "198.51.100.5" and event.policy_version.label == "2026-03"  # type: ignore[union-attr]


def test_an_unknown_purpose_or_frequency_gets_a_form_error_and_records_nothing(
    public: Client, pending: ConsentEvent, preferences_path: Callable[..., str]
) -> None:
    path = preferences_path(pending.contact)
    csrf = csrf_token_of(public, path)
    before = ConsentEvent.objects.count()

    unknown_purpose = public.post(
        path,
        {
            "csrfmiddlewaretoken": csrf,
            "policy_version": "2026-03",
            "status_sms_marketing": "opted_in",
            "status_carrier_pigeons": "opted_in",
        },
    )
    unknown_frequency = public.post(
        path,
        {
            "csrfmiddlewaretoken": csrf,
            "policy_version": "2026-03",
            "status_sms_marketing": "opted_in",
            "frequency_sms_marketing": "hourly",
        },
    )

    assert unknown_purpose.status_code == 400
    assert "Unknown purpose carrier_pigeons" in unknown_purpose.content.decode()
    assert unknown_frequency.status_code == 400
    assert "hourly is not one of the available choices" in unknown_frequency.content.decode()
    assert ConsentEvent.objects.count() == before


def test_an_opt_in_with_double_opt_in_from_a_link_not_mailed_by_us_waits_for_a_confirmation_mail(
    public: Client, policy: Any, preferences_path: Callable[..., str], django_capture_on_commit_callbacks: Any
) -> None:
    contact = record(None, "sms_marketing", "opted_in").contact
    path = preferences_path(contact)  # as the links API gives it, for a Campaigns mail
    csrf = csrf_token_of(public, path)

    response = public.post(
        path, {"csrfmiddlewaretoken": csrf, "policy_version": "2026-03", "status_email_marketing": "opted_in"}
    )

    assert response.status_code == 200
    assert "We sent you an email to confirm" in response.content.decode()
    event = events_of(contact)[-1]
    assert (event.status, event.source) == ("pending", "preference_centre")
    assert LifecycleMessage.objects.filter(event=event, kind="confirmation").exists()


def test_an_opt_in_with_double_opt_in_from_a_link_we_mailed_to_that_address_is_confirmed(
    public: Client, confirmation: LifecycleMessage, preferences_path: Callable[..., str]
) -> None:
    contact = confirmation.contact
    record(contact, "email_marketing", "opted_out", occurred_at=timezone.now())
    path = preferences_path(contact, message_id=confirmation.pk)
    csrf = csrf_token_of(public, path)

    public.post(
        path,
        {
            "csrfmiddlewaretoken": csrf,
            "policy_version": "2026-03",
            "status_email_marketing": "opted_in",
            "frequency_email_marketing": "weekly",
        },
    )

    event = events_of(contact)[-1]
    assert (event.status, event.source, event.frequency) == ("opted_in", "preference_centre", "weekly")
    assert event.evidence["confirmed_through"] == "preference_link_mailed_to_address"
    assert event.evidence["message_id"] == confirmation.message_id


def test_the_pages_speak_german_to_a_german_browser(
    public: Client,
    pending: ConsentEvent,
    preferences_path: Callable[..., str],
    unsubscribe_path: Callable[..., str],
) -> None:
    german = {"HTTP_ACCEPT_LANGUAGE": "de-DE,de;q=0.9,en;q=0.5"}

    preferences = public.get(preferences_path(pending.contact), **german)
    unsubscribe = public.get(unsubscribe_path(pending.contact), **german)
    english = public.get(preferences_path(pending.contact), HTTP_ACCEPT_LANGUAGE="en-GB")

    assert preferences["Content-Language"] == "de"
    assert '<html lang="de">' in preferences.content.decode()
    assert "Ihre Einstellungen" in preferences.content.decode()
    assert "Abmelden" in unsubscribe.content.decode()
    assert "Your choices" in english.content.decode()
