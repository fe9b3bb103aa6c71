"""An erased person's values masked in what the sync keeps as evidence: the Zoho call log (what was
sent), shared by the erasure's on-commit receiver (every call ever recorded) and the erasure's Zoho
job (the calls it made itself), so that no call row keeps an address or number after an erasure;
and the person's discrepancies (what was found and done), in the erasure's own transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import quote

from django.db.models import F, Q, Value
from django.db.models.functions import Replace

from sync.models import Discrepancy, ZohoCall

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


def _masked(text: str, values: list[str]) -> str:
    for value in values:
        text = text.replace(value, MASK)
    return text


def discrepancies_mask(*, contact_id: int, values: Iterable[str]) -> int:
    """Replace each value (an address or number, as JSON writes it too) in the contact's
    discrepancies, open or resolved, with `MASK`: what was expected and found, the evidence, the
    hint and the resolution stay, without the person. Returns how many rows changed."""
    forms = sorted({form for value in values if value for form in (value, json.dumps(value)[1:-1])}, key=len)
    forms.reverse()  # the longest first, so that no shorter form cuts into a longer one
    if not forms:
        return 0
    changed = 0
    for row in Discrepancy.objects.filter(contact_id=contact_id):
        before = (row.expected, row.actual, row.evidence, row.hint, row.resolution)
        for name in ("expected", "actual", "evidence"):
            value = getattr(row, name)
            if value is not None:
                setattr(row, name, json.loads(_masked(json.dumps(value, ensure_ascii=False), forms)))
        row.hint = _masked(row.hint, forms)
        row.resolution = _masked(row.resolution, forms)
        after = (row.expected, row.actual, row.evidence, row.hint, row.resolution)
        if after != before:
            # update(): "last seen" (updated_at) stays when Zoho last showed the problem.
            Discrepancy.objects.filter(pk=row.pk).update(
                **dict(zip(("expected", "actual", "evidence", "hint", "resolution"), after, strict=True))
            )
            changed += 1
    return changed
