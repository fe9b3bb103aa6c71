"""Lead conversion: ``POST /crm/v8/Leads/{id}/actions/convert`` (zoho/crm-oas v8.0 convert_lead.json).

The Lead becomes a Contact (a new one, or the existing one named in ``Contacts``), with the
Lead's fields carried over (the standard conversion mapping: the same API names). The
converted Lead leaves the Leads module: reads by id answer 204, list reads, search, COQL and
Bulk Read no longer find it, and an update of it answers per record ``INVALID_DATA`` for its
id. ``GET /Leads/{id}?converted=true`` still finds it, with ``$converted: true`` and
``$converted_detail`` naming the Contact (how a client learns where its Lead went).
Converting it again: ``ID_ALREADY_CONVERTED``. It costs 5 credits (zoho-api.md section 4);
Zoho counts it among the sub-concurrency calls.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.errors import ZohoError
from zohosim.guard import crm_api, rows_response, sim_state
from zohosim.state import SimState

bp = Blueprint("convert", __name__)

CONVERT_CREDITS = 5
# Fields a conversion never copies (the Contact keeps its own system fields).
NOT_CARRIED = frozenset({"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By"})


def converted_lead(state: SimState, rid: str) -> dict[str, Any] | None:
    """A converted Lead as ``GET /Leads/{id}?converted=true`` shows it, or None."""
    try:
        return state.converted_leads.get(int(rid))
    except ValueError:
        return None


def _carry(state: SimState, lead: dict[str, Any], contact_id: str, overwrite: bool) -> None:
    record = state.find("Contacts", contact_id)
    assert record is not None
    changes: dict[str, Any] = {}
    for name, value in lead.items():
        if name in NOT_CARRIED or name.startswith("$") or value is None:
            continue
        if overwrite or record.get(name) in (None, "", False):
            changes[name] = dict(value) if isinstance(value, dict) else value
    consent = changes.get("Data_Processing_Basis_Details")
    if isinstance(consent, dict):
        # The Contact gets a consent record of its own (merged into the existing one, if any).
        changes["Data_Processing_Basis_Details"] = {k: v for k, v in consent.items() if k != "id"}
    state.apply_changes("Contacts", record, changes, user_id=state.api_user_id, source="convert")


@bp.post("/Leads/<rid>/actions/convert")
@crm_api("crm.convert", heavy=True)
def convert_lead(version: str, rid: str) -> Response:
    state = sim_state()
    g.cost = CONVERT_CREDITS
    body = request.get_json(force=True, silent=True)  # Zoho reads JSON whatever the Content-Type
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != 1 or not isinstance(data[0], dict):
        raise ZohoError(
            "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "data", "json_path": "$.data"}
        )
    options = data[0]
    with state.lock:
        if converted_lead(state, rid) is not None:
            raise ZohoError("ID_ALREADY_CONVERTED", "id already converted", {"resource_path_index": 1})
        lead = state.find("Leads", rid)
        if lead is None:
            raise ZohoError("INVALID_DATA", "invalid data", {"resource_path_index": 1})
        existing = options.get("Contacts")
        existing_id = existing.get("id") if isinstance(existing, dict) else existing
        if existing_id is not None and state.find("Contacts", str(existing_id)) is None:
            raise ZohoError(
                "INVALID_DATA", "invalid data", {"api_name": "Contacts", "json_path": "$.data[0].Contacts"}
            )
        values = state.render(lead)
        contact_id = (
            str(existing_id)
            if existing_id is not None
            else state.add_record(
                "Contacts", _user_id=state.api_user_id, Last_Name=values.get("Last_Name") or "-"
            )
        )
        _carry(state, values, contact_id, overwrite=existing_id is None or options.get("overwrite") is True)
        state.modules["Leads"].remove(lead.id)
        state.converted_leads[lead.id] = {
            **values,
            "$converted": True,
            "$converted_detail": {
                "convert_date": state.fmt(state.now()),
                "converted_by": state.api_user_id,
                "contact": contact_id,
                "account": None,
                "deal": None,
            },
        }
        state.notifier.changed("Leads", str(lead.id), ["$converted"])
    g.code = "SUCCESS"
    return jsonify(
        {
            "data": [
                {
                    "code": "SUCCESS",
                    "message": "The record has been converted successfully",
                    "status": "success",
                    "details": {"Contacts": {"id": contact_id}, "Deals": None, "Accounts": None},
                }
            ]
        }
    )


def get_converted(rid: str) -> Response | None:
    """``GET /Leads/{id}?converted=true|both``: the converted Lead, or None (not converted)."""
    if request.args.get("converted") not in ("true", "both"):
        return None
    state = sim_state()
    with state.lock:
        lead = converted_lead(state, rid)
    return rows_response([dict(lead)]) if lead is not None else None
