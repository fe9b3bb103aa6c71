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
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from django.core.exceptions import ValidationError
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Replace

from compliance.erasure_models import ErasedIdentifier
from compliance.identifiers import normalise_email, normalise_phone
from compliance.services.erased_identifiers import erased_identifier_digests, suppression_secrets
from config.logs import EMAIL, PHONE
from sync.models import Discrepancy, ZohoCall

MASK = "[erased]"


def calls_mask(
    *, values: Iterable[str], since: datetime | None = None, until: datetime | None = None
) -> None:
    """Replace each value (plain and URL-quoted) in the path and error of the calls started
    ``since`` and up to ``until`` (no bound where None) with `MASK`: one UPDATE, so one pass over
    the log (it has no index a substring could use), however many values and forms."""
    # The longest first, so that no shorter form cuts into a longer one.
    forms = sorted(
        {form for value in values if value for form in (value, quote(value, safe=""), quote(value))},
        key=lambda form: (-len(form), form),
    )
    if not forms:
        return
    calls = ZohoCall.objects.all()
    if since is not None:
        calls = calls.filter(started_at__gte=since)
    if until is not None:
        calls = calls.filter(started_at__lte=until)
    naming = Q()
    path: Any = F("path")
    error: Any = F("error")
    for form in forms:
        naming |= Q(path__contains=form) | Q(error__contains=form)
        path = Replace(path, Value(form), Value(MASK))
        error = Replace(error, Value(form), Value(MASK))
    calls.filter(naming).update(path=path, error=error)


# The rows that may hold an address or a number ("@" also URL-encoded); in them, the log filter's
# patterns (config/logs.py) find each one.
_MAY_NAME = (
    Q(path__contains="@") | Q(error__contains="@") | Q(path__contains="%40") | Q(error__contains="%40")
)
_MAY_NAME |= Q(path__regex=r"(\+|%2B)[0-9]{7,15}") | Q(error__regex=r"(\+|%2B)[0-9]{7,15}")


def erased_calls_mask() -> int:
    """Mask, in the path and error of every call made up to a person's erasure, each address and
    number that person had; returns how many of the values found were an erased person's. Rows without "@" or "+digits"
    are not read. (A call made since may be for someone new with the same address: it stays.)

    The values found are looked up by their digests in chunks, not one query each, and those of
    people erased at the same time are masked in one pass."""
    found: set[str] = set()
    for path, error in ZohoCall.objects.filter(_MAY_NAME).values_list("path", "error").iterator():
        for text in (path, error):
            found.update(match.group(0) for match in EMAIL.finditer(text))
            found.update(match.group(0) for match in PHONE.finditer(text))
    secrets = suppression_secrets()
    digests_of: dict[str, list[str]] = {}
    for plain in sorted({value.replace("%40", "@").replace("%2B", "+") for value in found}):
        kind, normalise = (
            (ErasedIdentifier.Kind.EMAIL, normalise_email)
            if "@" in plain
            else (ErasedIdentifier.Kind.PHONE, normalise_phone)
        )
        try:
            normal = normalise(plain)
        except ValidationError:
            continue  # not an address or a number anyone had
        digests_of[plain] = erased_identifier_digests(kind, normal, secrets)
    erased_at: dict[str, datetime] = {}
    wanted = sorted({value for values in digests_of.values() for value in values})
    for start in range(0, len(wanted), _LOOKUP_CHUNK):
        erased_at.update(
            ErasedIdentifier.objects.filter(digest__in=wanted[start : start + _LOOKUP_CHUNK])
            .values("digest")
            .annotate(last=Max("erasure__erased_at"))
            .values_list("digest", "last")
        )
    by_erasure: dict[datetime, list[str]] = {}
    for plain, digests in digests_of.items():
        times = [when for value in digests if (when := erased_at.get(value))]
        if times:
            by_erasure.setdefault(max(times), []).append(plain)
    for until, values in sorted(by_erasure.items()):
        calls_mask(values=values, until=until)
    return sum(len(values) for values in by_erasure.values())


# How many digests one look-up asks about.
_LOOKUP_CHUNK = 5000


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
