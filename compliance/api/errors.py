"""Every API error has one shape: {"detail": "...", "errors": {"field": ["message"]}}.

That holds for 400, 401, 403, 404, 405, 409, 413, 415 and 429 (DRF's own exceptions and the
ledger's), and for 500: an unexpected exception is logged with its traceback and answered in
the same shape, saying nothing of its cause.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from compliance.services import ConsentForbidden, ConsentRejected, IdempotencyConflict, IdentityConflict

logger = logging.getLogger(__name__)


def _flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            name = (prefix.rstrip(".") or "body") if key == "non_field_errors" else f"{prefix}{key}"
            flat.update(_flatten(value, f"{name}."))
        return {k.rstrip("."): v for k, v in flat.items()}
    if isinstance(errors, list) and errors and all(isinstance(e, str) for e in errors):
        return {prefix.rstrip(".") or "body": [str(e) for e in errors]}
    if isinstance(errors, list):
        flat = {}
        for index, value in enumerate(errors):
            flat.update(_flatten(value, f"{prefix}{index}."))
        return flat
    return {prefix.rstrip(".") or "body": [str(errors)]}


def validation_body(errors: Any) -> dict[str, Any]:
    flat = _flatten(errors)
    first = next(iter(flat.items()), ("body", ["invalid"]))
    return {"detail": f"{first[0]}: {first[1][0]}", "errors": flat}


def rejection_body(exc: ConsentRejected) -> dict[str, Any]:
    return {"detail": f"{exc.field}: {exc.message}", "errors": {exc.field: [exc.message]}}


def conflict_body(exc: IdempotencyConflict) -> dict[str, Any]:
    return {
        "detail": str(exc),
        "errors": {"idempotency_key": ["Already used for different content."]},
        "event_id": exc.event.pk,
    }


def error_response(exc: Exception) -> tuple[int, dict[str, Any]]:
    """Status and body for the ledger's own errors (also used per item of a batch)."""
    if isinstance(exc, ConsentForbidden):
        return status.HTTP_403_FORBIDDEN, rejection_body(exc)
    if isinstance(exc, IdentityConflict):
        return status.HTTP_409_CONFLICT, rejection_body(exc)
    if isinstance(exc, ConsentRejected):
        return status.HTTP_400_BAD_REQUEST, rejection_body(exc)
    if isinstance(exc, IdempotencyConflict):
        return status.HTTP_409_CONFLICT, conflict_body(exc)
    raise TypeError(f"not a ledger error: {exc!r}")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ConsentRejected | IdempotencyConflict):
        code, body = error_response(exc)
        return Response(body, status=code)
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    if isinstance(exc, RequestDataTooBig):
        # Django's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE), met where something read request.body.
        return Response(
            {"detail": "The request body is too large.", "errors": {}},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        request = context.get("request")
        logger.error(
            "Internal error in the API: %s %s",
            getattr(request, "method", "?"),
            getattr(request, "path", "?"),
            exc_info=exc,
        )
        set_rollback()
        return Response(
            {"detail": "Internal error; it has been logged.", "errors": {}},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, ValidationError):
        response.data = validation_body(response.data)
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": {}}
    return response
