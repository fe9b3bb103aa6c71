"""An erased person's values masked in what the sync keeps as evidence: the Zoho call log (what was
sent), shared by the erasure's on-commit receiver (every call ever recorded) and the erasure's Zoho
job (the calls it made itself), so that no call row keeps an address or number after an erasure;
and the person's discrepancies (what was found and done), in the erasure's own transaction.

The on-commit masking holds the values in memory only: a crash right after the commit would leave
them. The daily sweep (`erased_calls_mask`) finds them again without them: it reads the addresses
and numbers the call log holds and masks those an erased person had (their digests,
`compliance.services.erased_identifiers`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import datetime
from urllib.parse import quote

from django.db.models import F, Q, Value
from django.db.models.functions import Replace

from compliance.services.erased_identifiers import erased_identifiers_match
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


# What may be an address or a number in a call's path or error (as the log filter finds them,
# config/logs.py; "@" also URL-encoded), and the rows that may hold one.
_ADDRESS = re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_NUMBER = re.compile(r"(?:\+|%2B)\d{7,15}")
_MAY_NAME = (
    Q(path__contains="@") | Q(error__contains="@") | Q(path__contains="%40") | Q(error__contains="%40")
)
_MAY_NAME |= Q(path__regex=r"(\+|%2B)[0-9]{7,15}") | Q(error__regex=r"(\+|%2B)[0-9]{7,15}")


def erased_calls_mask() -> int:
    """Mask, in every call's path and error, each address and number an erased person had; returns
    how many values were masked. Rows without "@" or "+digits" are not read."""
    found: set[str] = set()
    for path, error in ZohoCall.objects.filter(_MAY_NAME).values_list("path", "error").iterator():
        for text in (path, error):
            found.update(match.group(0) for match in _ADDRESS.finditer(text))
            found.update(match.group(0) for match in _NUMBER.finditer(text))
    erased = set()
    for value in found:
        plain = value.replace("%40", "@").replace("%2B", "+")
        if erased_identifiers_match(email=plain) if "@" in plain else erased_identifiers_match(phone=plain):
            erased.add(plain)
    if erased:
        calls_mask(values=erased)
    return len(erased)


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
