"""CRM search: ``GET /{module}/search`` by criteria, email, phone or word (zoho-api.md section 2)."""

from __future__ import annotations

import re

from flask import Blueprint, Response, request

from zohosim.crm.params import (
    DISCRETE_LIMIT,
    MAX_PER_PAGE,
    check_discrete_page,
    fields_param,
    positive_int_arg,
    require_module,
)
from zohosim.errors import ZohoError
from zohosim.guard import crm_api, rows_response, sim_state
from zohosim.state import Record

bp = Blueprint("search", __name__)

CRITERION_RE = re.compile(r"\(\s*([A-Za-z0-9_.]+)\s*:\s*([a-z_]+)\s*:\s*((?:\\.|[^()\\])*)\)")
OPERATORS = ("equals", "not_equal", "starts_with", "in")
MAX_CRITERIA = 10
WORD_FIELDS = ("First_Name", "Last_Name", "Email", "Phone", "Mobile")

Criteria = list[tuple[str, str, str]]


def _parse_criteria(text: str) -> Criteria | None:
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


def _criteria() -> Criteria:
    """The search asked for: ``criteria``, else ``email``, ``phone`` or ``word`` (a word search is
    ``[("__word__", "word", word)]``)."""
    args = request.args
    if args.get("criteria"):
        crit = _parse_criteria(args["criteria"])
        if crit is None or any(op not in OPERATORS for _, op, _ in crit):
            raise ZohoError("INVALID_QUERY", "invalid query formed", {"reason": "invalid criteria"})
        if len(crit) > MAX_CRITERIA:
            raise ZohoError(
                "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_CRITERIA, "param_name": "criteria"}
            )
        return crit
    if args.get("email"):
        return [("Email", "equals", args["email"])]
    if args.get("phone"):
        return [("Phone", "equals", args["phone"])]
    if args.get("word"):
        return [("__word__", "word", args["word"])]
    raise ZohoError(
        "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing", {"param_name": "criteria"}
    )


def _matches(record: Record, crit: Criteria) -> bool:
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
    require_module(module)
    state = sim_state()
    state.tick()
    crit = _criteria()
    per_page = positive_int_arg("per_page", MAX_PER_PAGE)
    page = positive_int_arg("page", 1)
    per_page = min(per_page, MAX_PER_PAGE)
    check_discrete_page(page, per_page)
    fields = fields_param(required=False)
    with state.lock:
        store = state.modules[module]
        email_crit = [c for c in crit if c[0] == "Email" and c[1] == "equals"]
        if crit[0][0] == "__word__":
            word = crit[0][2].lower()
            candidates = [
                r
                for r in (store.records[i] for i in store.ids)
                if any(word in (str(r.get(f) or "").lower()) for f in WORD_FIELDS)
            ]
        elif email_crit:
            candidates = [r for r in store.by_email(email_crit[0][2]) if _matches(r, crit)]
        else:
            candidates = [r for r in (store.records[i] for i in store.ids) if _matches(r, crit)]
        candidates = candidates[:DISCRETE_LIMIT]
        offset = (page - 1) * per_page
        chunk = candidates[offset : offset + per_page]
        rows = [state.render(r, fields) for r in chunk]
    info = {
        "per_page": per_page,
        "count": len(rows),
        "page": page,
        "more_records": offset + per_page < len(candidates),
    }
    return rows_response(rows, info)
