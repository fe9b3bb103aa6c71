"""The per-call pipeline shared by the CRM, Bulk and Campaigns endpoints: auth, faults, limits, credits."""

from __future__ import annotations

import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from typing import Any, TypeVar

from flask import Response, current_app, g, jsonify, make_response, request

from zohosim.auth import check_token, token_from_header
from zohosim.errors import ZohoError
from zohosim.quota import TOO_MANY_REQUESTS_MESSAGE
from zohosim.state import SimState

F = TypeVar("F", bound=Callable[..., Any])


def sim_state() -> SimState:
    state: SimState = current_app.extensions["zohosim"]
    return state


def too_many_requests(reason: str) -> ZohoError:
    """The 429 to raise; counts the refusal under ``reason`` in /_sim/stats."""
    sim_state().quota.rejected[reason] += 1
    return ZohoError("TOO_MANY_REQUESTS", TOO_MANY_REQUESTS_MESSAGE)


def no_content() -> Response:
    g.code = "NO_CONTENT"
    resp = make_response(b"", 204)
    resp.headers.pop("Content-Type", None)
    return resp


def rows_response(rows: list[dict[str, Any]], info: dict[str, Any] | None = None) -> Response:
    """``{"data": rows, "info": info}``, or 204 with no body when nothing matched (as Zoho answers)."""
    if not rows:
        return no_content()
    g.code = "SUCCESS"
    return jsonify({"data": rows} if info is None else {"data": rows, "info": info})


class Api(ABC):
    """How one API answers the refusals of the shared pipeline, and the checks of its own around them."""

    def __init__(self, op: str) -> None:
        self.op = op

    def unauthenticated(self) -> ZohoError:
        """No usable ``Authorization: Zoho-oauthtoken`` header."""
        return self.invalid_token()

    @abstractmethod
    def invalid_token(self) -> ZohoError: ...

    @abstractmethod
    def rate_limited(self) -> ZohoError: ...

    @abstractmethod
    def server_error(self) -> ZohoError: ...

    def scope(self) -> str | None:
        """The OAuth scope the call needs (None: not checked)."""
        return None

    def throttle(self, state: SimState) -> None:
        """Limits checked before the rate-limit fault (Campaigns' per-method lock)."""
        return None

    def slot(self, state: SimState) -> AbstractContextManager[None]:
        """Held from after the rate-limit fault until the response is finished (CRM concurrency)."""
        return nullcontext()

    def answered(self, state: SimState, resp: Response) -> None:
        """After the view: what an admitted call costs."""
        return None


def _admit(state: SimState, api: Api, held: ExitStack) -> None:
    """Raise the refusal for a call the pipeline turns away; otherwise enter the API's slot in ``held``.

    The order is part of the behaviour: each fault rolls the seeded random generator only when reached.
    """
    op = api.op
    faults = state.faults
    if faults.pick("wrong_dc", op) is not None:
        raise api.invalid_token()
    token = token_from_header(request.headers.get("Authorization"))
    if token is None:
        raise api.unauthenticated()
    if not check_token(state, token):
        raise api.invalid_token()
    scope = api.scope()
    if scope is not None and scope in faults.missing_scopes():
        raise ZohoError("OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL")
    if faults.pick("expire_tokens", op) is not None:
        with state.lock:
            state.tokens.pop(token, None)
        raise api.invalid_token()
    api.throttle(state)
    if faults.pick("rate_limit", op) is not None:
        raise api.rate_limited()
    held.enter_context(api.slot(state))
    slow = faults.pick("slow", op)
    if slow is not None:
        time.sleep(float(slow.get("delay_s", 1.0)))
    if faults.pick("server_error", op) is not None:
        raise api.server_error()


def api_call(api: Api) -> Callable[[F], F]:
    """Wrap an API view in the shared pipeline. The one place a raised ZohoError becomes a response:
    a refusal by the pipeline costs nothing; one by the view is an answered call like any other."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            state = sim_state()
            g.op = api.op
            g.cost = 1
            g.charged = 0
            with ExitStack() as held:
                admitted = False
                try:
                    _admit(state, api, held)
                    admitted = True
                    answer = view(*args, **kwargs)
                except ZohoError as exc:
                    answer = exc.response()
                resp = make_response(answer)
                if admitted:
                    state.quota.calls_by_op[api.op] += 1
                    api.answered(state, resp)
                return resp

        return wrapper  # type: ignore[return-value]

    return decorate


# The scope each CRM operation needs (zoho-api.md sections 1 and 11).
SCOPES = {
    "crm.coql": "ZohoCRM.coql.READ",
    "crm.fields": "ZohoCRM.settings.fields.READ",
    "crm.users": "ZohoCRM.users.READ",
    "crm.org": "ZohoCRM.org.READ",
    "crm.watch": "ZohoCRM.notifications.ALL",
}
Heavy = bool | Callable[[], bool]


def _body_records() -> int:
    body = request.get_json(force=True, silent=True)
    data = body.get("data") if isinstance(body, dict) else None
    return len(data) if isinstance(data, list) else 0


def heavy_write() -> bool:
    """Insert/update/upsert of more than 10 records is a "complex" call (zoho-api.md section 11)."""
    return _body_records() > 10


def heavy_read() -> bool:
    """A record read sorted or by custom view is a "complex" call."""
    return bool(request.args.get("sort_by") or request.args.get("cvid"))


class CrmApi(Api):
    """CRM and Bulk: 401/429/500 in the CRM error shape; concurrency caps, credits and their header."""

    def __init__(self, op: str, heavy: Heavy) -> None:
        super().__init__(op)
        self.heavy = heavy

    def scope(self) -> str | None:
        if self.op.startswith("bulk."):
            return "ZohoCRM.bulk.ALL"
        return SCOPES.get(self.op, "ZohoCRM.modules.ALL")

    def is_heavy(self) -> bool:
        return self.heavy() if callable(self.heavy) else bool(self.heavy)

    def unauthenticated(self) -> ZohoError:
        return ZohoError("AUTHENTICATION_FAILURE", "Authentication failed")

    def invalid_token(self) -> ZohoError:
        if sim_state().config.invalid_token_code == "AUTHENTICATION_FAILURE":
            return ZohoError("AUTHENTICATION_FAILURE", "Authentication failed")
        return ZohoError("INVALID_TOKEN", "invalid oauth token")

    def rate_limited(self) -> ZohoError:
        return too_many_requests("fault")

    def server_error(self) -> ZohoError:
        return ZohoError("INTERNAL_ERROR", "Internal Server Error")

    @contextmanager
    def slot(self, state: SimState) -> Iterator[None]:
        heavy = self.is_heavy()
        if not state.quota.acquire(heavy):
            raise too_many_requests("concurrency")
        try:
            if not state.quota.can_spend(1):
                raise too_many_requests("credits")
            yield
        finally:
            state.quota.release(heavy)

    def answered(self, state: SimState, resp: Response) -> None:
        if resp.status_code not in (401, 429) and resp.status_code < 500:
            cost = int(g.get("cost", 1))
            state.quota.charge(self.op, cost)
            g.charged = cost
        header = state.quota.header_value()
        if header is not None:
            resp.headers["X-API-CREDITS-REMAINING"] = header


def crm_api(op: str, *, heavy: Heavy = False) -> Callable[[F], F]:
    """Wrap a CRM/Bulk view: auth, faults, concurrency caps (``heavy``: the sub-concurrency too), credits."""
    return api_call(CrmApi(op, heavy))
