"""CRM metadata: field definitions (``settings/fields``), users and the org."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.crm.params import MAX_PER_PAGE, positive_int_arg
from zohosim.errors import ZohoError
from zohosim.fields import BASIS_VALUES, CONSENT_DETAIL_FIELDS, CONSENT_DETAIL_READ_ONLY, json_type
from zohosim.guard import crm_api, no_content, sim_state
from zohosim.state import MODULES, STANDARD_PROFILE_ID, SimState

bp = Blueprint("metadata", __name__)

CONSENTS = "Consents"


def _operation_type(editable: bool) -> dict[str, bool]:
    return {
        "web_update": editable,
        "api_create": editable,
        "web_create": editable,
        "api_update": editable,
    }


def _picklist(values: list[str] | tuple[str, ...]) -> list[dict[str, str]]:
    return [{"display_value": v, "actual_value": v, "id": str(i)} for i, v in enumerate(values, 1)]


def field_metadata(state: SimState, module: str) -> list[dict[str, Any]]:
    """Field metadata as Zoho serves it for the API user: ``read_only`` is for this user (a
    field its profile may not edit), ``field_read_only`` for everyone (system fields); no
    ``api_editable`` key (Zoho has none). The consent object's own keys: module ``Consents``."""
    if module == CONSENTS:
        return consent_metadata(state)
    restricted = state.faults.restricted_fields()
    api_profile = state.api_user["profile"]
    out = []
    for fdef in state.fields.values():
        user_read_only = fdef.read_only or fdef.api_name in restricted
        api_perm = "read_only" if user_read_only else "read_write"
        entry: dict[str, Any] = {
            "api_name": fdef.api_name,
            "id": fdef.field_id,
            "field_label": fdef.label,
            "display_label": fdef.label,
            "data_type": fdef.data_type,
            "json_type": json_type(fdef.data_type),
            "custom_field": fdef.custom,
            "read_only": user_read_only,
            "field_read_only": fdef.read_only,
            "operation_type": _operation_type(not fdef.read_only),
            "visible": True,
            "length": fdef.length,
            "system_mandatory": fdef.api_name == "Last_Name",
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
            entry["pick_list_values"] = _picklist(BASIS_VALUES)
        elif fdef.picklist:
            entry["pick_list_values"] = _picklist(fdef.picklist)
        out.append(entry)
    return out


def consent_metadata(state: SimState) -> list[dict[str, Any]]:
    """The consent object's keys (module ``Consents``), each with its own permissions and picklists."""
    restricted = state.faults.restricted_fields()
    out = []
    for n, (key, dtype) in enumerate(CONSENT_DETAIL_FIELDS.items(), 1):
        system = key in CONSENT_DETAIL_READ_ONLY
        user_read_only = system or f"Data_Processing_Basis_Details.{key}" in restricted
        entry: dict[str, Any] = {
            "api_name": key,
            "id": f"5725767000000{900 + n:06d}",
            "field_label": key.replace("_", " "),
            "data_type": dtype,
            "json_type": json_type(dtype),
            "read_only": user_read_only,
            "field_read_only": system,
            "operation_type": _operation_type(not system),
            "visible": True,
        }
        if key == "Data_Processing_Basis":
            entry["pick_list_values"] = _picklist(state.config.consent_basis_values)
        if key == "Consent_Through":
            entry["pick_list_values"] = _picklist(state.config.consent_through_values)
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
    known = module in MODULES or (module == CONSENTS and sim_state().config.consent_metadata)
    if not known:
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
    # Pages of at most 200 (per_page), as every v8 list.
    page = positive_int_arg("page", 1)
    per_page = positive_int_arg("per_page", MAX_PER_PAGE)
    if per_page > MAX_PER_PAGE:
        raise ZohoError("INVALID_DATA", "invalid data", {"param_name": "per_page"})
    start = (page - 1) * per_page
    rows = chosen[start : start + per_page]
    if not rows:
        return no_content()
    g.code = "SUCCESS"
    more = start + per_page < len(chosen)
    return jsonify(
        {
            "users": rows,
            "info": {"per_page": per_page, "count": len(rows), "page": page, "more_records": more},
        }
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
