"""CRM record reads: one record by id, and the list GET (by ``ids``, by page or by ``page_token``)."""

from __future__ import annotations

import base64

from flask import Blueprint, Response, request

from zohosim.crm.convert import get_converted
from zohosim.crm.params import (
    MAX_PER_PAGE,
    check_discrete_page,
    fields_param,
    positive_int_arg,
    require_module,
)
from zohosim.errors import ZohoError
from zohosim.fields import parse_time
from zohosim.guard import crm_api, heavy_read, no_content, rows_response, sim_state
from zohosim.state import SimState

bp = Blueprint("read", __name__)

MAX_IDS = 100


@bp.get("/<module>/<rid>")
@crm_api("crm.get")
def get_record(version: str, module: str, rid: str) -> Response:
    require_module(module)
    fields = fields_param(required=False)
    state = sim_state()
    state.tick()
    with state.lock:
        record = state.find(module, rid)
        if record is None and module == "Leads":
            converted = get_converted(rid)  # a converted Lead, asked with converted=true
            if converted is not None:
                return converted
        if record is None:
            if state.config.missing_record_mode == "invalid_data":
                raise ZohoError("INVALID_DATA", "the id given seems to be invalid", {"id": rid})
            return no_content()
        ims = request.headers.get("If-Modified-Since")
        if ims:
            try:
                if int(record.modified) <= parse_time(ims):
                    return Response(status=304)
            except ValueError:
                pass
        row = state.render(record, fields)
    return rows_response([row])


def _encode_token(offset: int, sort_by: str, sort_order: str) -> str:
    return base64.urlsafe_b64encode(f"{offset}|{sort_by}|{sort_order}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[int, str, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        offset, sort_by, sort_order = raw.split("|")
        return int(offset), sort_by, sort_order
    except (ValueError, UnicodeDecodeError):
        raise ZohoError("INVALID_DATA", "invalid data", {"param_name": "page_token"}) from None


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


def _by_ids(state: SimState, module: str, raw_ids: str, fields: list[str] | None) -> Response:
    ids = [i.strip() for i in raw_ids.split(",") if i.strip()]
    if len(ids) > MAX_IDS:
        raise ZohoError("LIMIT_EXCEEDED", "limit exceeded", {"limit": str(MAX_IDS), "param_name": "ids"})
    with state.lock:
        rows = [state.render(r, fields) for r in (state.find(module, i) for i in ids) if r is not None]
    return rows_response(rows, {"per_page": len(rows), "count": len(rows), "page": 1, "more_records": False})


@bp.get("/<module>")
@crm_api("crm.list", heavy=heavy_read)
def list_records(version: str, module: str) -> Response:
    require_module(module)
    fields = fields_param(required=True)
    state = sim_state()
    state.tick()
    raw_ids = request.args.get("ids")
    if raw_ids:
        return _by_ids(state, module, raw_ids, fields)
    per_page = min(positive_int_arg("per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page_token = request.args.get("page_token")
    sort_by = request.args.get("sort_by", "id")
    sort_order = request.args.get("sort_order", "asc" if sort_by == "id" else "desc")
    if page_token:
        offset, sort_by, sort_order = _decode_token(page_token)
        page = offset // per_page + 1
    else:
        page = positive_int_arg("page", 1)
        offset = (page - 1) * per_page
        check_discrete_page(page, per_page)
    with state.lock:
        ordered = _sorted_ids(state, module, sort_by, sort_order)
        chunk = ordered[offset : offset + per_page]
        more = offset + per_page < len(ordered)
        store = state.modules[module]
        rows = [state.render(store.records[i], fields) for i in chunk]
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
    return rows_response(rows, info)
