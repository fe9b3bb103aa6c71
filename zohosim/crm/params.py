"""Request parameters the CRM record endpoints share: the module, ``fields``, paging (zoho-api.md section 2)."""

from __future__ import annotations

from flask import request

from zohosim.errors import ZohoError
from zohosim.guard import sim_state
from zohosim.state import MODULES

MAX_PER_PAGE = 200
DISCRETE_LIMIT = 2000


def require_module(module: str) -> None:
    if module not in MODULES:
        raise ZohoError(
            "INVALID_MODULE", "the module name given seems to be invalid", {"resource_path_index": 0}
        )


def fields_param(*, required: bool) -> list[str] | None:
    """The known names in ``fields`` (unknown ones are dropped, as Zoho does); None: all fields."""
    raw = request.args.get("fields")
    if not raw:
        if required and sim_state().config.require_fields_param:
            raise ZohoError(
                "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "fields"}
            )
        return None
    state = sim_state()
    names = [f.strip() for f in raw.split(",") if f.strip()]
    return [n for n in names if n.split(".")[0] in state.fields]


def positive_int_arg(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ZohoError("INVALID_DATA", "invalid data", {"param_name": name})
    return value


def check_discrete_page(page: int, per_page: int) -> None:
    """Page-based paging stops at 2,000 records; beyond that Zoho wants ``page_token``."""
    if page * per_page > DISCRETE_LIMIT:
        raise ZohoError(
            "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
            "You can only get the first 2000 records without using page_token param",
            {"limit": DISCRETE_LIMIT},
        )
