"""The per-call pipeline shared by CRM and Bulk endpoints: auth, faults, concurrency, credits, headers."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, g, jsonify, make_response, request

from zohosim.auth import authenticate
from zohosim.quota import TOO_MANY_REQUESTS_MESSAGE
from zohosim.state import SimState

F = TypeVar("F", bound=Callable[..., Any])

HTTP_STATUS_BY_CODE = {
    "SUCCESS": 200,
    "INVALID_DATA": 400,
    "MANDATORY_NOT_FOUND": 400,
    "DUPLICATE_DATA": 400,
    "INVALID_MODULE": 400,
    "LIMIT_EXCEEDED": 400,
    "REQUIRED_PARAM_MISSING": 400,
    "SYNTAX_ERROR": 400,
    "INVALID_QUERY": 400,
    "DISCRETE_PAGINATION_LIMIT_EXCEEDED": 400,
    "INVALID_URL_PATTERN": 404,
    "RESOURCE_NOT_FOUND": 404,
    "AUTHENTICATION_FAILURE": 401,
    "INVALID_TOKEN": 401,
    "OAUTH_SCOPE_MISMATCH": 401,
    "NO_PERMISSION": 403,
    "ALREADY_MODIFIED": 412,
    "TOO_MANY_REQUESTS": 429,
    "INTERNAL_ERROR": 500,
}


def sim_state() -> SimState:
    state: SimState = current_app.extensions["zohosim"]
    return state


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


def crm_error(
    code: str, message: str, details: dict[str, Any] | None = None, status: int | None = None
) -> Response:
    g.code = code
    resp = jsonify(error_body(code, message, details))
    resp.status_code = status or HTTP_STATUS_BY_CODE.get(code, 400)
    return resp


def invalid_token() -> Response:
    return crm_error("INVALID_TOKEN", "invalid oauth token")


def too_many_requests(reason: str) -> Response:
    sim_state().quota.rejected[reason] += 1
    return crm_error("TOO_MANY_REQUESTS", TOO_MANY_REQUESTS_MESSAGE)


def no_content() -> Response:
    resp = make_response(b"", 204)
    resp.headers.pop("Content-Type", None)
    return resp


def crm_api(op: str, *, heavy: bool = False) -> Callable[[F], F]:
    """Wrap a CRM/Bulk view: auth, faults, concurrency caps, credits and the credits header."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            state = sim_state()
            g.op = op
            g.cost = 1
            g.charged = 0
            faults = state.faults
            if faults.pick("wrong_dc", op) is not None:
                return invalid_token()
            token = authenticate(state, request.headers.get("Authorization"))
            if isinstance(token, Response):
                return token
            if faults.pick("expire_tokens", op) is not None:
                with state.lock:
                    state.tokens.pop(token, None)
                return invalid_token()
            if faults.pick("rate_limit", op) is not None:
                return too_many_requests("fault")
            if not state.quota.acquire(heavy):
                return too_many_requests("concurrency")
            try:
                if not state.quota.can_spend(1):
                    return too_many_requests("credits")
                slow = faults.pick("slow", op)
                if slow is not None:
                    time.sleep(float(slow.get("delay_s", 1.0)))
                if faults.pick("server_error", op) is not None:
                    return crm_error("INTERNAL_ERROR", "Internal Server Error")
                resp = make_response(view(*args, **kwargs))
                state.quota.calls_by_op[op] += 1
                if resp.status_code not in (401, 429) and resp.status_code < 500:
                    cost = int(g.get("cost", 1))
                    state.quota.charge(op, cost)
                    g.charged = cost
                header = state.quota.header_value()
                if header is not None:
                    resp.headers["X-API-CREDITS-REMAINING"] = header
                return resp
            finally:
                state.quota.release(heavy)

        return wrapper  # type: ignore[return-value]

    return decorate
