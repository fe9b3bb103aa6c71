"""The one place that sends a request to Zoho.

It adds the ``Zoho-oauthtoken`` header and the timeout, writes the `ZohoCall`
row before the call and finishes it after (even when the call raises), maps
HTTP statuses and Zoho's codes to `sync.zoho.errors`, and, when Zoho refuses
the access token (CRM HTTP 401 INVALID_TOKEN, Campaigns code 1007), refreshes
the shared token once and retries once. Before and after each CRM call it
asks the `CallGate` it was handed, if any (the engine's quota, `sync/quota.py`;
the client package never imports it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Literal, Protocol

import httpx

from sync.zoho.auth import AccessToken, TokenManager
from sync.zoho.calllog import CallEnd, CallLog, CallStart, redact
from sync.zoho.campaigns_limits import CampaignsLimits, campaigns_method
from sync.zoho.config import ZohoConfig
from sync.zoho.errors import (
    ZohoAuthError,
    ZohoAuthRevoked,
    ZohoError,
    ZohoPermanentError,
    ZohoRateLimited,
    ZohoTokenExpired,
    ZohoTransientError,
)
from sync.zoho.locks import SharedSemaphore, SharedSlot

logger = logging.getLogger("sync.zoho")

Service = Literal["crm", "campaigns", "accounts"]
Host = Literal["api", "campaigns", "accounts"]

CREDITS_HEADER = "X-API-CREDITS-REMAINING"
# Campaigns error codes that mean "this method is locked for a while, retry later".
# Zoho documents 2101 "Please retry after sometime" for listunsubscribe; the code of
# the 500-calls-per-5-minutes lock is unverified, so messages are matched too.
CAMPAIGNS_RETRY_CODES = frozenset({"2101"})
CAMPAIGNS_RETRY_WORDS = ("retry after", "try again", "locked", "too many", "limit exceeded")
CAMPAIGNS_UNAUTHORIZED = "1007"
ACCOUNTS_THROTTLED_PREFIX = "you have made too many requests"


class CallGate(Protocol):
    """Asked before each CRM call, told Zoho's answer after it: a shared rate limit,
    a cool-down after a 429, a budget (`sync.quota.QuotaGate`)."""

    def before_call(self, operation: str) -> None:
        """Wait for room, or raise a `ZohoError` (the call is then not sent)."""
        ...

    def after_call(self, http_status: int | None, credits_remaining: int | None) -> None: ...


@dataclass(slots=True)
class ZohoResponse:
    status_code: int
    body: Any  # parsed JSON, or None (204, downloads)
    headers: httpx.Headers
    credits_remaining: int | None = None
    zoho_code: str = ""
    # A note for the call log when the call succeeded but some records did not.
    note: str = ""
    # The call log's id of the call that got this answer (`CallLog.call_id`).
    call_id: int | None = None


@dataclass(slots=True)
class Request:
    service: Service
    operation: str
    method: str
    host: Host
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    data: Mapping[str, Any] | None = None
    records: int = 0
    credits: int = 0
    # CRM calls whose error answers still carry one `data[]` entry per record.
    per_record: bool = False
    # Write a successful body here (streamed) instead of parsing it.
    sink: IO[bytes] | None = None
    # A "complex" call (COQL, an update of more than 10 records, a sorted or filtered read):
    # it takes one of the org's 10 shared slots for its duration.
    complex: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    # Campaigns codes that answer a paged read's page with no row (2203, 6302 "no contacts"):
    # an answer, not an error (the page is empty).
    empty_codes: frozenset[str] = frozenset()


def _credits_remaining(headers: httpx.Headers) -> int | None:
    raw = headers.get(CREDITS_HEADER)
    if raw is None:
        return None
    try:
        return int(raw.strip())
    except ValueError:
        return None


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _crm_error_fields(body: Any) -> tuple[str, str, Any]:
    """(code, message, details) of a CRM error body, in any of its shapes."""
    if not isinstance(body, dict):
        return "", "", {}
    entry = body
    if "code" not in body and isinstance(body.get("data"), list) and body["data"]:
        first = body["data"][0]
        entry = first if isinstance(first, dict) else {}
    code = entry.get("code", "")
    if not isinstance(code, str):  # legacy shape {"code": 429, "error": "TOO_MANY_REQUESTS", ...}
        code = str(entry.get("error") or code)
    message = str(entry.get("message") or entry.get("error_info") or "")
    return code, message, entry.get("details") or {}


def campaigns_code(body: Mapping[str, Any]) -> str:
    """Campaigns' code, spelt `code` or `Code`, as an int or a string."""
    for key in ("code", "Code", "CODE"):
        if key in body and body[key] is not None:
            return str(body[key]).strip()
    return ""


def _campaigns_field(body: Mapping[str, Any], name: str) -> str:
    for key in (name, name.capitalize(), name.upper()):
        if key in body and body[key] is not None:
            return str(body[key]).strip()
    return ""


class ZohoTransport:
    def __init__(
        self,
        config: ZohoConfig,
        http: httpx.Client,
        call_log: CallLog,
        tokens: TokenManager | None = None,
        gate: CallGate | None = None,
        complex_slots: SharedSemaphore | None = None,
        campaigns_limits: CampaignsLimits | None = None,
    ) -> None:
        self.config = config
        self.http = http
        self.call_log = call_log
        self.tokens = tokens if tokens is not None else TokenManager(config, self.mint_token)
        self.gate = gate
        self.complex_slots = complex_slots
        self.campaigns_limits = campaigns_limits

    # URLs --------------------------------------------------------------------

    def _base(self, host: Host, token: AccessToken | None) -> str:
        if host == "accounts":
            return self.config.accounts_url
        if host == "campaigns":
            return self.config.campaigns_url
        if self.config.api_domain:
            return self.config.api_domain
        if token is not None and token.api_domain:
            return token.api_domain.rstrip("/")
        raise ZohoAuthError("the token response named no api_domain and ZOHO_API_DOMAIN is not set")

    # Calls -------------------------------------------------------------------

    def call(self, request: Request) -> ZohoResponse:
        """Send an authenticated call; on a refused token refresh once and retry once."""
        token = self.tokens.get()
        try:
            return self._attempt(request, token, may_retry=True)
        except ZohoTokenExpired:
            logger.info("Zoho refused the access token for %s: refreshing once", request.operation)
            if request.sink is not None:
                request.sink.seek(0)
                request.sink.truncate()
            token = self.tokens.get(reject=token.value)
            return self._attempt(request, token, may_retry=False)

    def mint_token(self) -> AccessToken:
        """The refresh-token grant (``accounts.refresh``). Only `TokenManager` calls it."""
        request = Request(
            service="accounts",
            operation="accounts.refresh",
            method="POST",
            host="accounts",
            path="/oauth/v2/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": self.config.refresh_token,
                "client_id": self.config.client_id,
                "client_secret": self.config.client_secret,
            },
        )
        response = self._attempt(request, None, may_retry=False)
        body = response.body
        value = body.get("access_token")
        expires_in = float(body.get("expires_in") or 3600)
        api_domain = str(body.get("api_domain") or "")
        return AccessToken(str(value), api_domain, time.time() + expires_in)

    def _attempt(self, request: Request, token: AccessToken | None, *, may_retry: bool) -> ZohoResponse:
        base = self._base(request.host, token)
        url = f"{base}{request.path}"
        secrets = (*self.config.secrets, *((token.value,) if token else ()))
        # The quota counts CRM credits and rate only: Accounts and Campaigns have limits of their own.
        gate = self.gate if request.service == "crm" else None
        if gate is not None:
            gate.before_call(request.operation)
        limits = self.campaigns_limits if request.service == "campaigns" else None
        method = campaigns_method(request.path) if limits is not None else ""
        if limits is not None:
            limits.before_call(method)
        slot = self._complex_slot(request, gate)
        handle = self.call_log.start(
            CallStart(
                service=request.service,
                operation=request.operation,
                method=request.method,
                path=request.path,
                records=request.records,
                credits=request.credits,
            )
        )
        end = CallEnd(ok=False)
        try:
            response = self._send(request, url, token)
            end.http_status = response.status_code
            end.credits_remaining = _credits_remaining(response.headers)
            result = self._interpret(request, response, may_retry=may_retry)
            result.credits_remaining = end.credits_remaining
            result.call_id = self.call_log.call_id(handle)
            end.ok = True
            if limits is not None:
                limits.after_call(method, refused=False)
            end.zoho_code = result.zoho_code
            end.error = redact(result.note, secrets)
            return result
        except ZohoError as exc:
            end.zoho_code = exc.code or ""
            end.error = redact(str(exc), secrets)
            end.permanent = exc.permanent
            logger.warning("Zoho %s failed: %s", request.operation, end.error)
            if limits is not None and isinstance(exc, ZohoRateLimited):
                limits.after_call(method, refused=True)
            raise
        except BaseException as exc:
            end.error = redact(f"{type(exc).__name__}: {exc}", secrets)
            raise
        finally:
            if slot is not None:
                slot.release()
            self.call_log.finish(handle, end)
            if gate is not None:
                gate.after_call(end.http_status, end.credits_remaining)

    def _complex_slot(self, request: Request, gate: CallGate | None) -> SharedSlot | None:
        """One of the org's shared slots for a complex call, held until its answer; none free
        in time: the call is not sent and counts as rate limited (a task retries it later)."""
        if not request.complex or self.complex_slots is None:
            return None
        slot = self.complex_slots.acquire(timeout_s=self.config.complex_wait_s)
        if slot is None:
            if gate is not None:
                gate.after_call(None, None)
            raise ZohoRateLimited(
                f"{request.operation}: {self.complex_slots.limit} complex calls already in flight "
                f"for {self.config.complex_wait_s:g} s",
                code="complex_busy",
            )
        return slot

    def _send(self, request: Request, url: str, token: AccessToken | None) -> httpx.Response:
        headers = dict(request.headers)
        if token is not None:
            headers["Authorization"] = f"Zoho-oauthtoken {token.value}"
        kwargs: dict[str, Any] = {
            "params": request.params,
            "json": request.json,
            "data": request.data,
            "headers": headers,
            "timeout": self.config.timeout_s,
        }
        try:
            if request.sink is None:
                return self.http.request(request.method, url, **kwargs)
            with self.http.stream(request.method, url, **kwargs) as response:
                if response.status_code == 200:
                    for chunk in response.iter_bytes():
                        request.sink.write(chunk)
                    request.sink.flush()
                else:
                    response.read()
                return response
        except httpx.TimeoutException as exc:
            raise ZohoTransientError(
                f"{request.operation}: no answer within {self.config.timeout_s:g} s ({type(exc).__name__})",
                code="timeout",
            ) from exc
        except httpx.TransportError as exc:
            raise ZohoTransientError(
                f"{request.operation}: connection failed ({type(exc).__name__})", code="connection_error"
            ) from exc

    # Mapping answers to results and errors ------------------------------------

    def _interpret(self, request: Request, response: httpx.Response, *, may_retry: bool) -> ZohoResponse:
        if request.service == "accounts":
            return self._interpret_accounts(response)
        if request.service == "campaigns":
            return self._interpret_campaigns(request, response, may_retry=may_retry)
        return self._interpret_crm(request, response, may_retry=may_retry)

    def _interpret_accounts(self, response: httpx.Response) -> ZohoResponse:
        status = response.status_code
        body = _json(response)
        if status == 429 or (status >= 500):
            error_cls = ZohoRateLimited if status == 429 else ZohoTransientError
            raise error_cls(f"Zoho Accounts answered HTTP {status}", http_status=status)
        if not isinstance(body, dict):
            raise ZohoTransientError(
                f"Zoho Accounts answered HTTP {status} without a JSON object", http_status=status
            )
        error = str(body.get("error") or "")
        description = str(body.get("error_description") or "")
        if error == "invalid_code":
            raise ZohoAuthRevoked(
                "Zoho refused the refresh token (invalid_code): it was revoked or evicted; "
                "generate a new one and set ZOHO_REFRESH_TOKEN",
                http_status=status,
                code=error,
            )
        if error == "invalid_client":
            raise ZohoAuthError(
                "Zoho does not know this client (invalid_client): wrong ZOHO_CLIENT_ID / "
                f"ZOHO_CLIENT_SECRET, or wrong data centre (ZOHO_DC={self.config.dc}, "
                f"accounts host {self.config.accounts_url}): the client is registered in one DC only",
                http_status=status,
                code=error,
            )
        if description.lower().startswith(ACCOUNTS_THROTTLED_PREFIX) or error == "Access Denied":
            raise ZohoRateLimited(
                "Zoho Accounts refused another token mint (at most 10 per 10 minutes)",
                http_status=status,
                code=error or "too_many_requests",
            )
        if error:
            raise ZohoAuthError(
                f"Zoho Accounts refused the token refresh: {error} {description}".strip(),
                http_status=status,
                code=error,
            )
        if status != 200 or not body.get("access_token"):
            raise ZohoAuthError(
                f"Zoho Accounts answered HTTP {status} without an access_token", http_status=status
            )
        return ZohoResponse(status, body, response.headers)

    def _interpret_crm(self, request: Request, response: httpx.Response, *, may_retry: bool) -> ZohoResponse:
        status = response.status_code
        if request.sink is not None and status == 200:
            return ZohoResponse(status, None, response.headers)
        if status == 204:
            return ZohoResponse(status, None, response.headers, zoho_code="NO_CONTENT")
        body = _json(response)
        if (
            request.per_record
            and isinstance(body, dict)
            and isinstance(body.get("data"), list)
            and (status < 300 or status in (400, 403, 409, 412))
        ):
            return self._per_record_response(status, body, response.headers)
        if 200 <= status < 300:
            if body is None:
                raise ZohoTransientError(
                    f"Zoho CRM answered HTTP {status} with a body that is not JSON", http_status=status
                )
            code = body.get("code", "") if isinstance(body, dict) else ""
            return ZohoResponse(status, body, response.headers, zoho_code=str(code or ""))
        code, message, details = _crm_error_fields(body)
        text = f"Zoho CRM {request.operation}: {message or 'HTTP ' + str(status)}"
        fields: dict[str, Any] = {"http_status": status, "code": code or None, "details": details}
        if status == 401:
            # Production Zoho answers some invalid or expired tokens with AUTHENTICATION_FAILURE:
            # refresh once as for INVALID_TOKEN; refused again, it is permanent.
            if code in ("INVALID_TOKEN", "AUTHENTICATION_FAILURE") and may_retry:
                raise ZohoTokenExpired(text, **fields)
            if code == "OAUTH_SCOPE_MISMATCH":
                text += (
                    " (the refresh token lacks a scope this call needs: generate it again with every scope)"
                )
            if code == "INVALID_TOKEN":
                text += (
                    " (refused right after a refresh: a token from another data centre is refused "
                    f"like this; check ZOHO_DC={self.config.dc} and ZOHO_API_DOMAIN)"
                )
            raise ZohoAuthError(text, **fields)
        if status == 429 or code == "TOO_MANY_REQUESTS":
            raise ZohoRateLimited(text, **fields)
        if status >= 500 or status == 408:
            raise ZohoTransientError(text, **fields)
        if code in ("RECORD_LOCKED",):
            raise ZohoTransientError(text, **fields)
        raise ZohoPermanentError(text, **fields)

    @staticmethod
    def _per_record_response(status: int, body: dict[str, Any], headers: httpx.Headers) -> ZohoResponse:
        codes = [str(e.get("code", "")) for e in body["data"] if isinstance(e, dict)]
        failed = [c for c in codes if c != "SUCCESS"]
        note = ""
        if failed:
            summary = ", ".join(f"{c} x{failed.count(c)}" for c in sorted(set(failed)))
            note = f"{len(failed)} of {len(codes)} records failed: {summary}"
        zoho_code = failed[0] if failed else (codes[0] if codes else "")
        return ZohoResponse(status, body, headers, zoho_code=zoho_code, note=note)

    def _interpret_campaigns(
        self, request: Request, response: httpx.Response, *, may_retry: bool
    ) -> ZohoResponse:
        status = response.status_code
        body = _json(response)
        if status == 429:
            raise ZohoRateLimited(f"Zoho Campaigns {request.operation}: HTTP 429", http_status=status)
        if status >= 500:
            raise ZohoTransientError(f"Zoho Campaigns {request.operation}: HTTP {status}", http_status=status)
        if not isinstance(body, dict):
            if status == 401 and may_retry:
                raise ZohoTokenExpired(f"Zoho Campaigns {request.operation}: HTTP 401", http_status=401)
            error_cls: type[ZohoError] = ZohoTransientError if status == 200 else ZohoPermanentError
            raise error_cls(
                f"Zoho Campaigns {request.operation}: HTTP {status} without a JSON object", http_status=status
            )
        code = campaigns_code(body)
        state = _campaigns_field(body, "status").lower()
        message = _campaigns_field(body, "message")
        if status < 400 and state != "error" and code in ("", "0", "200"):
            return ZohoResponse(status, body, response.headers, zoho_code=code)
        if status < 400 and code in request.empty_codes:
            return ZohoResponse(status, body, response.headers, zoho_code=code)
        text = f"Zoho Campaigns {request.operation}: {message or 'error'}"
        fields: dict[str, Any] = {"http_status": status, "code": code or None, "details": body}
        if code == CAMPAIGNS_UNAUTHORIZED or status == 401:
            if may_retry:
                raise ZohoTokenExpired(text, **fields)
            raise ZohoAuthError(text + " (refused right after a token refresh)", **fields)
        lowered = message.lower()
        if code in CAMPAIGNS_RETRY_CODES or any(word in lowered for word in CAMPAIGNS_RETRY_WORDS):
            raise ZohoRateLimited(text, **fields)
        raise ZohoPermanentError(text, **fields)


def make_http_client(config: ZohoConfig, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """The default `httpx.Client`: the configured timeout, no redirects, our user agent."""
    return httpx.Client(
        timeout=config.timeout_s,
        follow_redirects=False,
        headers={"User-Agent": "consent-desk/zoho-client"},
        transport=transport,
    )
