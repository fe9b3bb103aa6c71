"""CRM metadata: field definitions (``settings/fields``), users and the org."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.errors import ZohoError
from zohosim.fields import BASIS_VALUES, CONSENT_DETAIL_FIELDS, CONSENT_DETAIL_READ_ONLY, json_type
from zohosim.guard import crm_api, sim_state
from zohosim.state import MODULES, STANDARD_PROFILE_ID, SimState

bp = Blueprint("metadata", __name__)


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
        raise ZohoError(
            "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "module"}
        )
    if module not in MODULES:
        raise ZohoError(
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
