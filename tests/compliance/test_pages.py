"""The pages: login and logout, the home page, contact search and a contact's history."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from compliance import services
from compliance.models import AccessLog, Contact, Suppression
from tests.conftest import CAST_PASSWORD

pytestmark = pytest.mark.django_db

MONDAY = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def rosa(decide, officer) -> Contact:
    """Rosa's history, recorded a day apart: sms opt-in, profiling opt-in, sms opt-out by phone."""
    identity = services.ContactIdentity(
        email="Rosa.Lindqvist@Example.com", phone="+49 151 1234 5678", app_user_id="u-77",
        first_name="Rosa", last_name="Lindqvist",
    )  # fmt: skip
    steps = [
        {"purpose": "sms_marketing", "frequency": "weekly", "ip_address": "2001:db8::7"},
        {"purpose": "profiling"},
        {
            "purpose": "sms_marketing", "status": "opted_out", "source": "customer_service",
            "policy_version": None, "ip_address": None,
        },
    ]  # fmt: skip
    for day, overrides in enumerate(steps):
        with time_machine.travel(MONDAY + timedelta(days=day), tick=False):
            actor = officer if overrides.get("source") == "customer_service" else None
            services.consent_ingest(
                identity=identity,
                decision=decide(occurred_at=MONDAY + timedelta(days=day, minutes=-5), **overrides),
                actor_user=actor,
            )
    return Contact.objects.get(app_user_id="u-77")


def test_the_login_form_signs_a_person_in_and_lands_on_home(client: Client, officer) -> None:
    form = client.get(reverse("compliance:login"))

    response = client.post(
        reverse("compliance:login"), {"username": officer.username, "password": CAST_PASSWORD}, follow=True
    )

    assert b'name="password"' in form.content
    assert response.redirect_chain[-1][0] == reverse("workbench:overview")
    assert b"olivia-officer" in response.content


def test_a_wrong_password_is_refused_with_a_message(client: Client, officer) -> None:
    response = client.post(reverse("compliance:login"), {"username": officer.username, "password": "nope"})

    assert response.status_code == 200
    assert b"did not match" in response.content
    assert "_auth_user_id" not in client.session


def test_logging_out_takes_a_post_and_ends_the_session(client_for, officer) -> None:
    client = client_for(officer)

    refused = client.get(reverse("compliance:logout"))
    response = client.post(reverse("compliance:logout"))

    assert refused.status_code == 405
    assert response.status_code == 302 and response["Location"] == reverse("compliance:login")
    assert client.get(reverse("workbench:overview")).status_code == 302


def test_every_page_offers_a_logout_button_that_posts(client_for, auditor) -> None:
    response = client_for(auditor).get(reverse("workbench:overview"))

    assert re.search(rb'<form method="post" action="/logout/">\s*<input type="hidden" name="csrfmiddlewaretoken"',
                     response.content)  # fmt: skip


@pytest.mark.parametrize(
    ("role", "roles_in_words"),
    [("officer", b"Compliance officer"), ("auditor", b"Auditor"), ("admin_user", b"Admin")],
)
def test_home_names_the_person_and_their_roles_in_words(request, client_for, role, roles_in_words) -> None:
    user = request.getfixturevalue(role)

    response = client_for(user).get(reverse("workbench:overview"))

    assert user.username.encode() in response.content
    assert b'<strong class="roles">' + roles_in_words + b"</strong>" in response.content


def test_home_lists_where_each_role_can_go(client_for, officer, admin_user) -> None:
    officer_page = client_for(officer).get(reverse("workbench:overview")).content
    admin_page = client_for(admin_user).get(reverse("workbench:overview")).content

    assert b">Contacts</a>" in officer_page
    assert b">API docs</a>" in officer_page
    assert b">Django admin</a>" not in officer_page
    assert b">Django admin</a>" in admin_page
    assert b">Zoho doctor</a>" in admin_page and b">Zoho doctor</a>" not in officer_page
    assert b">Sent mail (demo)</a>" not in admin_page  # demo mode only


@pytest.mark.parametrize(
    "query", ["rosa.lindqvist@example.com", "ROSA.LINDQVIST@EXAMPLE.COM", "rosa.lind", "+4915112345678",
              "+49 151 12345678", "u-77", "Lindqvist", "rosa lindqvist"],
)  # fmt: skip
def test_contact_search_finds_a_contact_by_any_identifier_or_name(client_for, auditor, rosa, query) -> None:
    response = client_for(auditor).get(reverse("compliance:contact_search"), {"q": query})

    assert response.context["table"].paginator.count == 1
    assert rosa.get_absolute_url().encode() in response.content


def test_contact_search_does_not_find_other_people(client_for, auditor, rosa, decide) -> None:
    services.consent_ingest(
        identity=services.ContactIdentity(email="bo@example.com", first_name="Bo", last_name="Berg"),
        decision=decide(),
    )

    response = client_for(auditor).get(reverse("compliance:contact_search"), {"q": "Berg"})

    assert response.context["table"].paginator.count == 1
    assert b"bo@example.com" in response.content
    assert b"rosa.lindqvist@example.com" not in response.content


@pytest.mark.parametrize(
    ("query", "found"),
    [("ROSA.LIND", ["rosa.lindqvist@example.com", "rosa.lindz@example.com"]),
     ("rosa.lindq", ["rosa.lindqvist@example.com"]),
     ("rosa.lindr", []),  # between the two: the end of the prefix's range is exclusive
     ("rosa.lindz", ["rosa.lindz@example.com"]),
     ("rosa.lindqvist@", ["rosa.lindqvist@example.com"]),
     ("Lind", ["lind@example.com", "rosa.lindqvist@example.com"]),  # an email beginning, and a name
     ("lind@", ["lind@example.com"])],  # an "@" makes it an identifier: not Rosa by her name
)  # fmt: skip
def test_contact_search_by_the_beginning_of_an_email(client_for, auditor, rosa, decide, query, found) -> None:
    for email, last_name in [("rosa.lindz@example.com", "Zed"), ("lind@example.com", "Other")]:
        services.consent_ingest(
            identity=services.ContactIdentity(email=email, first_name="Al", last_name=last_name),
            decision=decide(),
        )

    response = client_for(auditor).get(reverse("compliance:contact_search"), {"q": query})

    assert sorted(contact.email for contact in response.context["table"].data) == found


def test_a_one_character_search_asks_for_more_and_logs_nothing(client_for, auditor, rosa) -> None:
    response = client_for(auditor).get(reverse("compliance:contact_search"), {"q": "r"})

    assert response.context["table"] is None
    assert "Type at least 2 characters" in response.content.decode()
    assert "0 contacts match" not in response.content.decode()
    assert not AccessLog.objects.filter(kind=AccessLog.Kind.SEARCH).exists()


def test_contact_search_without_a_query_lists_nobody(client_for, auditor, rosa) -> None:
    response = client_for(auditor).get(reverse("compliance:contact_search"))

    assert response.context["table"] is None
    assert rosa.get_absolute_url().encode() not in response.content


def test_contact_detail_shows_identifiers_current_state_and_history_newest_first(client_for, officer, rosa):
    response = client_for(officer).get(rosa.get_absolute_url())
    html = response.content.decode()
    events = response.context["events"]
    rows = [
        (row.get_cell_value("purpose"), row.get_cell_value("version"), row.record.status)
        for row in events.page.object_list
    ]

    assert "+4915112345678" in html and "u-77" in html and "rosa.lindqvist@example.com" in html
    assert rows == [
        ("sms_marketing", 2, "opted_out"),
        ("profiling", 1, "opted_in"),
        ("sms_marketing", 1, "opted_in"),
    ]
    newest = rosa.events.get(purpose__code="sms_marketing", version=2)
    assert newest.hash[:12] in html
    assert "user:olivia-officer" in html
    assert "Customer service (phone)" in html
    assert "2001:db8::7" in html
    assert "2026-06-03 08:55" in html  # occurred_at of the opt-out
    assert "2026-06-03 09:00" in html  # recorded_at
    states = {row.record.purpose.code: row.record.status for row in response.context["states"].rows}
    assert states == {"sms_marketing": "opted_out", "profiling": "opted_in"}


def test_contact_detail_shows_suppressions_apart_from_consent(client_for, officer, rosa) -> None:
    services.suppression_add(
        contact=rosa, kind=Suppression.Kind.HARD_BOUNCE, source="campaigns", detail="550 5.1.1"
    )

    response = client_for(officer).get(rosa.get_absolute_url())

    assert [row.record.kind for row in response.context["suppressions"].rows] == ["hard_bounce"]
    assert b"550 5.1.1" in response.content


def test_contact_history_is_paginated(client_for, officer, decide) -> None:
    identity = services.ContactIdentity(email="busy@example.com")
    for n in range(30):
        status = "opted_in" if n % 2 == 0 else "opted_out"
        services.consent_ingest(
            identity=identity,
            decision=decide(status=status, policy_version="2026-03" if status == "opted_in" else None,
                            occurred_at=MONDAY + timedelta(minutes=n)),
        )  # fmt: skip
    contact = Contact.objects.get(email="busy@example.com")
    client = client_for(officer)

    first = client.get(contact.get_absolute_url())
    second = client.get(contact.get_absolute_url(), {"events-page": 2})

    assert [row.record.version for row in first.context["events"].page.object_list][:2] == [30, 29]
    assert [row.record.version for row in second.context["events"].page.object_list] == [5, 4, 3, 2, 1]
    assert b"events-page=2" in first.content


def test_an_unknown_contact_is_not_found(client_for, officer) -> None:
    assert client_for(officer).get(reverse("compliance:contact_detail", args=[999999])).status_code == 404


def test_pages_link_the_stylesheet_that_staticfiles_serves(client_for, officer) -> None:
    response = client_for(officer).get(reverse("workbench:overview"))

    assert b'href="/static/css/consent-desk.css"' in response.content
    assert finders.find("css/consent-desk.css") is not None
