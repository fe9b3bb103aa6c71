"""``/crm/<version>/actions/watch``: enable (POST, PUT), list (GET), disable (DELETE) notification channels."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.errors import ZohoError
from zohosim.fields import parse_time
from zohosim.guard import crm_api, no_content, sim_state
from zohosim.notifications import DEFAULT_EXPIRY_S, MAX_EXPIRY_S, MAX_TOKEN, OPERATIONS
from zohosim.state import MODULES

bp = Blueprint("watch", __name__)


def _invalid(name: str, index: int) -> ZohoError:
    return ZohoError(
        "INVALID_DATA", "invalid data", {"api_name": name, "json_path": f"$.watch[{index}].{name}"}
    )


def _channel(index: int, spec: Any, now: float) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ZohoError("INVALID_DATA", "invalid data", {"json_path": f"$.watch[{index}]"})
    for name in ("channel_id", "events", "notify_url"):
        if not spec.get(name):
            raise ZohoError(
                "MANDATORY_NOT_FOUND",
                "required field not found",
                {"api_name": name, "json_path": f"$.watch[{index}].{name}"},
            )
    channel_id = str(spec["channel_id"])
    if not channel_id.isdigit():
        raise _invalid("channel_id", index)
    events = spec["events"]
    if not isinstance(events, list) or not all(
        isinstance(e, str) and e.partition(".")[0] in MODULES and e.partition(".")[2] in OPERATIONS
        for e in events
    ):
        raise _invalid("events", index)
    token = spec.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN):
        raise _invalid("token", index)
    url = spec["notify_url"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _invalid("notify_url", index)
    expiry = now + DEFAULT_EXPIRY_S
    raw = spec.get("channel_expiry")
    if raw:
        try:
            asked = parse_time(str(raw))
        except ValueError:
            raise _invalid("channel_expiry", index) from None
        # Missing, or more than a week ahead: one hour (zoho-api.md section 6).
        expiry = asked if now < asked <= now + MAX_EXPIRY_S else now + DEFAULT_EXPIRY_S
    return {
        "channel_id": channel_id,
        "events": list(events),
        "notify_url": url,
        "token": token,
        "expiry": expiry,
        "affected": bool(spec.get("return_affected_field_values")),
    }


def _enable(*, replace: bool) -> Response:
    """POST enables new channels (201), PUT replaces channels that are there (200); zoho-api.md
    section 6. A POST naming a live channel, or a PUT naming none, is refused (their codes are
    unverified; a client renewing a channel must PUT, and enable anew once it has lapsed)."""
    state = sim_state()
    body = request.get_json(force=True, silent=True)
    specs = body.get("watch") if isinstance(body, dict) else None
    if not isinstance(specs, list) or not specs:
        raise ZohoError("MANDATORY_NOT_FOUND", "required field not found", {"api_name": "watch"})
    now = state.now()
    channels = [_channel(i, spec, now) for i, spec in enumerate(specs)]
    answers = []
    with state.lock:
        for index, channel in enumerate(channels):
            current = state.notifier.channels.get(channel["channel_id"])
            live = current is not None and current["expiry"] > now
            if live and not replace:
                raise ZohoError(
                    "DUPLICATE_DATA",
                    "the channel_id given is already subscribed",
                    {"api_name": "channel_id", "json_path": f"$.watch[{index}].channel_id"},
                )
            if not live and replace:
                raise _invalid("channel_id", index)
        for channel in channels:
            state.notifier.channels[channel["channel_id"]] = channel
            answers.append(
                {
                    "code": "SUCCESS",
                    "status": "success",
                    "message": "Successfully subscribed for actions-watch of the given module",
                    "details": {
                        "events": [
                            {
                                "channel_expiry": state.fmt(channel["expiry"]),
                                "resource_uri": f"/crm/v8/{event.partition('.')[0]}",
                                "resource_id": "5725767000000002175",
                                "resource_name": event.partition(".")[0],
                                "channel_id": channel["channel_id"],
                            }
                            for event in channel["events"]
                        ]
                    },
                }
            )
    g.code = "SUCCESS"
    response = jsonify({"watch": answers})
    response.status_code = 200 if replace else 201
    return response


@bp.post("/actions/watch")
@crm_api("crm.watch")
def enable(version: str) -> Response:
    return _enable(replace=False)


@bp.put("/actions/watch")
@crm_api("crm.watch")
def replace(version: str) -> Response:
    return _enable(replace=True)


@bp.get("/actions/watch")
@crm_api("crm.watch")
def list_channels(version: str) -> Response:
    state = sim_state()
    now = state.now()
    with state.lock:
        live = [c for c in state.notifier.channels.values() if c["expiry"] > now]
        rows = [
            {
                "channel_id": c["channel_id"],
                "events": c["events"],
                "notify_url": c["notify_url"],
                "channel_expiry": state.fmt(c["expiry"]),
                "token": c["token"],
            }
            for c in live
        ]
    if not rows:
        return no_content()
    g.code = "SUCCESS"
    return jsonify({"watch": rows})


@bp.delete("/actions/watch")
@crm_api("crm.watch")
def disable(version: str) -> Response:
    state = sim_state()
    ids = [i.strip() for i in request.args.get("channel_ids", "").split(",") if i.strip()]
    if not ids:
        raise ZohoError(
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            {"param_name": "channel_ids"},
        )
    with state.lock:
        for channel_id in ids:
            state.notifier.channels.pop(channel_id, None)
    g.code = "SUCCESS"
    return jsonify(
        {
            "watch": [
                {
                    "code": "SUCCESS",
                    "status": "success",
                    "message": "Successfully unsubscribed",
                    "details": {"channel_id": i},
                }
                for i in ids
            ]
        }
    )
