"""CRM record writes: update, create, upsert. One entry per input record, in input order."""

from __future__ import annotations

import math
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.crm.params import require_module
from zohosim.errors import HTTP_STATUS_BY_CODE, ZohoError
from zohosim.fields import (
    BASIS_VALUES,
    CONSENT_DETAIL_FIELDS,
    check_value,
    parse_time,
)
from zohosim.guard import crm_api, heavy_write, sim_state
from zohosim.state import Record, SimState

bp = Blueprint("write", __name__)

MAX_WRITE = 100
SYSTEM_FIELDS = {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By"}


def _invalid_data(**details: Any) -> ZohoError:
    return ZohoError("INVALID_DATA", "invalid data", details)


def _success(state: SimState, record: Record, message: str, modified: float | None = None) -> dict[str, Any]:
    return {
        "code": "SUCCESS",
        "details": {
            "Modified_Time": state.fmt(modified if modified is not None else record.modified),
            "Modified_By": state.user_ref(state.api_user_id if modified is not None else record.modified_by),
            "Created_Time": state.fmt(record.created),
            "id": str(record.id),
            "Created_By": state.user_ref(record.created_by),
        },
        "message": message,
        "status": "success",
    }


def _check_consent_details(
    state: SimState, record: Record | None, value: dict[str, Any], path: str
) -> dict[str, Any]:
    """The writable keys of a Data_Processing_Basis_Details value. Its ``id`` must be the
    record's current consent record (Zoho updates that one); without it a new one is made."""
    nested: dict[str, Any] = {}
    current = record.get("Data_Processing_Basis_Details") if record is not None else None
    current_id = str(current.get("id")) if isinstance(current, dict) and current.get("id") else None
    for key, sub in value.items():
        sub_path = f"{path}.{key}"
        dtype = CONSENT_DETAIL_FIELDS.get(key)
        if dtype is None:
            raise _unknown_field(key, sub_path)
        if key == "id":
            if sub is not None and str(sub) != current_id:
                raise ZohoError(
                    "INVALID_DATA",
                    "the id given seems to be invalid",
                    {"api_name": "id", "json_path": sub_path, "id": str(sub)},
                )
            if sub is not None:
                nested["id"] = str(sub)
            continue
        expected = check_value(dtype, sub)
        if expected is not None:
            raise _invalid_data(expected_data_type=expected, api_name=key, json_path=sub_path)
        allowed = {
            "Data_Processing_Basis": state.config.consent_basis_values,
            "Consent_Through": state.config.consent_through_values,
        }.get(key)
        if allowed is not None and sub is not None and sub not in allowed:
            raise ZohoError(
                "INVALID_DATA",
                "invalid data",
                {"api_name": key, "json_path": sub_path, "expected_data_type": "picklist"},
            )
        nested[key] = sub
    return nested


def _unknown_field(name: str, path: str) -> ZohoError:
    return ZohoError(
        "INVALID_DATA", "the field api name given seems to be invalid", {"api_name": name, "json_path": path}
    )


def _changes(
    state: SimState, index: int, rec: dict[str, Any], record: Record | None = None
) -> dict[str, Any]:
    """The changes an input record asks for; raises the entry error of its first bad field."""
    changes: dict[str, Any] = {}
    for name, value in rec.items():
        if name.startswith("$") or name in SYSTEM_FIELDS:
            continue
        path = f"$.data[{index}].{name}"
        fdef = state.fields.get(name)
        if fdef is None:
            if state.config.unknown_field_mode == "ignore":
                continue
            raise _unknown_field(name, path)
        expected = check_value(fdef.data_type, value)
        if expected is not None:
            raise _invalid_data(expected_data_type=expected, api_name=name, json_path=path)
        if isinstance(value, str) and len(value) > fdef.length and fdef.data_type != "textarea":
            raise _invalid_data(maximum_length=fdef.length, api_name=name, json_path=path)
        if name == "Data_Processing_Basis" and value is not None and value not in BASIS_VALUES:
            raise _invalid_data(api_name=name, json_path=path)
        if fdef.picklist and value is not None and value not in fdef.picklist:
            raise _invalid_data(expected_data_type="picklist", api_name=name, json_path=path)
        if fdef.data_type == "consent_lookup" and isinstance(value, dict):
            value = _check_consent_details(state, record, value, path)
        changes[name] = value
    return changes


def _touched_paths(changes: dict[str, Any]) -> list[str]:
    paths = []
    for name, value in changes.items():
        paths.append(name)
        if isinstance(value, dict):
            paths.extend(f"{name}.{k}" for k in value)
    return paths


def _strip_silent(changes: dict[str, Any], silent: list[str]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in changes.items()}
    for path in silent:
        head, _, rest = path.partition(".")
        if not rest:
            out.pop(head, None)
        elif isinstance(out.get(head), dict):
            out[head].pop(rest, None)
    return out


def _unmodified_since() -> float | None:
    raw = request.headers.get("If-Unmodified-Since")
    if not raw:
        return None
    try:
        return parse_time(raw)
    except ValueError:
        try:
            return parsedate_to_datetime(raw).timestamp()
        except (TypeError, ValueError):
            return None


def _top_status(entries: list[dict[str, Any]], ok_status: int) -> int:
    codes = {e["code"] for e in entries}
    if codes == {"SUCCESS"}:
        return ok_status
    if "SUCCESS" in codes:
        return sim_state().config.mixed_status
    if len(codes) == 1:
        return HTTP_STATUS_BY_CODE.get(next(iter(codes)), 400)
    return 400


def _read_data(module: str) -> list[Any]:
    require_module(module)
    body = request.get_json(force=True, silent=True)  # Zoho reads JSON whatever the Content-Type
    if not isinstance(body, dict):
        raise ZohoError("INVALID_DATA", "body is not a valid JSON")
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise ZohoError(
            "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data", "json_path": "$.data"}
        )
    if len(data) > MAX_WRITE:
        raise ZohoError(
            "LIMIT_EXCEEDED",
            "Only 100 records can be processed in a single call",
            {"limit": str(MAX_WRITE), "param_name": "data"},
        )
    return data


def _entries(
    data: list[Any], write_one: Callable[[int, dict[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each input record's entry: what ``write_one`` returns, or the body of the ZohoError it raised."""
    entries = []
    for index, rec in enumerate(data):
        try:
            if not isinstance(rec, dict):
                raise _invalid_data(json_path=f"$.data[{index}]")
            entries.append(write_one(index, rec))
        except ZohoError as exc:
            entries.append(exc.body)
    return entries


def _respond(entries: list[dict[str, Any]], ok_status: int) -> Response:
    """The write's answer, one entry per input record; its credits go by that count."""
    per_10 = sim_state().config.update_credits_per_10_records
    g.cost = math.ceil(len(entries) / 10) if per_10 else 1
    codes = [e["code"] for e in entries]
    g.code = codes[0] if len(set(codes)) == 1 else "MIXED"
    g.entry_codes = codes
    resp = jsonify({"data": entries})
    resp.status_code = _top_status(entries, ok_status)
    return resp


def _update_one(
    state: SimState, module: str, index: int, rec: dict[str, Any], op: str, since: float | None
) -> dict[str, Any]:
    rid = rec.get("id")
    if rid in (None, ""):
        raise ZohoError(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            {"api_name": "id", "json_path": f"$.data[{index}].id"},
        )
    with state.lock:
        record = state.find(module, rid)
        if record is None:
            details = (
                {"api_name": "id", "json_path": f"$.data[{index}].id"}
                if state.config.unknown_id_details == "api_name"
                else {"id": str(rid)}
            )
            raise ZohoError("INVALID_DATA", "the id given seems to be invalid", details)
        if state.faults.stop_processing(op, str(record.id)):
            raise ZohoError("CANNOT_PROCESS", "The record is in stop processing", {"id": str(record.id)})
        changes = _changes(state, index, rec, record)
        denied = state.faults.no_permission(op)
        touched = _touched_paths(changes)
        blocked = [p for p in touched if denied.get(p) == "error"]
        if blocked:
            raise ZohoError(
                "NO_PERMISSION",
                "permission denied",
                {
                    "permissions": ["Crm_Implied_Edit_Field"],
                    "api_name": blocked[0],
                    "json_path": f"$.data[{index}].{blocked[0]}",
                },
            )
        if since is not None and int(record.modified) > since:
            raise ZohoError(
                "ALREADY_MODIFIED",
                "the record has been modified after the given time",
                {"id": str(record.id), "Modified_Time": state.fmt(record.modified)},
            )
        silent = [p for p in touched if denied.get(p) == "silent"]
        noop = state.faults.silent_noop(op, str(record.id))
        state.apply_changes(
            module,
            record,
            _strip_silent(changes, silent) if silent and not noop else changes,
            user_id=state.api_user_id,
            source="api",
            request_id=g.request_id,
            applied=not noop,
            ignored=None if noop else silent,
        )
        # A silent no-op answers as if written now, by the API user, while the record is unchanged.
        return _success(state, record, "record updated", modified=state.now() if noop else None)


def _update(module: str, data: list[Any]) -> Response:
    state = sim_state()
    since = _unmodified_since()
    entries = _entries(data, lambda i, rec: _update_one(state, module, i, rec, "crm.update", since))
    response = _respond(entries, 200)
    if state.faults.rules("workflow_reset"):
        state.tick()  # delay 0: the reset lands right after the write
    return response


@bp.put("/<module>")
@crm_api("crm.update", heavy=heavy_write)
def update_records(version: str, module: str) -> Response:
    return _update(module, _read_data(module))


@bp.put("/<module>/<rid>")
@crm_api("crm.update", heavy=heavy_write)
def update_record(version: str, module: str, rid: str) -> Response:
    data = _read_data(module)
    return _update(module, [dict(d, id=rid) if isinstance(d, dict) else d for d in data[:1]])


def _insert(state: SimState, module: str, index: int, rec: dict[str, Any], op: str) -> dict[str, Any]:
    changes = _changes(state, index, rec)
    if not changes.get("Last_Name"):
        raise ZohoError(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            {"api_name": "Last_Name", "json_path": f"$.data[{index}].Last_Name"},
        )
    denied = state.faults.no_permission(op)
    blocked = [p for p in _touched_paths(changes) if denied.get(p) == "error"]
    if blocked:
        raise ZohoError(
            "NO_PERMISSION",
            "permission denied",
            {"permissions": ["Crm_Implied_Create"], "api_name": blocked[0]},
        )
    with state.lock:
        rid = state.add_record(module, _user_id=state.api_user_id)
        record = state.find(module, rid)
        assert record is not None
        state.apply_changes(
            module, record, changes, user_id=state.api_user_id, source="api", request_id=g.request_id
        )
        return _success(state, record, "record added")


@bp.post("/<module>")
@crm_api("crm.create", heavy=heavy_write)
def create_records(version: str, module: str) -> Response:
    data = _read_data(module)
    state = sim_state()
    entries = _entries(data, lambda i, rec: _insert(state, module, i, rec, "crm.create"))
    return _respond(entries, 201 if len(data) == 1 else 202)


@bp.post("/<module>/upsert")
@crm_api("crm.upsert", heavy=heavy_write)
def upsert_records(version: str, module: str) -> Response:
    data = _read_data(module)
    body = request.get_json(force=True, silent=True) or {}
    check_fields = body.get("duplicate_check_fields") or ["Email"]
    state = sim_state()

    def upsert_one(index: int, rec: dict[str, Any]) -> dict[str, Any]:
        existing: Record | None = None
        dup_field = None
        with state.lock:
            if rec.get("id"):
                existing = state.find(module, rec["id"])
            for fname in check_fields:
                if existing is None and fname == "Email" and rec.get("Email"):
                    found = state.modules[module].by_email(rec["Email"])
                    existing = found[0] if found else None
                    dup_field = "Email" if existing else None
            if existing is not None:
                entry = _update_one(state, module, index, dict(rec, id=str(existing.id)), "crm.upsert", None)
                action = "update"
            else:
                entry = _insert(state, module, index, rec, "crm.upsert")
                action = "insert"
        entry["action"] = action
        entry["duplicate_field"] = dup_field
        return entry

    return _respond(_entries(data, upsert_one), 200)
