"""ZohoError: every refusal the simulator answers with, as Zoho words it (zoho-api.md section 2)."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

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
    "PAGE_RANGE_EXCEEDED": 400,
    "CANNOT_PROCESS": 400,
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


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


class ZohoError(Exception):
    """A refusal: the HTTP status and the JSON body Zoho sends for it.

    Raised anywhere below an API view; ``guard.api_call`` turns it into the response, and a CRM
    write turns a refusal of one record into that record's entry (``body``). By default the body is
    the CRM shape ``{code, details, message, status: "error"}`` with the status Zoho gives the code;
    Campaigns passes its own envelope as ``body`` (and HTTP 200, as Campaigns answers errors).
    """

    def __init__(
        self,
        code: str,
        message: str = "",
        details: dict[str, Any] | None = None,
        *,
        status: int | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.body = body if body is not None else error_body(code, message, details)
        self.status = status or HTTP_STATUS_BY_CODE.get(code, 400)

    def response(self) -> Response:
        g.code = self.code
        resp = jsonify(self.body)
        resp.status_code = self.status
        return resp
