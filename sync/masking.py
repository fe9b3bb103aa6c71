"""An erased person's values masked in the Zoho call log, which stays as evidence of what was sent.

Shared by the erasure's on-commit receiver (every call ever recorded) and the erasure's Zoho job
(the calls it made itself), so that no call row keeps an address or number after an erasure.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from urllib.parse import quote

from django.db.models import F, Q, Value
from django.db.models.functions import Replace

from sync.models import ZohoCall

MASK = "[erased]"


def calls_mask(*, values: Iterable[str], since: datetime | None = None) -> None:
    """Replace each value (plain and URL-quoted) in the path and error of the calls started
    ``since`` (all calls when None) with `MASK`."""
    calls = ZohoCall.objects.all() if since is None else ZohoCall.objects.filter(started_at__gte=since)
    for value in set(values):
        for form in {value, quote(value, safe=""), quote(value)}:
            calls.filter(Q(path__contains=form) | Q(error__contains=form)).update(
                path=Replace(F("path"), Value(form), Value(MASK)),
                error=Replace(F("error"), Value(form), Value(MASK)),
            )
