"""The Notifications API (`/crm/v8/actions/watch`): channels as strict as Zoho's, and callbacks sent
to the channel's URL with its token on every edit of a watched record."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import httpx
import pytest

from zohosim import LiveServer


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A plain HTTP server on loopback that keeps every JSON body posted to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def _watch(http: httpx.Client, auth: dict[str, str], **overrides: Any) -> httpx.Response:
    channel = {
        "channel_id": "1000000068001",
        "events": ["Contacts.edit"],
        "notify_url": "http://127.0.0.1:9/hook",
        "token": "TOKEN_1",
        **overrides,
    }
    return http.post("/crm/v8/actions/watch", json={"watch": [channel]}, headers=auth)


def test_post_enables_a_new_channel_and_put_replaces_one_that_is_there(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str]
) -> None:
    channel = {
        "channel_id": "1000000068001",
        "events": ["Contacts.edit"],
        "notify_url": "http://127.0.0.1:9/hook",
    }

    replaced_nothing = http.put("/crm/v8/actions/watch", json={"watch": [channel]}, headers=auth)
    enabled = _watch(http, auth)
    enabled_again = _watch(http, auth, token="TOKEN_2")
    replaced = http.put(
        "/crm/v8/actions/watch", json={"watch": [{**channel, "token": "TOKEN_3"}]}, headers=auth
    )

    assert (replaced_nothing.status_code, replaced_nothing.json()["details"]["api_name"]) == (
        400,
        "channel_id",
    )
    assert enabled.status_code == 201 and enabled.json()["watch"][0]["code"] == "SUCCESS"
    assert (enabled_again.status_code, enabled_again.json()["code"]) == (400, "DUPLICATE_DATA")
    assert replaced.status_code == 200 and replaced.json()["watch"][0]["code"] == "SUCCESS"
    assert sim.state.notifier.channels["1000000068001"]["token"] == "TOKEN_3"
    # A channel past its expiry is gone: enabling its id again is a new channel.
    sim.state.notifier.channels["1000000068001"]["expiry"] = sim.state.now() - 1
    assert _watch(http, auth, token="TOKEN_4").status_code == 201


def test_a_token_longer_than_50_characters_is_refused(http: httpx.Client, auth: dict[str, str]) -> None:
    resp = _watch(http, auth, token="x" * 51)

    assert resp.status_code == 400
    assert resp.json()["code"] == "INVALID_DATA" and resp.json()["details"]["api_name"] == "token"


@pytest.mark.parametrize(("days", "kept"), [(None, False), (8, False), (6, True)])
def test_a_channel_lives_at_most_a_week_else_one_hour(
    sim: LiveServer, http: httpx.Client, auth: dict[str, str], days: int | None, kept: bool
) -> None:
    now = datetime.fromtimestamp(sim.state.now(), UTC)
    extra = {"channel_expiry": (now + timedelta(days=days)).isoformat()} if days else {}

    _watch(http, auth, **extra)

    expiry = sim.state.notifier.channels["1000000068001"]["expiry"]
    expected = (now + timedelta(days=days)).timestamp() if kept else now.timestamp() + 3600
    assert abs(expiry - expected) < 5


def test_an_edit_of_a_watched_record_calls_back_with_the_token_and_the_ids(
    sim: LiveServer,
    http: httpx.Client,
    auth: dict[str, str],
    contact_ids: list[str],
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = receiver
    assert _watch(http, auth, notify_url=url).json()["watch"][0]["code"] == "SUCCESS"

    http.post(f"/_sim/contacts/{contact_ids[1]}", json={"fields": {"SMS_Opt_In": True}})
    sim.state.notifier.wait_idle()

    (callback,) = received
    assert callback["ids"] == [contact_ids[1]] and callback["module"] == "Contacts"
    assert callback["token"] == "TOKEN_1" and callback["channel_id"] == "1000000068001"
    assert callback["operation"] == "update"


def test_a_lead_edit_calls_back_as_zoho_documents_it_and_only_the_channels_watching_leads(
    sim: LiveServer,
    http: httpx.Client,
    auth: dict[str, str],
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = receiver
    _watch(http, auth, notify_url=url)  # Contacts.edit only
    _watch(http, auth, notify_url=url, channel_id="1000000068002", events=["Leads.edit"], token="TOKEN_2")
    lead = sim.state.add_record("Leads", Last_Name="Lead", Email="lead@example.com")

    http.post(f"/_sim/contacts/{lead}", params={"module": "Leads"}, json={"fields": {"SMS_Opt_In": True}})
    sim.state.notifier.wait_idle()

    (callback,) = received
    assert set(callback) == {
        "server_time",
        "query_params",
        "module",
        "resource_uri",
        "ids",
        "affected_fields",
        "operation",
        "channel_id",
        "token",
    }
    assert (callback["module"], callback["ids"], callback["operation"]) == ("Leads", [str(lead)], "update")
    assert callback["resource_uri"] == f"{sim.url}/crm/v8/Leads", "the module's full URL on the API domain"
    assert (callback["channel_id"], callback["token"]) == ("1000000068002", "TOKEN_2")


def test_channels_are_listed_and_disabled(http: httpx.Client, auth: dict[str, str]) -> None:
    _watch(http, auth)

    listed = http.get("/crm/v8/actions/watch", headers=auth)
    http.delete("/crm/v8/actions/watch", params={"channel_ids": "1000000068001"}, headers=auth)
    after = http.get("/crm/v8/actions/watch", headers=auth)

    assert [c["channel_id"] for c in listed.json()["watch"]] == ["1000000068001"]
    assert after.status_code == 204


def test_watching_needs_the_notifications_scope(http: httpx.Client, auth: dict[str, str]) -> None:
    http.put("/_sim/faults", json={"missing_scope": {"scope": "ZohoCRM.notifications.ALL"}})

    resp = _watch(http, auth)

    assert resp.status_code == 401 and resp.json()["code"] == "OAUTH_SCOPE_MISMATCH"
