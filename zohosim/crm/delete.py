"""CRM record deletes, as Zoho's v8 spec describes ``deleteRecords`` and ``deleteRecord``.

``DELETE /<module>?ids=a,b`` (at most 100, else ``LIMIT_EXCEEDED``; none: ``REQUIRED_PARAM_MISSING``
``param_name: ids``) and ``DELETE /<module>/<id>``. One entry per id, in order: ``SUCCESS``
"record deleted" ``details.id``, or ``INVALID_DATA`` "record not deleted" ``details.id`` for an id
the module does not hold; HTTP 200 when every record went, 207 when some did, 400 when none did.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.crm.params import require_module
from zohosim.errors import ZohoError
from zohosim.guard import crm_api, sim_state

bp = Blueprint("delete", __name__)

MAX_IDS = 100


def _delete(module: str, ids: list[str]) -> Response:
    require_module(module)
    if not ids:
        raise ZohoError(
            "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "ids"}
        )
    if len(ids) > MAX_IDS:
        raise ZohoError(
            "LIMIT_EXCEEDED",
            f"Only {MAX_IDS} records can be deleted in a single call",
            {"limit": str(MAX_IDS), "param_name": "ids"},
        )
    state = sim_state()
    entries: list[dict[str, Any]] = []
    with state.lock:
        for rid in ids:
            if state.find(module, rid) is not None and state.delete_record(module, rid):
                entries.append(
                    {
                        "code": "SUCCESS",
                        "details": {"id": rid},
                        "message": "record deleted",
                        "status": "success",
                    }
                )
            else:
                entries.append(
                    {
                        "code": "INVALID_DATA",
                        "details": {"id": rid},
                        "message": "record not deleted",
                        "status": "error",
                    }
                )
    codes = [e["code"] for e in entries]
    g.code = codes[0] if len(set(codes)) == 1 else "MIXED"
    g.entry_codes = codes
    resp = jsonify({"data": entries})
    resp.status_code = 200 if set(codes) == {"SUCCESS"} else 207 if "SUCCESS" in codes else 400
    return resp


@bp.delete("/<module>")
@crm_api("crm.delete")
def delete_records(version: str, module: str) -> Response:
    raw = request.args.get("ids") or ""
    return _delete(module, [i.strip() for i in raw.split(",") if i.strip()])


@bp.delete("/<module>/<rid>")
@crm_api("crm.delete")
def delete_record(version: str, module: str, rid: str) -> Response:
    return _delete(module, [rid])
