"""The /_sim control and inspection API (JSON, no auth). Never part of the real Zoho surface."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from zohosim import campaigns, seed
from zohosim.config import SimConfig
from zohosim.faults import FAULT_NAMES, FaultError
from zohosim.guard import sim_state
from zohosim.state import MODULES

bp = Blueprint("control", __name__, url_prefix="/_sim")


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _bad(message: str, status: int = 400) -> Response:
    resp = jsonify({"error": message})
    resp.status_code = status
    return resp


def _module() -> str:
    module = request.args.get("module", "Contacts")
    return module if module in MODULES else "Contacts"


@bp.post("/reset")
def reset() -> Response:
    state = sim_state()
    body = _body()
    config = None
    if body.get("config") is not None:
        try:
            config = SimConfig.from_dict(body["config"])
        except ValueError as exc:
            return _bad(str(exc))
    state.reset(config)
    return jsonify({"status": "reset"})


@bp.post("/seed")
def seed_state() -> Response:
    try:
        summary = seed.load(sim_state(), _body())
    except (ValueError, KeyError, TypeError) as exc:
        return _bad(f"bad seed: {exc}")
    return jsonify(summary)


@bp.get("/config")
def get_config() -> Response:
    return jsonify(sim_state().config.as_dict())


@bp.route("/config", methods=["PUT", "PATCH", "POST"])
def put_config() -> Response:
    state = sim_state()
    try:
        with state.lock:
            state.config.update(_body())
    except ValueError as exc:
        return _bad(str(exc))
    return jsonify(state.config.as_dict())


@bp.get("/contacts/<rid>")
def get_contact(rid: str) -> Response:
    state = sim_state()
    with state.lock:
        record = state.find(_module(), rid)
        if record is None:
            return _bad("no such record", 404)
        return jsonify(state.render(record))


@bp.get("/contacts")
def find_contacts() -> Response:
    state = sim_state()
    email = request.args.get("email")
    limit = int(request.args.get("limit", "100"))
    with state.lock:
        store = state.modules[_module()]
        records = store.by_email(email) if email else [store.records[i] for i in store.ids[:limit]]
        return jsonify({"data": [state.render(r) for r in records], "count": len(store)})


@bp.post("/contacts")
def create_contact() -> Response:
    state = sim_state()
    body = _body()
    fields = body.get("fields", body)
    try:
        rid = state.add_record(_module(), **fields)
    except (TypeError, ValueError) as exc:
        return _bad(str(exc))
    with state.lock:
        record = state.find(_module(), rid)
        assert record is not None
        return jsonify(state.render(record))


@bp.post("/contacts/<rid>")
def edit_contact(rid: str) -> Response:
    """Act as a CRM user editing the record in the UI: changes fields, sets Modified_By to that user."""
    state = sim_state()
    body = _body()
    fields = body.get("fields")
    if not isinstance(fields, dict):
        fields = {k: v for k, v in body.items() if k not in ("user", "user_id")}
    user = body.get("user")
    user_id = body.get("user_id") or (user or {}).get("id") or state.agent_user_id
    with state.lock:
        if user_id not in state.users:
            state.add_user(
                user_id, (user or {}).get("name", "CRM User"), (user or {}).get("email", "user@example.com")
            )
        module = _module()
        record = state.find(module, rid)
        if record is None:
            return _bad("no such record", 404)
        unknown = [f for f in fields if f not in state.fields]
        if unknown:
            return _bad(f"unknown fields: {', '.join(unknown)}")
        state.apply_changes(module, record, fields, user_id=str(user_id), source="ui")
        return jsonify(state.render(record))


def _since() -> int:
    try:
        return int(request.args.get("since", "0"))
    except ValueError:
        return 0


@bp.get("/writes")
def writes() -> Response:
    """Accepted writes in order. ``source`` defaults to ``api``; ``source=all`` adds workflow and UI writes."""
    state = sim_state()
    source = request.args.get("source", "api")
    record_id = request.args.get("record_id")
    since = _since()
    with state.lock:
        rows = [
            {k: v for k, v in w.items() if k != "ts"}
            for w in state.writes
            if w["seq"] > since
            and (source == "all" or w["source"] == source)
            and (record_id is None or w["record_id"] == record_id)
        ]
    return jsonify({"writes": rows, "count": len(rows)})


@bp.get("/calls")
def calls() -> Response:
    state = sim_state()
    since = _since()
    op = request.args.get("op")
    with state.lock:
        rows = [c for c in state.calls if c["seq"] > since and (op is None or c["op"] == op)]
    return jsonify({"calls": rows, "count": len(rows)})


@bp.get("/faults")
def get_faults() -> Response:
    return jsonify({"faults": sim_state().faults.snapshot(), "available": list(FAULT_NAMES)})


@bp.route("/faults", methods=["PUT", "POST", "PATCH"])
def put_faults() -> Response:
    state = sim_state()
    body = _body()
    results: dict[str, Any] = {}
    try:
        for name, params in body.items():
            results.update(state.faults.set(name, params))
    except FaultError as exc:
        return _bad(str(exc))
    return jsonify({"faults": state.faults.snapshot(), "applied": results})


@bp.delete("/faults")
def delete_faults() -> Response:
    sim_state().faults.clear()
    return jsonify({"faults": {}})


@bp.route("/faults/<name>", methods=["PUT", "POST"])
def put_fault(name: str) -> Response:
    state = sim_state()
    try:
        result = state.faults.set(name, request.get_json(silent=True) or {})
    except FaultError as exc:
        return _bad(str(exc))
    return jsonify({"faults": state.faults.snapshot(), "applied": result})


@bp.delete("/faults/<name>")
def delete_fault(name: str) -> Response:
    state = sim_state()
    state.faults.clear(name)
    return jsonify({"faults": state.faults.snapshot()})


@bp.post("/tokens/expire")
def expire_tokens() -> Response:
    return jsonify({"expired": sim_state().expire_tokens()})


@bp.get("/clock")
def get_clock() -> Response:
    state = sim_state()
    return jsonify({"now": state.now(), "iso": state.fmt(state.now()), "offset_s": state.clock.offset})


@bp.post("/clock")
def move_clock() -> Response:
    state = sim_state()
    body = _body()
    state.clock.advance(float(body.get("advance_s", 0)))
    state.tick()
    return jsonify({"now": state.now(), "iso": state.fmt(state.now()), "offset_s": state.clock.offset})


@bp.post("/campaigns/unsubscribe")
def campaigns_unsubscribe() -> Response:
    body = _body()
    if not body.get("email"):
        return _bad("email is required")
    result = campaigns.sim_unsubscribe(
        sim_state(), body["email"], listkey=body.get("listkey"), campaignkey=body.get("campaignkey")
    )
    return jsonify(result)


@bp.post("/campaigns/bounce")
def campaigns_bounce() -> Response:
    body = _body()
    if not body.get("email"):
        return _bad("email is required")
    kind = body.get("kind", "hard")
    if kind not in ("hard", "soft"):
        return _bad("kind is hard or soft")
    result = campaigns.sim_bounce(
        sim_state(),
        body["email"],
        kind=kind,
        listkey=body.get("listkey"),
        campaignkey=body.get("campaignkey"),
    )
    return jsonify(result)


@bp.get("/lists")
def lists() -> Response:
    state = sim_state()
    with state.lock:
        return jsonify(
            {
                "lists": [
                    {
                        "listkey": m.listkey,
                        "name": m.name,
                        "subscribers": [
                            {"email": s.email, "status": s.status, "bounce_kind": s.bounce_kind}
                            for s in m.subscribers.values()
                        ],
                    }
                    for m in state.lists.values()
                ],
                "donotmail": sorted(state.donotmail),
            }
        )


@bp.get("/stats")
def stats() -> Response:
    state = sim_state()
    out = state.quota.stats()
    with state.lock:
        out["contacts"] = len(state.modules["Contacts"])
        out["leads"] = len(state.modules["Leads"])
        out["writes"] = len(state.writes)
        out["calls"] = len(state.calls)
        out["active_tokens"] = len(state.tokens)
        out["pending_workflow_resets"] = len(state.pending_resets)
    return jsonify(out)
