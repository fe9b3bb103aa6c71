"""CRM records API: update, create, upsert, get, list, search; field metadata, current user, org."""

from __future__ import annotations

import base64
import math
import re
from email.utils import parsedate_to_datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.fields import (
    BASIS_VALUES,
    CONSENT_DETAIL_FIELDS,
    CONSENT_DETAIL_READ_ONLY,
    check_value,
    json_type,
    parse_time,
)
from zohosim.guard import HTTP_STATUS_BY_CODE, crm_api, crm_error, no_content, sim_state
from zohosim.state import MODULES, STANDARD_PROFILE_ID, Record, SimState

bp = Blueprint("crm", __name__, url_prefix="/crm/<zver:version>")

MAX_WRITE = 100
MAX_IDS = 100
MAX_PER_PAGE = 200
DISCRETE_LIMIT = 2000
SYSTEM_FIELDS = {"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By"}


def _module_error(module: str) -> Response | None:
    if module not in MODULES:
        return crm_error(
            "INVALID_MODULE", "the module name given seems to be invalid", {"resource_path_index": 0}
        )
    return None


def _entry_error(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"code": code, "details": details, "message": message, "status": "error"}


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


def _validate(
    state: SimState, index: int, rec: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Split an input record into the changes to apply, or return the first error entry."""
    changes: dict[str, Any] = {}
    for name, value in rec.items():
        if name.startswith("$") or name in SYSTEM_FIELDS:
            continue
        path = f"$.data[{index}].{name}"
        fdef = state.fields.get(name)
        if fdef is None:
            if state.config.unknown_field_mode == "ignore":
                continue
            return {}, _entry_error("INVALID_DATA", "invalid data", {"api_name": name, "json_path": path})
        expected = check_value(fdef.data_type, value)
        if expected is not None:
            return {}, _entry_error(
                "INVALID_DATA",
                "invalid data",
                {"expected_data_type": expected, "api_name": name, "json_path": path},
            )
        if isinstance(value, str) and len(value) > fdef.length and fdef.data_type != "textarea":
            return {}, _entry_error(
                "INVALID_DATA",
                "invalid data",
                {"maximum_length": fdef.length, "api_name": name, "json_path": path},
            )
        if name == "Data_Processing_Basis" and value is not None and value not in BASIS_VALUES:
            return {}, _entry_error("INVALID_DATA", "invalid data", {"api_name": name, "json_path": path})
        if fdef.data_type == "consent_lookup" and isinstance(value, dict):
            nested: dict[str, Any] = {}
            for key, sub in value.items():
                sub_path = f"{path}.{key}"
                dtype = CONSENT_DETAIL_FIELDS.get(key)
                if dtype is None:
                    return {}, _entry_error(
                        "INVALID_DATA", "invalid data", {"api_name": key, "json_path": sub_path}
                    )
                if key in CONSENT_DETAIL_READ_ONLY:
                    continue
                expected = check_value(dtype, sub)
                if expected is not None:
                    return {}, _entry_error(
                        "INVALID_DATA",
                        "invalid data",
                        {"expected_data_type": expected, "api_name": key, "json_path": sub_path},
                    )
                if key == "Data_Processing_Basis" and sub is not None and sub not in BASIS_VALUES:
                    return {}, _entry_error(
                        "INVALID_DATA", "invalid data", {"api_name": key, "json_path": sub_path}
                    )
                nested[key] = sub
            value = nested
        changes[name] = value
    return changes, None


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


def _read_data() -> list[Any] | Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return crm_error("INVALID_DATA", "body is not a valid JSON", {})
    data = body.get("data")
    if not isinstance(data, list) or not data:
        return crm_error(
            "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data", "json_path": "$.data"}
        )
    if len(data) > MAX_WRITE:
        return crm_error(
            "LIMIT_EXCEEDED",
            "Only 100 records can be processed in a single call",
            {"limit": str(MAX_WRITE), "param_name": "data"},
        )
    return data


def _write_cost(state: SimState, n: int) -> int:
    return math.ceil(n / 10) if state.config.update_credits_per_10_records else 1


def _respond(entries: list[dict[str, Any]], ok_status: int) -> Response:
    codes = [e["code"] for e in entries]
    g.code = codes[0] if len(set(codes)) == 1 else "MIXED"
    g.entry_codes = codes
    resp = jsonify({"data": entries})
    resp.status_code = _top_status(entries, ok_status)
    return resp


def update_one_record(
    state: SimState, module: str, index: int, rec: Any, op: str, since: float | None, request_id: str
) -> dict[str, Any]:
    if not isinstance(rec, dict):
        return _entry_error("INVALID_DATA", "invalid data", {"json_path": f"$.data[{index}]"})
    rid = rec.get("id")
    if rid in (None, ""):
        return _entry_error(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            {"api_name": "id", "json_path": f"$.data[{index}].id"},
        )
    with state.lock:
        record = state.find(module, rid)
        if record is None:
            return _entry_error("INVALID_DATA", "the id given seems to be invalid", {"id": str(rid)})
        changes, error = _validate(state, index, rec)
        if error is not None:
            return error
        denied = state.faults.no_permission(op)
        touched = _touched_paths(changes)
        blocked = [p for p in touched if denied.get(p) == "error"]
        if blocked:
            return _entry_error(
                "NO_PERMISSION",
                "permission denied",
                {
                    "permissions": ["Crm_Implied_Edit_Field"],
                    "api_name": blocked[0],
                    "json_path": f"$.data[{index}].{blocked[0]}",
                },
            )
        if since is not None and int(record.modified) > since:
            return _entry_error(
                "ALREADY_MODIFIED",
                "the record has been modified after the given time",
                {"id": str(record.id), "Modified_Time": state.fmt(record.modified)},
            )
        silent = [p for p in touched if denied.get(p) == "silent"]
        if state.faults.silent_noop(op, str(record.id)):
            state.apply_changes(
                module,
                record,
                changes,
                user_id=state.api_user_id,
                source="api",
                request_id=request_id,
                applied=False,
            )
            return _success(state, record, "record updated", modified=state.now())
        applied = _strip_silent(changes, silent) if silent else changes
        state.apply_changes(
            module,
            record,
            applied,
            user_id=state.api_user_id,
            source="api",
            request_id=request_id,
            ignored=silent,
        )
        return _success(state, record, "record updated")


def _update(module: str, data: list[Any], op: str) -> Response:
    state = sim_state()
    since = _unmodified_since()
    entries = [
        update_one_record(state, module, i, rec, op, since, g.request_id) for i, rec in enumerate(data)
    ]
    g.cost = _write_cost(state, len(data))
    if state.faults.rules("workflow_reset"):
        state.tick()  # delay 0: the reset lands right after the write
    return _respond(entries, 200)


@bp.put("/<module>")
@crm_api("crm.update")
def update_records(version: str, module: str) -> Response:
    err = _module_error(module)
    if err is not None:
        return err
    data = _read_data()
    if isinstance(data, Response):
        return data
    return _update(module, data, "crm.update")


@bp.put("/<module>/<rid>")
@crm_api("crm.update")
def update_record(version: str, module: str, rid: str) -> Response:
    err = _module_error(module)
    if err is not None:
        return err
    data = _read_data()
    if isinstance(data, Response):
        return data
    data = [dict(d, id=rid) if isinstance(d, dict) else d for d in data[:1]]
    return _update(module, data, "crm.update")


def _insert(state: SimState, module: str, index: int, rec: dict[str, Any], op: str) -> dict[str, Any]:
    changes, error = _validate(state, index, rec)
    if error is not None:
        return error
    if not changes.get("Last_Name"):
        return _entry_error(
            "MANDATORY_NOT_FOUND",
            "required field not found",
            {"api_name": "Last_Name", "json_path": f"$.data[{index}].Last_Name"},
        )
    denied = state.faults.no_permission(op)
    blocked = [p for p in _touched_paths(changes) if denied.get(p) == "error"]
    if blocked:
        return _entry_error(
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
        entry = _success(state, record, "record added")
        return entry


@bp.post("/<module>")
@crm_api("crm.create")
def create_records(version: str, module: str) -> Response:
    err = _module_error(module)
    if err is not None:
        return err
    data = _read_data()
    if isinstance(data, Response):
        return data
    state = sim_state()
    entries = [
        _insert(state, module, i, rec, "crm.create")
        if isinstance(rec, dict)
        else _entry_error("INVALID_DATA", "invalid data", {"json_path": f"$.data[{i}]"})
        for i, rec in enumerate(data)
    ]
    g.cost = _write_cost(state, len(data))
    return _respond(entries, 201 if len(data) == 1 else 202)


@bp.post("/<module>/upsert")
@crm_api("crm.upsert")
def upsert_records(version: str, module: str) -> Response:
    err = _module_error(module)
    if err is not None:
        return err
    data = _read_data()
    if isinstance(data, Response):
        return data
    body = request.get_json(silent=True) or {}
    check_fields = body.get("duplicate_check_fields") or ["Email"]
    state = sim_state()
    entries = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            entries.append(_entry_error("INVALID_DATA", "invalid data", {"json_path": f"$.data[{i}]"}))
            continue
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
                entry = update_one_record(
                    state, module, i, dict(rec, id=str(existing.id)), "crm.upsert", None, g.request_id
                )
                action = "update"
            else:
                entry = _insert(state, module, i, rec, "crm.upsert")
                action = "insert"
        if entry["code"] == "SUCCESS":
            entry["action"] = action
            entry["duplicate_field"] = dup_field
            if action == "update":
                entry["message"] = "record updated"
        entries.append(entry)
    g.cost = _write_cost(state, len(data))
    return _respond(entries, 200)


# ----- reads


def _fields_param(required: bool) -> list[str] | Response | None:
    raw = request.args.get("fields")
    if not raw:
        if required and sim_state().config.require_fields_param:
            return crm_error(
                "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "fields"}
            )
        return None
    state = sim_state()
    names = [f.strip() for f in raw.split(",") if f.strip()]
    return [n for n in names if n.split(".")[0] in state.fields]


@bp.get("/<module>/<rid>")
@crm_api("crm.get")
def get_record(version: str, module: str, rid: str) -> Response:
    err = _module_error(module)
    if err is not None:
        return err
    fields = _fields_param(required=False)
    if isinstance(fields, Response):
        return fields
    state = sim_state()
    state.tick()
    with state.lock:
        record = state.find(module, rid)
        if record is None:
            if state.config.missing_record_mode == "invalid_data":
                return crm_error("INVALID_DATA", "the id given seems to be invalid", {"id": rid})
            g.code = "NO_CONTENT"
            return no_content()
        ims = request.headers.get("If-Modified-Since")
        if ims:
            try:
                if int(record.modified) <= parse_time(ims):
                    return Response(status=304)
            except ValueError:
                pass
        row = state.render(record, fields)
    g.code = "SUCCESS"
    return jsonify({"data": [row]})


def _encode_token(offset: int, sort_by: str, sort_order: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}|{sort_by}|{sort_order}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str, str] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset, sort_by, sort_order = raw.split("|")
        return int(offset), sort_by, sort_order
    except (ValueError, UnicodeDecodeError):
        return None


def _sorted_ids(state: SimState, module: str, sort_by: str, sort_order: str) -> list[int]:
    store = state.modules[module]
    if sort_by == "id":
        ids = store.ids
    elif sort_by == "Modified_Time":
        ids = sorted(store.ids, key=lambda i: (store.records[i].modified, i))
    elif sort_by == "Created_Time":
        ids = sorted(store.ids, key=lambda i: (store.records[i].created, i))
    else:
        ids = store.ids
    return list(reversed(ids)) if sort_order == "desc" else ids


def _int_arg(name: str, default: int) -> int | Response:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return crm_error("INVALID_DATA", "invalid data", {"param_name": name})
    if value < 1:
        return crm_error("INVALID_DATA", "invalid data", {"param_name": name})
    return value


@bp.get("/<module>")
@crm_api("crm.list")
def list_records(version: str, module: str) -> Response:
    err = _module_error(module)
    if err is not None:
        return err
    fields = _fields_param(required=True)
    if isinstance(fields, Response):
        return fields
    state = sim_state()
    state.tick()
    raw_ids = request.args.get("ids")
    if raw_ids:
        ids = [i.strip() for i in raw_ids.split(",") if i.strip()]
        if len(ids) > MAX_IDS:
            return crm_error("LIMIT_EXCEEDED", "limit exceeded", {"limit": str(MAX_IDS), "param_name": "ids"})
        with state.lock:
            rows = [state.render(r, fields) for r in (state.find(module, i) for i in ids) if r is not None]
        if not rows:
            g.code = "NO_CONTENT"
            return no_content()
        g.code = "SUCCESS"
        return jsonify(
            {
                "data": rows,
                "info": {"per_page": len(rows), "count": len(rows), "page": 1, "more_records": False},
            }
        )
    per_page = _int_arg("per_page", MAX_PER_PAGE)
    if isinstance(per_page, Response):
        return per_page
    per_page = min(per_page, MAX_PER_PAGE)
    page_token = request.args.get("page_token")
    sort_by = request.args.get("sort_by", "id")
    sort_order = request.args.get("sort_order", "asc" if sort_by == "id" else "desc")
    if page_token:
        decoded = _decode_token(page_token)
        if decoded is None:
            return crm_error("INVALID_DATA", "invalid data", {"param_name": "page_token"})
        offset, sort_by, sort_order = decoded
        page = offset // per_page + 1
    else:
        page_arg = _int_arg("page", 1)
        if isinstance(page_arg, Response):
            return page_arg
        page = page_arg
        offset = (page - 1) * per_page
        if page * per_page > DISCRETE_LIMIT:
            return crm_error(
                "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                "You can only get the first 2000 records without using page_token param",
                {"limit": DISCRETE_LIMIT},
            )
    with state.lock:
        ordered = _sorted_ids(state, module, sort_by, sort_order)
        chunk = ordered[offset : offset + per_page]
        more = offset + per_page < len(ordered)
        store = state.modules[module]
        rows = [state.render(store.records[i], fields) for i in chunk]
    if not rows:
        g.code = "NO_CONTENT"
        return no_content()
    g.code = "SUCCESS"
    info = {
        "per_page": per_page,
        "count": len(rows),
        "page": page,
        "sort_by": sort_by,
        "sort_order": sort_order,
        "more_records": more,
        "next_page_token": _encode_token(offset + per_page, sort_by, sort_order) if more else None,
        "previous_page_token": None,
        "page_token_expiry": state.fmt(state.now() + 86_400) if more else None,
    }
    return jsonify({"data": rows, "info": info})


# ----- search

CRITERION_RE = re.compile(r"\(\s*([A-Za-z0-9_.]+)\s*:\s*([a-z_]+)\s*:\s*((?:\\.|[^()\\])*)\)")


def _parse_criteria(text: str) -> list[tuple[str, str, str]] | None:
    """``(A:equals:x)and(B:starts_with:y)`` -> [(A, equals, x), ...]; only AND groups (OR -> None)."""
    text = text.strip()
    if text.startswith("((") and text.endswith("))"):
        text = text[1:-1]
    out = []
    pos = 0
    while pos < len(text):
        m = CRITERION_RE.match(text, pos)
        if not m:
            return None
        out.append((m.group(1), m.group(2), re.sub(r"\\(.)", r"\1", m.group(3))))
        pos = m.end()
        rest = text[pos:].lstrip()
        if not rest:
            break
        lowered = rest.lower()
        if lowered.startswith("and"):
            pos = len(text) - len(rest) + 3
            continue
        return None
    return out or None


def _matches(record: Record, crit: list[tuple[str, str, str]]) -> bool:
    for field, op, value in crit:
        current = record.get_path(field)
        text = "" if current is None else str(current).lower()
        want = value.lower()
        if op == "equals" and text != want:
            return False
        if op == "not_equal" and text == want:
            return False
        if op == "starts_with" and not text.startswith(want):
            return False
        if op == "in" and text not in [v.strip().lower() for v in value.split(",")]:
            return False
    return True


@bp.get("/<module>/search")
@crm_api("crm.search", heavy=True)
def search_records(version: str, module: str) -> Response:
    err = _module_error(module)
    if err is not None:
        return err
    state = sim_state()
    state.tick()
    args = request.args
    crit: list[tuple[str, str, str]] | None
    if args.get("criteria"):
        crit = _parse_criteria(args["criteria"])
        if crit is None or any(op not in ("equals", "not_equal", "starts_with", "in") for _, op, _ in crit):
            return crm_error("INVALID_QUERY", "invalid query formed", {"reason": "invalid criteria"})
        if len(crit) > 10:
            return crm_error("LIMIT_EXCEEDED", "limit exceeded", {"limit": 10, "param_name": "criteria"})
    elif args.get("email"):
        crit = [("Email", "equals", args["email"])]
    elif args.get("phone"):
        crit = [("Phone", "equals", args["phone"])]
    elif args.get("word"):
        crit = [("__word__", "word", args["word"])]
    else:
        return crm_error(
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            {"param_name": "criteria"},
        )
    per_page = _int_arg("per_page", MAX_PER_PAGE)
    page = _int_arg("page", 1)
    if isinstance(per_page, Response):
        return per_page
    if isinstance(page, Response):
        return page
    per_page = min(per_page, MAX_PER_PAGE)
    if page * per_page > DISCRETE_LIMIT:
        return crm_error(
            "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
            "You can only get the first 2000 records without using page_token param",
            {"limit": DISCRETE_LIMIT},
        )
    fields = _fields_param(required=False)
    if isinstance(fields, Response):
        return fields
    with state.lock:
        store = state.modules[module]
        email_crit = [c for c in crit if c[0] == "Email" and c[1] == "equals"]
        if crit[0][0] == "__word__":
            word = crit[0][2].lower()
            candidates = [
                r
                for r in (store.records[i] for i in store.ids)
                if any(
                    word in (str(r.get(f) or "").lower())
                    for f in ("First_Name", "Last_Name", "Email", "Phone", "Mobile")
                )
            ]
        elif email_crit:
            candidates = [r for r in store.by_email(email_crit[0][2]) if _matches(r, crit)]
        else:
            candidates = [r for r in (store.records[i] for i in store.ids) if _matches(r, crit)]
        candidates = candidates[:DISCRETE_LIMIT]
        offset = (page - 1) * per_page
        chunk = candidates[offset : offset + per_page]
        rows = [state.render(r, fields) for r in chunk]
    if not rows:
        g.code = "NO_CONTENT"
        return no_content()
    g.code = "SUCCESS"
    info = {
        "per_page": per_page,
        "count": len(rows),
        "page": page,
        "more_records": offset + per_page < len(candidates),
    }
    return jsonify({"data": rows, "info": info})


# ----- metadata


def field_metadata(state: SimState, module: str) -> list[dict[str, Any]]:
    restricted = state.faults.restricted_fields()
    api_profile = state.api_user["profile"]
    out = []
    for fdef in state.fields.values():
        api_perm = "read_only" if fdef.read_only or fdef.api_name in restricted else "read_write"
        entry: dict[str, Any] = {
            "api_name": fdef.api_name,
            "id": fdef.field_id,
            "field_label": fdef.label,
            "display_label": fdef.label,
            "data_type": fdef.data_type,
            "json_type": json_type(fdef.data_type),
            "custom_field": fdef.custom,
            "read_only": fdef.read_only,
            "field_read_only": fdef.read_only,
            "visible": True,
            "length": fdef.length,
            "system_mandatory": fdef.api_name == "Last_Name",
            "api_editable": api_perm == "read_write",
            "profiles": [
                {"permission_type": api_perm, "name": api_profile["name"], "id": api_profile["id"]},
                *(
                    [
                        {
                            "permission_type": "read_write" if not fdef.read_only else "read_only",
                            "name": "Standard",
                            "id": STANDARD_PROFILE_ID,
                        }
                    ]
                    if api_profile["id"] != STANDARD_PROFILE_ID
                    else []
                ),
            ],
        }
        if fdef.api_name == "Data_Processing_Basis":
            entry["pick_list_values"] = [{"display_value": v, "actual_value": v} for v in BASIS_VALUES]
        if fdef.api_name == "Data_Processing_Basis_Details":
            entry["consent_fields"] = [
                {
                    "api_name": k,
                    "data_type": t,
                    "api_editable": f"{fdef.api_name}.{k}" not in restricted
                    and k not in CONSENT_DETAIL_READ_ONLY,
                }
                for k, t in CONSENT_DETAIL_FIELDS.items()
            ]
        out.append(entry)
    return out


@bp.get("/settings/fields")
@crm_api("crm.fields")
def settings_fields(version: str) -> Response:
    module = request.args.get("module")
    if not module:
        return crm_error(
            "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "module"}
        )
    if module not in MODULES:
        return crm_error(
            "INVALID_MODULE", "the module name given seems to be invalid", {"param_name": "module"}
        )
    g.code = "SUCCESS"
    return jsonify({"fields": field_metadata(sim_state(), module)})


@bp.get("/users")
@crm_api("crm.users")
def users(version: str) -> Response:
    state = sim_state()
    kind = request.args.get("type", "AllUsers")
    chosen = [state.api_user] if kind == "CurrentUser" else list(state.users.values())
    g.code = "SUCCESS"
    return jsonify(
        {"users": chosen, "info": {"per_page": 200, "count": len(chosen), "page": 1, "more_records": False}}
    )


@bp.get("/org")
@crm_api("crm.org")
def org(version: str) -> Response:
    state = sim_state()
    cfg = state.config
    g.code = "SUCCESS"
    return jsonify(
        {
            "org": [
                {
                    "id": "5725767000000021001",
                    "zgid": "700000001",
                    "company_name": "Consent Desk Demo Org",
                    "domain_name": "org700000001",
                    "primary_email": state.api_user["email"],
                    "privacy_settings": True,
                    "time_zone": "Etc/UTC",
                    "currency": "EUR",
                    "license_details": {
                        "paid": cfg.edition != "free",
                        "paid_type": cfg.edition,
                        "users_license_purchased": cfg.users,
                    },
                }
            ]
        }
    )
