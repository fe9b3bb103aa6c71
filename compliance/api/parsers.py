"""The API's one parser: JSON, at most API_MAX_BODY_BYTES, and never a 500 on hostile JSON."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser
from rest_framework.renderers import JSONRenderer
from rest_framework.settings import api_settings
from rest_framework.utils import json

# Deeper than any honest request (evidence may nest 10 levels, inside an event inside a
# batch) and far enough below Python's recursion limit that nothing downstream that walks
# the data recursively (DRF's fields, json.dumps, the hash) can overflow the stack. A body
# nested deeper is refused whole; an item nested deeper than the evidence limit fails alone.
MAX_BODY_DEPTH = 64


class BodyTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether lists and objects nest deeper than `limit` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class LimitedJSONParser(BaseParser):
    """DRF's JSON parser, reading at most API_MAX_BODY_BYTES (more answers 413) and refusing
    bodies nested deeper than MAX_BODY_DEPTH, or too deep for the JSON decoder, with 400.

    Not a subclass of DRF's JSONParser on purpose: DRF hands that one `request.body`, read
    whole first (and refused past DATA_UPLOAD_MAX_MEMORY_SIZE with an exception of Django's);
    this one gets the stream and stops reading one byte past the limit.
    """

    media_type = "application/json"
    renderer_class = JSONRenderer
    strict = api_settings.STRICT_JSON

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        too_large = BodyTooLarge(f"The request body may hold at most {limit} bytes.")
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isdigit() and int(declared) > limit:
            raise too_large
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise too_large
        encoding = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"The body is not valid {encoding} text.") from exc
        try:
            data = json.loads(text, parse_constant=json.strict_constant if self.strict else None)
        except RecursionError:
            raise ParseError(f"JSON nested deeper than {MAX_BODY_DEPTH} levels.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        if json_depth_exceeds(data, MAX_BODY_DEPTH):
            raise ParseError(f"JSON nested deeper than {MAX_BODY_DEPTH} levels.")
        return data
