"""Every page refuses the wrong people: anonymous, people without the role, and non-admins at /admin/."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from compliance import services
from compliance.models import ConsentEvent, PolicyVersion

pytestmark = pytest.mark.django_db

CONTACT_PAGES = ["compliance:contact_search", "compliance:contact_detail"]


@pytest.fixture
def contact_id(decide) -> int:
    result = services.consent_ingest(
        identity=services.ContactIdentity(email="rosa@example.com"), decision=decide()
    )
    return result.event.contact_id


def page_url(name: str, contact_id: int) -> str:
    return reverse(name, args=[contact_id]) if name.endswith("detail") else reverse(name) + "?q=rosa"


@pytest.mark.parametrize("name", ["workbench:overview", *CONTACT_PAGES])
def test_anonymous_visitors_are_sent_to_the_login_page(client, contact_id, name) -> None:
    url = page_url(name, contact_id)

    response = client.get(url)

    location = urlsplit(response["Location"])
    assert response.status_code == 302
    assert location.path == reverse("compliance:login")
    assert parse_qs(location.query)["next"] == [url]


@pytest.mark.parametrize("name", CONTACT_PAGES)
def test_a_signed_up_user_without_a_role_is_refused_the_contact_pages(client_for, outsider, contact_id, name):
    response = client_for(outsider).get(page_url(name, contact_id))

    assert response.status_code == 403


@pytest.mark.parametrize("name", CONTACT_PAGES)
@pytest.mark.parametrize("role", ["officer", "auditor", "admin_user"])
def test_every_role_may_read_the_contact_pages(request, client_for, contact_id, name, role):
    response = client_for(request.getfixturevalue(role)).get(page_url(name, contact_id))

    assert response.status_code == 200
    assert b"rosa@example.com" in response.content


def test_a_user_without_a_role_sees_a_home_page_that_offers_no_history(client_for, outsider) -> None:
    response = client_for(outsider).get(reverse("workbench:overview"))

    assert response.status_code == 200
    assert b"You hold no role yet" in response.content
    assert reverse("compliance:contact_search").encode() not in response.content


def test_the_admin_site_sends_anonymous_visitors_to_its_login(client) -> None:
    response = client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize("role", ["officer", "auditor", "outsider"])
def test_the_admin_site_refuses_everyone_but_admins_even_when_they_are_staff(request, client_for, role):
    user = request.getfixturevalue(role)
    user.is_staff = True
    user.save()
    client = client_for(user)

    index = client.get("/admin/")
    events = client.get("/admin/compliance/consentevent/")

    assert index.status_code == 302 and index["Location"].startswith("/admin/login/")
    assert events.status_code == 302 and events["Location"].startswith("/admin/login/")


def test_an_admin_who_is_not_staff_is_refused_the_admin_site(client_for, admin_user) -> None:
    admin_user.is_staff = False
    admin_user.save()

    response = client_for(admin_user).get("/admin/")

    assert response.status_code == 302


def test_an_admin_sees_every_ledger_table_in_the_admin(client_for, admin_user) -> None:
    response = client_for(admin_user).get("/admin/")

    assert response.status_code == 200
    for model in ("contact", "purpose", "policyversion", "consentevent", "consentstate", "suppression", "seal",
                  "outboxentry", "apiclient"):  # fmt: skip
        assert f"/admin/compliance/{model}/".encode() in response.content, model


def test_a_superuser_without_the_admin_role_may_use_the_admin(client_for) -> None:
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-1")

    assert client_for(root).get("/admin/compliance/consentevent/").status_code == 200


def test_an_admin_may_read_but_never_add_change_or_delete_an_event(client_for, admin_user, decide) -> None:
    event = services.consent_ingest(
        identity=services.ContactIdentity(email="rosa@example.com"), decision=decide()
    ).event
    client = client_for(admin_user)
    change_url = f"/admin/compliance/consentevent/{event.pk}/change/"

    assert client.get("/admin/compliance/consentevent/").status_code == 200
    assert client.get(change_url).status_code == 200
    assert client.get("/admin/compliance/consentevent/add/").status_code == 403
    assert client.post(change_url, {"status": "opted_out"}).status_code == 403
    assert (
        client.post(f"/admin/compliance/consentevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    )
    assert ConsentEvent.objects.get(pk=event.pk).status == "opted_in"


def test_an_admin_may_not_touch_a_seal(client_for, admin_user, decide) -> None:
    services.consent_ingest(identity=services.ContactIdentity(email="rosa@example.com"), decision=decide())
    seal = services.ledger_seal()
    client = client_for(admin_user)

    assert client.get(f"/admin/compliance/seal/{seal.pk}/change/").status_code == 200
    assert client.get("/admin/compliance/seal/add/").status_code == 403
    assert client.post(f"/admin/compliance/seal/{seal.pk}/delete/", {"post": "yes"}).status_code == 403


def test_an_admin_publishes_a_policy_version_that_then_cannot_change(client_for, admin_user) -> None:
    client = client_for(admin_user)

    added = client.post(
        "/admin/compliance/policyversion/add/",
        {"label": "2027-01", "effective_at": "2027-01-01", "text": "New notice.", "url": ""},
    )
    policy = PolicyVersion.objects.get(label="2027-01")
    changed = client.post(
        f"/admin/compliance/policyversion/{policy.pk}/change/",
        {"label": "2027-01", "effective_at": "2027-01-01", "text": "Rewritten.", "url": ""},
    )

    assert added.status_code == 302
    assert policy.published_at is not None
    assert len(policy.sha256) == 64
    assert changed.status_code == 403
    assert PolicyVersion.objects.get(pk=policy.pk).text == "New notice."


def test_officers_see_no_admin_link_and_admins_do(client_for, officer, admin_user) -> None:
    officer_home = client_for(officer).get(reverse("workbench:overview"))
    admin_home = client_for(admin_user).get(reverse("workbench:overview"))

    assert b'href="/admin/"' not in officer_home.content
    assert b'href="/admin/"' in admin_home.content
