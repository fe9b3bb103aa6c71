"""Identifiers never change silently: conflicts answer 409, changes need identity:write and say
so, former emails still find the person, the contact page shows the identity history, and
merging is an admin's recorded action."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from compliance import services
from compliance.models import ConsentEvent, Contact, IdentityEvent
from compliance.services import ContactIdentity, IdentityConflict

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent-events"
BATCH_URL = "/api/v1/consent-events/batch"
CONTACTS_URL = "/api/v1/contacts"


def _api(*, scopes: list[str], name: str) -> APIClient:
    _, key = services.api_client_create(name=name, sources=["mobile_app", "web_portal"], scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def identity_writer(db) -> APIClient:
    """The app's account service: it may change identifiers and read contacts."""
    return _api(scopes=["identity:write", "contacts:read"], name="account-service")


@pytest.fixture
def reader(db) -> APIClient:
    return _api(scopes=["contacts:read"], name="portal-reader")


@pytest.fixture
def ana(api, event_body) -> Contact:
    """Ana as the app first sent her (event_body's identifiers)."""
    assert api.post(URL, event_body(), format="json").status_code == 201
    return Contact.objects.get()


def _new_email(event_body, **overrides: Any) -> dict[str, Any]:
    """The same app user id, another email (the attack in issue 13)."""
    body = event_body(**overrides)
    body["contact"] = {**body["contact"], "email": "ana.new@example.com"}
    return body


def test_another_email_for_the_same_app_user_id_is_refused_with_409_naming_it(api, ana, event_body):
    response = api.post(URL, _new_email(event_body), format="json")

    assert response.status_code == 409, response.json()
    body = response.json()
    assert list(body["errors"]) == ["contact.email"]
    assert body["detail"].startswith("contact.email: ")
    assert "update_identity" in body["detail"]
    ana.refresh_from_db()
    assert ana.email == "ana@example.com"
    assert ana.identity_events.count() == 1
    assert ConsentEvent.objects.count() == 1, "nothing of the refused request was recorded"


def test_another_name_is_a_conflict_too(api, ana, event_body):
    body = event_body()
    body["contact"] = {**body["contact"], "last_name": "Smith"}
    response = api.post(URL, body, format="json")
    assert response.status_code == 409
    assert list(response.json()["errors"]) == ["contact.last_name"]


def test_identifiers_of_two_contacts_are_a_409_naming_the_second(api, ana, event_body):
    other = event_body()
    other["contact"] = {"email": "bo@example.com"}
    assert api.post(URL, other, format="json").status_code == 201
    body = event_body()
    body["contact"] = {"app_user_id": "u-1842", "email": "bo@example.com"}

    response = api.post(URL, body, format="json")

    assert response.status_code == 409
    assert list(response.json()["errors"]) == ["contact.email"]


def test_update_identity_without_the_right_is_refused_with_403(api, ana, event_body):
    response = api.post(URL, _new_email(event_body, update_identity=True), format="json")

    assert response.status_code == 403
    assert "identity:write" in response.json()["detail"]
    assert Contact.objects.get().email == "ana@example.com"


def test_the_right_alone_changes_nothing_without_update_identity(identity_writer, ana, event_body):
    response = identity_writer.post(URL, _new_email(event_body), format="json")
    assert response.status_code == 409
    assert Contact.objects.get().email == "ana@example.com"


def test_with_the_right_and_update_identity_the_change_is_recorded(identity_writer, ana, event_body):
    body = _new_email(event_body, update_identity=True, reason="Email changed in the account settings")
    body["ip_address"] = "198.51.100.23"

    response = identity_writer.post(URL, body, format="json")

    assert response.status_code == 201, response.json()
    ana.refresh_from_db()
    assert ana.email == "ana.new@example.com"
    change = ana.identity_events.get(version=2)
    assert change.kind == IdentityEvent.Kind.UPDATED
    assert (change.shown_email, change.shown_app_user_id) == ("ana.new@example.com", "u-1842")
    assert (change.actor, change.source, change.shown_ip_address) == (
        "api:account-service",
        "mobile_app",
        "198.51.100.23",
    )
    assert change.reason == "Email changed in the account settings"
    assert change.request_key == body["idempotency_key"]
    assert change.prev_hash == ana.identity_events.get(version=1).hash


def test_a_former_email_still_finds_the_person_marked_as_former(identity_writer, reader, ana, event_body):
    identity_writer.post(URL, _new_email(event_body, update_identity=True), format="json")

    found = reader.get(CONTACTS_URL, {"email": "ANA@example.com"})
    current = reader.get(CONTACTS_URL, {"email": "ana.new@example.com"})

    assert found.status_code == 200
    assert [(c["id"], c["email"], c["former"]) for c in found.json()] == [
        (ana.pk, "ana.new@example.com", True)
    ]
    assert [(c["id"], c["former"]) for c in current.json()] == [(ana.pk, False)]


def test_a_batch_refuses_a_conflicting_item_alone(api, ana, event_body):
    good = event_body()
    good["contact"] = {"email": "bo@example.com"}
    response = api.post(BATCH_URL, {"events": [_new_email(event_body), good]}, format="json")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [409, 201]
    assert list(results[0]["errors"]) == ["contact.email"]
    assert Contact.objects.get(pk=ana.pk).email == "ana@example.com"


def test_a_batch_item_may_update_identity_with_the_right(identity_writer, api, ana, event_body):
    refused = api.post(BATCH_URL, {"events": [_new_email(event_body, update_identity=True)]}, format="json")
    changed = identity_writer.post(
        BATCH_URL, {"events": [_new_email(event_body, update_identity=True)]}, format="json"
    )

    assert [r["status"] for r in refused.json()["results"]] == [403]
    assert [r["status"] for r in changed.json()["results"]] == [201]
    assert Contact.objects.get(pk=ana.pk).email == "ana.new@example.com"
    assert [e.kind for e in ana.identity_events.order_by("version")] == ["created", "updated"]


def _identity_ledger() -> list[tuple[Any, ...]]:
    columns = [f.attname for f in IdentityEvent._meta.concrete_fields if f.attname != "id"]
    contacts = list(Contact.objects.order_by("id").values_list("id", "email", "phone", "identity_version"))
    apart = [f"personal__{name}" for name in ("email", "phone", "app_user_id", "first_name", "last_name")]
    return [
        *contacts,
        *IdentityEvent.objects.order_by("contact_id", "version").values_list(*columns, *apart),
    ]


class _Undo(Exception):
    pass


def test_a_batch_records_the_identity_events_the_one_by_one_path_records(decide, db, same_secrets):
    """New contacts, a new contact filled in later in the same chunk, an existing one filled in,
    an update with the right, a refused conflict: the same identity history either way."""
    from tests.compliance.test_ingest_batch import _restore, _sequences

    client, _ = services.api_client_create(name="acct", sources=["mobile_app"], scopes=["identity:write"])
    services.consent_ingest(identity=ContactIdentity(email="eve@example.com"), decision=decide())
    items = [
        (ContactIdentity(email="ana@example.com", app_user_id="u-ana"), decide()),
        (ContactIdentity(app_user_id="u-ana", phone="+4915112345678"), decide(purpose="profiling")),
        (ContactIdentity(email="eve@example.com", first_name="Eve"), decide()),
        (ContactIdentity(email="eve@example.com", last_name="Stone"), decide(purpose="profiling")),
        (ContactIdentity(app_user_id="u-ana", email="ana.new@example.com", update_identity=True), decide()),
        (ContactIdentity(email="eve@example.com", first_name="Evelyn"), decide()),
        (ContactIdentity(email="bo@example.com"), decide()),
    ]

    def written(write) -> tuple[list[Any], list[Any]]:
        positions = _sequences()
        try:
            with transaction.atomic():
                outcomes = [type(o).__name__ for o in write()]
                ledger = _identity_ledger()
                raise _Undo
        except _Undo:
            _restore(positions)
        return outcomes, ledger

    def one_by_one() -> list[Any]:
        outcomes: list[Any] = []
        for identity, decision in items:
            try:
                outcomes.append(
                    services.consent_ingest(identity=identity, decision=decision, api_client=client)
                )
            except services.ConsentRejected as exc:
                outcomes.append(exc)
        return outcomes

    with time_machine.travel(timezone.now(), tick=False):
        set_based = written(lambda: services.consent_ingest_batch(items=items, api_client=client))
        by_item = written(one_by_one)

    assert set_based == by_item
    assert set_based[0] == [*["RecordResult"] * 5, "IdentityConflict", "RecordResult"]
    kinds = [row[2] for row in set_based[1] if len(row) > 4]
    assert kinds.count("created") == 3 and kinds.count("filled_in") == 3 and kinds.count("updated") == 1


def test_the_conflict_error_is_a_ledger_rejection_nothing_written(decide):
    services.consent_ingest(
        identity=ContactIdentity(app_user_id="u-1", email="a@example.com"), decision=decide()
    )
    with pytest.raises(IdentityConflict) as caught:
        services.consent_ingest(
            identity=ContactIdentity(app_user_id="u-1", email="b@example.com"), decision=decide()
        )
    assert caught.value.field == "contact.email"
    assert IdentityEvent.objects.count() == 1 and ConsentEvent.objects.count() == 1


# --- Pages -----------------------------------------------------------------------------------


@pytest.fixture
def ana_changed(identity_writer, ana, event_body) -> Contact:
    body = _new_email(event_body, update_identity=True, reason="Changed in the app")
    assert identity_writer.post(URL, body, format="json").status_code == 201
    ana.refresh_from_db()
    return ana


def test_the_contact_page_shows_the_identity_history(client_for, officer, ana_changed):
    page = client_for(officer).get(ana_changed.get_absolute_url())

    assert page.status_code == 200
    html = page.content.decode()
    assert "Identity history" in html
    assert "Identifiers changed" in html and "First identifiers" in html
    assert "Changed in the app" in html
    assert 'ana@example.com <small class="former">(former)</small>' in html


def test_the_officers_search_finds_a_former_email_marked_as_former(client_for, officer, ana_changed):
    page = client_for(officer).get("/contacts/", {"q": "ana@example.com"})

    html = page.content.decode()
    assert ana_changed.get_absolute_url() in html
    assert "(former email ana@example.com)" in html


def test_people_without_history_rights_see_no_identity_history(client_for, outsider, ana_changed):
    assert client_for(outsider).get(ana_changed.get_absolute_url()).status_code == 403


# --- The admin's merge -----------------------------------------------------------------------

CHANGELIST = "/admin/compliance/contact/"


def _two_contacts(decide) -> tuple[Contact, Contact]:
    services.consent_ingest(identity=ContactIdentity(email="ana@example.com"), decision=decide())
    services.consent_ingest(
        identity=ContactIdentity(phone="+4915112345678", last_name="Ruiz"), decision=decide()
    )
    return Contact.objects.get(email="ana@example.com"), Contact.objects.get(phone="+4915112345678")


def test_an_admin_merges_two_contacts_with_a_reason(client_for, admin_user, decide):
    ana, duplicate = _two_contacts(decide)
    browser = client_for(admin_user)
    chosen = {"action": "merge_contacts", "_selected_action": [ana.pk, duplicate.pk]}

    form = browser.post(CHANGELIST, chosen)
    assert form.status_code == 200
    assert b"Merge two contacts" in form.content
    done = browser.post(
        CHANGELIST, {**chosen, "apply": "1", "primary": ana.pk, "reason": "Same person"}, follow=True
    )

    assert b"was merged into contact" in done.content
    ana.refresh_from_db()
    duplicate.refresh_from_db()
    assert (ana.phone, ana.last_name, duplicate.merged_into) == ("+4915112345678", "Ruiz", ana)
    assert ana.identity_events.get(version=2).actor == f"user:{admin_user.username}"
    assert duplicate.identity_events.get(version=2).reason == "Same person"


def test_a_merge_without_a_reason_merges_nothing(client_for, admin_user, decide):
    ana, duplicate = _two_contacts(decide)
    chosen = {"action": "merge_contacts", "_selected_action": [ana.pk, duplicate.pk]}
    client_for(admin_user).post(CHANGELIST, {**chosen, "apply": "1", "primary": ana.pk, "reason": ""})
    assert Contact.objects.filter(merged_into__isnull=False).count() == 0
    assert IdentityEvent.objects.count() == 2


def test_merging_needs_exactly_two_contacts(client_for, admin_user, decide):
    ana, _duplicate = _two_contacts(decide)
    page = client_for(admin_user).post(
        CHANGELIST, {"action": "merge_contacts", "_selected_action": [ana.pk]}, follow=True
    )
    assert b"Select exactly two contacts" in page.content


@pytest.mark.parametrize("who", ["officer", "auditor", "outsider"])
def test_only_admins_may_merge(client_for, request, who, decide):
    ana, duplicate = _two_contacts(decide)
    chosen = {"action": "merge_contacts", "_selected_action": [ana.pk, duplicate.pk]}
    response = client_for(request.getfixturevalue(who)).post(
        CHANGELIST, {**chosen, "apply": "1", "primary": ana.pk, "reason": "x"}
    )
    assert response.status_code in (302, 403)
    assert not Contact.objects.filter(merged_into__isnull=False).exists()
