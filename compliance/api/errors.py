"""Every API error has one shape: {"detail": "...", "errors": {"field": ["message"]}}."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from compliance.services import ConsentForbidden, ConsentRejected, IdempotencyConflict


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

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError):
        response.data = validation_body(response.data)
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"detail": str(response.data["detail"]), "errors": {}}
    return response
