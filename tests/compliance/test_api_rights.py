"""API rights: scopes, the read budget, revoking, rotating and expiring keys, their last use."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from compliance import services
from compliance.models import ApiClient, ConsentEvent, Contact

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent-events"
BATCH_URL = "/api/v1/consent-events/batch"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def key_of(output: str) -> str:
    return output.strip().splitlines()[-1]


@pytest.fixture
def contact_id(api: APIClient, event_body: Any) -> int:
    assert api.post(URL, event_body(), format="json").status_code == 201
    return int(Contact.objects.get().pk)


# --- The matrix: each API endpoint against each kind of caller --------------------------------

CALLERS = {
    "anonymous": None,
    "writer (events:write mobile_app)": {"sources": ["mobile_app"], "scopes": []},
    "reader (contacts:read)": {"sources": [], "scopes": ["contacts:read"]},
    "identity:write only": {"sources": [], "scopes": ["identity:write"]},
    "links:read only": {"sources": [], "scopes": ["links:read"]},
    "every right": {
        "sources": ["mobile_app"],
        "scopes": ["contacts:read", "identity:write", "links:read", "erasure:write"],
    },
    "revoked key": {"sources": ["mobile_app"], "scopes": ["contacts:read"], "revoked": True},
    "expired key": {"sources": ["mobile_app"], "scopes": ["contacts:read"], "expired": True},
}
READS = {
    "anonymous": 401,
    "writer (events:write mobile_app)": 403,
    "reader (contacts:read)": 200,
    "identity:write only": 403,
    "links:read only": 403,
    "every right": 200,
    "revoked key": 401,
    "expired key": 401,
}
# (method, path) -> caller -> status. `{contact}` is a contact that exists.
EXPECTED = {
    ("POST", URL): {
        "anonymous": 401,
        "writer (events:write mobile_app)": 201,
        "reader (contacts:read)": 403,
        "identity:write only": 403,
        "links:read only": 403,
        "every right": 201,
        "revoked key": 401,
        "expired key": 401,
    },
    ("POST", BATCH_URL): {
        "anonymous": 401,
        "writer (events:write mobile_app)": 200,
        "reader (contacts:read)": 200,  # the batch answers; its item is refused with 403 (below)
        "identity:write only": 200,
        "links:read only": 200,
        "every right": 200,
        "revoked key": 401,
        "expired key": 401,
    },
    ("GET", "/api/v1/contacts?email=ana@example.com"): READS,
    ("GET", "/api/v1/contacts/{contact}/consents"): READS,
    # The sending system's links (compliance/lifecycle): links:read, not contacts:read.
    ("GET", "/api/v1/contacts/{contact}/links"): {
        **READS,
        "reader (contacts:read)": 403,
        "links:read only": 200,
        "revoked key": 401,
    },
    # Erasure (issue 14): erasure:write only; last, as it erases the contact.
    ("POST", "/api/v1/contacts/{contact}/erasure"): {
        **READS,
        "reader (contacts:read)": 403,
        "every right": 201,
    },
}


def test_every_api_endpoint_is_in_the_matrix():
    from django.urls import get_resolver

    api_routes = {str(p.pattern) for p in get_resolver("compliance.api.urls").url_patterns}
    assert api_routes == {
        "consent-events",
        "consent-events/batch",
        "contacts",
        "contacts/<int:contact_id>/consents",
        "contacts/<int:contact_id>/links",
        "contacts/<int:contact_id>/erasure",
        r"^[\s\S]*$",  # the API's 404, tested in test_api_errors.py
    }


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_each_caller_gets_the_answer_its_rights_allow(caller, contact_id, event_body):
    rights = CALLERS[caller]
    client = APIClient()
    if rights is not None:
        made, key = services.api_client_create(
            name=f"matrix-{len(caller)}", sources=rights["sources"], scopes=rights["scopes"]
        )
        if rights.get("revoked"):
            services.api_client_revoke(client=made)
        if rights.get("expired"):
            services.api_client_expire(client=made, at=START)
        client = bearer(key)

    answers = {}
    for method, path in EXPECTED:
        if method == "POST" and path.endswith("/erasure"):
            response = client.post(path.format(contact=contact_id), {}, format="json")
        elif method == "POST":
            body = event_body() if path == URL else {"events": [event_body()]}
            response = client.post(path, body, format="json")
        else:
            response = client.get(path.format(contact=contact_id))
        answers[method, path] = response.status_code
        if response.status_code >= 400:
            assert set(response.json()) >= {"detail", "errors"}, response.content
        if path == BATCH_URL and response.status_code == 200:
            item = response.json()["results"][0]
            assert item["status"] == (201 if rights and rights["sources"] else 403), item

    assert answers == {route: row[caller] for route, row in EXPECTED.items()}


@pytest.mark.parametrize("role", ["officer", "auditor", "admin_user", "outsider"])
def test_people_read_through_the_api_by_their_role_and_never_write(
    role, request, client_for, contact_id, event_body
):
    client = client_for(request.getfixturevalue(role))

    reads = client.get(f"/api/v1/contacts/{contact_id}/consents").status_code
    writes = client.post(URL, json.dumps(event_body()), content_type="application/json").status_code

    assert reads == (403 if role == "outsider" else 200)
    assert writes == 403


# --- Scopes at creation ----------------------------------------------------------------------


def test_create_api_client_grants_scopes_and_refuses_unknown_ones(capsys):
    call_command("create_api_client", "crm-reader", "--scope", "contacts:read", "--scope", "links:read")
    out = capsys.readouterr().out
    client = ApiClient.objects.get(name="crm-reader")
    assert client.sources == [] and client.scopes == ["contacts:read", "links:read"]
    assert "Scopes: contacts:read, links:read" in out
    assert bearer(key_of(out)).get("/api/v1/contacts?email=x@example.com").status_code == 200

    with pytest.raises(CommandError):
        call_command("create_api_client", "greedy", "--scope", "contacts:write")
    with pytest.raises(CommandError, match="at least one source"):
        call_command("create_api_client", "idle")
    assert not ApiClient.objects.filter(name__in=["greedy", "idle"]).exists()


def test_a_new_client_reads_nothing_unless_granted(capsys, contact_id):
    call_command("create_api_client", "shop", "--source", "web_portal")
    response = bearer(key_of(capsys.readouterr().out)).get(f"/api/v1/contacts/{contact_id}/consents")
    assert response.status_code == 403
    assert ApiClient.objects.get(name="shop").scopes == []


# --- The read budget -------------------------------------------------------------------------


@pytest.fixture
def reads_two_a_minute(throttle_rates: Any) -> None:
    throttle_rates(api_read="2/min")


def test_the_read_budget_is_600_a_minute_by_default(settings):
    assert settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api_read"] == "600/min"


def test_reads_have_their_own_budget_and_writes_go_on_when_it_is_spent(
    reads_two_a_minute, contact_id, event_body
):
    _, key = services.api_client_create(name="both", sources=["mobile_app"], scopes=["contacts:read"])
    client = bearer(key)
    with time_machine.travel(START, tick=False) as clock:
        reads = [client.get(f"/api/v1/contacts/{contact_id}/consents") for _ in range(3)]
        write = client.post(URL, event_body(), format="json")
        clock.shift(timedelta(seconds=61))
        again = client.get(f"/api/v1/contacts/{contact_id}/consents")

    assert [r.status_code for r in reads] == [200, 200, 429]
    assert reads[2].json()["errors"] == {} and "throttled" in reads[2].json()["detail"].lower()
    assert int(reads[2]["Retry-After"]) == 60
    assert write.status_code == 201
    assert again.status_code == 200


def test_each_client_has_a_read_budget_of_its_own(reads_two_a_minute, contact_id):
    first = bearer(services.api_client_create(name="a", sources=[], scopes=["contacts:read"])[1])
    second = bearer(services.api_client_create(name="b", sources=[], scopes=["contacts:read"])[1])
    with time_machine.travel(START, tick=False):
        spent = [first.get(f"/api/v1/contacts/{contact_id}/consents").status_code for _ in range(3)]
        other = second.get(f"/api/v1/contacts/{contact_id}/consents").status_code
    assert spent == [200, 200, 429] and other == 200


# --- Revoke, rotate, expire, last use --------------------------------------------------------


def test_api_client_revoke_refuses_the_key_at_once_even_where_the_client_is_kept(
    api, mobile_app, event_body, capsys
):
    assert api.post(URL, event_body(), format="json").status_code == 201  # the process now keeps it

    call_command("api_client", "revoke", "mobile-app")

    response = api.post(URL, event_body(), format="json")
    assert response.status_code == 401 and response.json()["errors"] == {}
    client = ApiClient.objects.get(name="mobile-app")
    assert not client.is_active and client.revoked_at is not None
    assert "revoked" in capsys.readouterr().out
    assert ConsentEvent.objects.count() == 1


def test_api_client_rotate_keeps_the_old_key_valid_through_the_grace_period(
    api, mobile_app, event_body, capsys
):
    with time_machine.travel(START, tick=False) as clock:
        call_command("api_client", "rotate", "mobile-app", "--grace-hours", "2")
        new = bearer(key_of(capsys.readouterr().out))

        assert api.post(URL, event_body(), format="json").status_code == 201
        assert new.post(URL, event_body(), format="json").status_code == 201
        clock.shift(timedelta(hours=2, seconds=1))
        late = api.post(URL, event_body(), format="json")
        assert new.post(URL, event_body(), format="json").status_code == 201

    assert late.status_code == 401 and "rotated" in late.json()["detail"]
    assert ConsentEvent.objects.count() == 3


def test_a_second_rotation_leaves_two_keys_at_most(mobile_app, event_body):
    client, first = mobile_app
    client, second = services.api_client_rotate(client=client, grace=timedelta(hours=1))
    client, third = services.api_client_rotate(client=client, grace=timedelta(hours=1))

    codes = [bearer(k).post(URL, event_body(), format="json").status_code for k in (first, second, third)]
    assert codes == [401, 201, 201]


def test_rotating_without_grace_refuses_the_old_key_at_once(api, mobile_app, event_body, capsys):
    call_command("api_client", "rotate", "mobile-app", "--grace-hours", "0")
    new = bearer(key_of(capsys.readouterr().out))
    assert api.post(URL, event_body(), format="json").status_code == 401
    assert new.post(URL, event_body(), format="json").status_code == 201


def test_an_expired_key_is_refused_from_its_expiry_on(api, mobile_app, event_body):
    with time_machine.travel(START, tick=False) as clock:
        call_command("api_client", "expire", "mobile-app", "--at", "2026-11-20T10:00:00Z")
        assert api.post(URL, event_body(), format="json").status_code == 201
        clock.shift(timedelta(hours=1))
        response = api.post(URL, event_body(), format="json")
    assert response.status_code == 401 and "expired" in response.json()["detail"]
    with pytest.raises(CommandError, match="time zone"):
        call_command("api_client", "expire", "mobile-app", "--at", "2026-11-20T10:00:00")


def test_a_revoked_client_cannot_be_rotated_back_to_life(mobile_app):
    services.api_client_revoke(client=mobile_app[0])
    with pytest.raises(CommandError, match="revoked"):
        call_command("api_client", "rotate", "mobile-app")
    with pytest.raises(CommandError, match="No API client"):
        call_command("api_client", "revoke", "nobody")


def test_the_last_use_of_each_key_is_recorded(api, mobile_app, event_body):
    client, _ = mobile_app
    with time_machine.travel(START, tick=False) as clock:
        api.post(URL, event_body(), format="json")
        client.refresh_from_db()
        assert client.last_used_at == START

        client, new_key = services.api_client_rotate(client=client, grace=timedelta(hours=1))
        clock.shift(timedelta(minutes=5))
        api.post(URL, event_body(), format="json")  # the old key, in its grace period
        clock.shift(timedelta(minutes=5))
        bearer(new_key).post(URL, event_body(), format="json")

    client.refresh_from_db()
    assert client.previous_key_last_used_at == START + timedelta(minutes=5)
    assert client.last_used_at == START + timedelta(minutes=10)


def test_api_client_list_shows_rights_keys_and_last_use(mobile_app, api, event_body, capsys):
    with time_machine.travel(START, tick=False):
        api.post(URL, event_body(), format="json")
        services.api_client_rotate(client=ApiClient.objects.get(), grace=timedelta(hours=24))
        services.api_client_create(name="gone", sources=["web_portal"])
        services.api_client_revoke(client=ApiClient.objects.get(name="gone"))
        call_command("api_client", "list")
    out = capsys.readouterr().out
    client = ApiClient.objects.get(name="mobile-app")

    assert "mobile-app: active; writes mobile_app, web_portal; scopes none" in out
    assert f"previous key cd_{client.previous_key_prefix}_…  valid until 2026-11-21T09:00:00+00:00" in out
    assert "last used 2026-11-20T09:00:00+00:00" in out
    assert "gone: revoked 2026-11-20T09:00:00+00:00" in out
    assert client.key_hash not in out


# --- The admin page --------------------------------------------------------------------------


def test_an_admin_changes_rights_and_expiry_on_the_change_page(
    admin_user, client_for, mobile_app, contact_id
):
    made, key = mobile_app
    client = client_for(admin_user)
    page = client.get(f"/admin/compliance/apiclient/{made.pk}/change/")
    assert page.status_code == 200
    assert b'name="scopes"' in page.content and b'name="expires_at_0"' in page.content

    response = client.post(
        f"/admin/compliance/apiclient/{made.pk}/change/",
        {"sources": ["mobile_app"], "scopes": ["contacts:read"], "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 302, response.content
    made.refresh_from_db()
    assert made.sources == ["mobile_app"] and made.scopes == ["contacts:read"]
    assert bearer(key).get(f"/api/v1/contacts/{contact_id}/consents").status_code == 200


def test_an_admin_revokes_a_key_from_the_admin_page(admin_user, client_for, api, mobile_app, event_body):
    assert api.post(URL, event_body(), format="json").status_code == 201
    client = client_for(admin_user)

    response = client.post(
        "/admin/compliance/apiclient/",
        {"action": "revoke", "_selected_action": [mobile_app[0].pk]},
    )

    assert response.status_code == 302
    assert api.post(URL, event_body(), format="json").status_code == 401


def test_an_admin_rotates_a_key_and_sees_the_new_one_once(
    admin_user, client_for, api, mobile_app, event_body
):
    client = client_for(admin_user)

    page = client.post(
        "/admin/compliance/apiclient/",
        {"action": "rotate", "_selected_action": [mobile_app[0].pk]},
    )

    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    new_key = re.search(r"cd_[0-9a-f]{8}_[\w-]+", page.content.decode()).group(0)
    rotated = ApiClient.objects.get()
    assert services.api_key_hash(new_key) == rotated.key_hash
    assert bearer(new_key).post(URL, event_body(), format="json").status_code == 201
    assert api.post(URL, event_body(), format="json").status_code == 201  # the old key, in its grace period
    assert client.get("/admin/compliance/apiclient/").content.count(new_key.encode()) == 0


def test_an_admin_expires_keys_from_the_admin_page(admin_user, client_for, api, mobile_app, event_body):
    client = client_for(admin_user)
    client.post(
        "/admin/compliance/apiclient/", {"action": "expire_now", "_selected_action": [mobile_app[0].pk]}
    )
    assert api.post(URL, event_body(), format="json").status_code == 401


@pytest.mark.parametrize("role", ["officer", "auditor", "outsider"])
def test_only_admins_reach_the_api_client_page(role, request, client_for, mobile_app, api, event_body):
    client = client_for(request.getfixturevalue(role))
    made = mobile_app[0]
    assert client.get(f"/admin/compliance/apiclient/{made.pk}/change/").status_code == 302  # to the login
    client.post("/admin/compliance/apiclient/", {"action": "revoke", "_selected_action": [made.pk]})
    assert api.post(URL, event_body(), format="json").status_code == 201
    assert ApiClient.objects.get().is_active


@pytest.mark.parametrize("page", ["/", "/contacts/", "/admin/", "/admin/compliance/apiclient/", "/api/docs/"])
def test_an_api_key_with_every_right_opens_no_page_for_people(page):
    _, key = services.api_client_create(
        name="all-rights", sources=["mobile_app"], scopes=list(ApiClient.Scope.values)
    )
    response = bearer(key).get(page)
    assert response.status_code == 302 and "login" in response["Location"]


# --- The desk's pages (issue 16, items 4, 6, 7): each URL against each role ---------------------
# (method, URL) -> role -> status. `{contact}` and `{policy}` exist; a GET of a form, or a POST
# that refusing must not get past (invalid input answers 400 to those who may post).

DESK_PAGES = {
    ("GET", "/contacts/{contact}/history/"): {
        "officer": 200,
        "auditor": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    ("GET", "/contacts/{contact}/history/?_export=csv"): {
        "officer": 200,
        "auditor": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    ("GET", "/contacts/?q=ana&_export=xlsx"): {
        "officer": 200,
        "auditor": 200,
        "admin_user": 200,
        "outsider": 403,
    },
    ("GET", "/access-log/?_export=csv"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    ("GET", "/contacts/{contact}/phone-request/"): {
        "officer": 200,
        "auditor": 403,
        "admin_user": 200,
        "outsider": 403,
    },
    ("POST", "/contacts/{contact}/phone-request/"): {
        "officer": 400,
        "auditor": 403,
        "admin_user": 400,
        "outsider": 403,
    },
    ("GET", "/contacts/{contact}/correction/"): {
        "officer": 403,
        "auditor": 403,
        "admin_user": 200,
        "outsider": 403,
    },
    ("POST", "/contacts/{contact}/correction/"): {
        "officer": 403,
        "auditor": 403,
        "admin_user": 400,
        "outsider": 403,
    },
    ("GET", "/policies/"): {"officer": 200, "auditor": 200, "admin_user": 200, "outsider": 403},
    ("GET", "/policies/?_export=csv"): {"officer": 200, "auditor": 200, "admin_user": 200, "outsider": 403},
    ("GET", "/policies/{policy}/"): {"officer": 200, "auditor": 200, "admin_user": 200, "outsider": 403},
    ("GET", "/policies/diff/"): {"officer": 200, "auditor": 200, "admin_user": 200, "outsider": 403},
    ("GET", "/policies/new/"): {"officer": 403, "auditor": 403, "admin_user": 200, "outsider": 403},
    ("POST", "/policies/new/"): {"officer": 403, "auditor": 403, "admin_user": 400, "outsider": 403},
    # Issue 16, items 1, 2, 8: the overview (per role, so everybody's), trends and its CSV, health windows.
    ("GET", "/"): {"officer": 200, "auditor": 200, "admin_user": 200, "outsider": 200},
    ("GET", "/trends/"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    ("GET", "/trends/?_export=csv&chart=changes"): {
        "officer": 200,
        "auditor": 403,
        "admin_user": 200,
        "outsider": 403,
    },
    ("GET", "/sync/health/?window=30d"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    # Issue 12: the Zoho setup diagnostics (a GET shows the last run; running them is a POST).
    ("GET", "/sync/doctor/"): {"officer": 403, "auditor": 403, "admin_user": 200, "outsider": 403},
}


@pytest.mark.parametrize("role", ["officer", "auditor", "admin_user", "outsider"])
def test_each_role_gets_the_desk_pages_its_rights_allow(role, request, client_for, contact_id, policy):
    client = client_for(request.getfixturevalue(role))
    answers = {}
    for method, url in DESK_PAGES:
        path = url.format(contact=contact_id, policy=policy.pk)
        response = client.post(path, {}) if method == "POST" else client.get(path)
        answers[method, url] = response.status_code
    assert answers == {route: row[role] for route, row in DESK_PAGES.items()}


@pytest.mark.parametrize(("method", "url"), sorted(DESK_PAGES))
def test_anonymous_visitors_are_sent_to_log_in_from_the_desk_pages(client, contact_id, policy, method, url):
    path = url.format(contact=contact_id, policy=policy.pk)
    response = client.post(path, {}) if method == "POST" else client.get(path)
    assert response.status_code == 302 and "/login/" in response["Location"]


# --- The sync desk's pages (issue 16, items 3, 5, 7): bulk actions, exports, webhooks -------------
# (method, URL) -> role -> status. `{bulk}` is a recorded bulk action; a POST that refusing must not
# get past (an empty confirmation answers 400 to admins, who may post).

GROUP_QUERY = "kind=permission_denied&field=SMS_Opt_In&cause=x"
SYNC_PAGES = {
    ("GET", "/sync/discrepancies/groups/"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    ("GET", f"/sync/discrepancies/group/?{GROUP_QUERY}"): {
        "officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403,
    },
    ("GET", f"/sync/discrepancies/group/confirm/?{GROUP_QUERY}&action=resolve&seen_count=1&seen_max_id=1"): {
        "officer": 403, "auditor": 403, "admin_user": 200, "outsider": 403,
    },
    ("POST", f"/sync/discrepancies/group/confirm/?{GROUP_QUERY}&action=resolve"): {
        "officer": 403, "auditor": 403, "admin_user": 400, "outsider": 403,
    },
    ("GET", "/sync/discrepancies/bulk/{bulk}/"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    ("GET", "/sync/discrepancies/?_export=csv"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    ("GET", "/sync/alerts/?_export=csv"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    # Issue 11, item 8: the opt-out clock and its CSV.
    ("GET", "/sync/opt-out-clock/"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    ("GET", "/sync/opt-out-clock/?_export=csv"): {"officer": 200, "auditor": 403, "admin_user": 200, "outsider": 403},
    # API clients' webhooks are set up by admins in Django admin; officers are sent to its login.
    ("GET", "/admin/sync/webhookendpoint/"): {"officer": 302, "auditor": 302, "admin_user": 200, "outsider": 302},
    ("GET", "/admin/sync/webhookdelivery/"): {"officer": 302, "auditor": 302, "admin_user": 200, "outsider": 302},
}  # fmt: skip


@pytest.fixture
def bulk_id(admin_user):
    from sync.models import BulkAction

    return BulkAction.objects.create(
        action="resolve", kind="permission_denied", crm_field="SMS_Opt_In", hint="x", seen_count=1,
        seen_max_id=1, note="n", requested_by=admin_user, requested_by_name=admin_user.username,
    ).pk  # fmt: skip


@pytest.mark.parametrize("role", ["officer", "auditor", "admin_user", "outsider"])
def test_each_role_gets_the_sync_desk_pages_its_rights_allow(role, request, client_for, bulk_id):
    client = client_for(request.getfixturevalue(role))
    answers = {}
    for method, url in SYNC_PAGES:
        path = url.format(bulk=bulk_id)
        response = client.post(path, {}) if method == "POST" else client.get(path)
        answers[method, url] = response.status_code
    assert answers == {route: row[role] for route, row in SYNC_PAGES.items()}


@pytest.mark.parametrize(("method", "url"), sorted(SYNC_PAGES))
def test_anonymous_visitors_are_sent_to_log_in_from_the_sync_desk_pages(client, bulk_id, method, url):
    path = url.format(bulk=bulk_id)
    response = client.post(path, {}) if method == "POST" else client.get(path)
    assert response.status_code == 302 and "/login/" in response["Location"]
