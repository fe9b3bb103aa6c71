"""Reads for pages, the API and reports, with their joins chosen."""

from __future__ import annotations

import contextlib
import difflib
import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import BooleanField, Case, CharField, Prefetch, Q, QuerySet, Value, When
from django.utils.dateparse import parse_datetime

from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import (
    AccessLog,
    AccessLogContact,
    ConsentEvent,
    ConsentState,
    Contact,
    IdentityEvent,
    PolicyVersion,
    Suppression,
)
from compliance.services.identity import identity_former_holders
from compliance.tallies import optin_counts

SEARCH_MIN_LENGTH = 2


# A former email finds at most this many contacts (an address may pass from person to person).
FORMER_LIMIT = 50


def contact_find(*, email: str = "", phone: str = "", app_user_id: str = "") -> QuerySet[Contact]:
    """Contacts matching every identifier given. Raises ValidationError for a malformed one.

    An email also finds the contacts that had it before (their identity history holds it),
    annotated `former=True`; the others `former=False`.
    """
    contacts = Contact.objects.order_by("id")
    if email:
        address = normalise_email(email)
        former_ids = _former_holders(address)
        contacts = contacts.filter(Q(email=address) | Q(pk__in=former_ids)).annotate(
            former=Case(
                When(pk__in=former_ids, then=Value(True)), default=Value(False), output_field=BooleanField()
            )
        )
    else:
        contacts = contacts.annotate(former=Value(False, output_field=BooleanField()))
    if phone:
        contacts = contacts.filter(phone=normalise_phone(phone))
    if app_user_id:
        contacts = contacts.filter(app_user_id=app_user_id.strip())
    return contacts


def _former_holders(address: str) -> list[int]:
    """Ids of the contacts whose identity history holds the email `address` and that hold
    another now. (A list, not a subquery: ORed with the email index, PostgreSQL reads both
    indexes instead of every contact.)"""
    return identity_former_holders(address, limit=FORMER_LIMIT)


def identity_history(*, contact: Contact) -> QuerySet[IdentityEvent]:
    """The contact's identity events, newest first, with the other contact of a merge."""
    return (
        IdentityEvent.objects.filter(contact=contact)
        .select_related("other_contact", "personal")
        .order_by("-version")
    )


def contact_states(*, contact: Contact) -> QuerySet[ConsentState]:
    return (
        ConsentState.objects.filter(contact=contact, version__gt=0)
        .select_related("purpose", "event", "event__policy_version")
        .order_by("purpose__code")
    )


def event_history(*, contact: Contact | None = None) -> QuerySet[ConsentEvent]:
    """Newest first. The personal values kept apart are fetched for the events of the page only
    (a second query): joined, every event of a long history looked its side row up before the
    sort (9 of a 2,000-event contact's page's 12 ms)."""
    events = ConsentEvent.objects.select_related("purpose", "policy_version", "contact").prefetch_related(
        "personal"
    )
    if contact is not None:
        events = events.filter(contact=contact)
    return events.order_by("-recorded_at", "-id")


def contact_search(*, query: str) -> QuerySet[Contact]:
    """Contacts whose email, phone, app user id or Zoho id is `query`, whose email begins with it,
    or whose name contains every word of it.

    Identifiers match in their normal form (so " Anna@Example.COM " and "+49 151 1234 5678" find
    the stored ones). A query holding an "@" or a digit is an identifier, never a name. Too short
    a query finds nobody.

    Every identifier condition is one an index answers, so that PostgreSQL combines index scans
    instead of reading every contact: stored emails are in their normal (lower-case) form, so
    "begins with" is a range of the email index (the LIKE beside it only restates it). Name words
    are found through trigram indexes of the upper-cased names on PostgreSQL (migration
    compliance/0005); see docs/benchmarks.md, "Pages at 10,000,000 events".
    """
    query = query.strip()
    if len(query) < SEARCH_MIN_LENGTH:
        return Contact.objects.none()
    condition = Q(app_user_id=query) | Q(zoho_id=query) | _email_begins_with(query.lower())
    former: Any = Value(None, output_field=CharField())
    with contextlib.suppress(ValidationError):
        address = normalise_email(query)
        condition |= Q(email=address)
        former_ids = _former_holders(address)
        if former_ids:
            # Found by an email they had before: marked so (`former_email`) on the page.
            condition |= Q(pk__in=former_ids)
            former = Case(When(pk__in=former_ids, then=Value(address)), default=former)
    has_digit = any(char.isdigit() for char in query)
    if has_digit:
        with contextlib.suppress(ValidationError):
            condition |= Q(phone=normalise_phone(query))
    if not has_digit and "@" not in query:
        names = Q()
        for word in query.split():
            names &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
        condition |= names
    return (
        Contact.objects.filter(condition)
        .annotate(former_email=former)
        .order_by("last_name", "first_name", "id")
    )


def _email_begins_with(prefix: str) -> Q:
    """Emails that begin with `prefix`: the range [prefix, prefix with its last character + 1)."""
    if ord(prefix[-1]) == sys.maxunicode:
        return Q(email__startswith=prefix)
    following = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return Q(email__gte=prefix, email__lt=following, email__startswith=prefix)


def contact_suppressions(*, contact: Contact) -> QuerySet[Suppression]:
    """Reasons not to mail that are not consent, newest first; lifted ones included."""
    return Suppression.objects.filter(contact=contact).order_by("-created_at", "-id")


def access_log_contact_ids_attach(entries: list[AccessLog]) -> None:
    """Set each entry's `contact_id_list` (its contacts' ids, ascending) from one query of id pairs:
    an export of entries that each name thousands of contacts (exports' own entries) would
    otherwise make a model object per pair (540,000 of them, 5 s, for one week of exports)."""
    ids: dict[int, list[int]] = {entry.pk: [] for entry in entries}
    pairs = (
        AccessLogContact.objects.filter(entry_id__in=list(ids))
        .order_by("entry_id", "contact_id")
        .values_list("entry_id", "contact_id")
    )
    for entry_id, contact_id in pairs.iterator(chunk_size=10_000):
        ids[entry_id].append(contact_id)
    for entry in entries:
        entry.contact_id_list = ids[entry.pk]  # type: ignore[attr-defined]


# Contacts named per entry on the access log's page; the rest are counted ("and 17,533 more"), and
# listed whole in its exports. An export's own entry names every contact it held.
ACCESS_LOG_CONTACTS_SHOWN = 10


def access_log_shown(entries: QuerySet[AccessLog]) -> QuerySet[AccessLog]:
    """`entries` for the page: each with its first ACCESS_LOG_CONTACTS_SHOWN contacts
    (`contacts_shown`), read by one windowed query, not all of them (a page of fifty export
    entries named 50,949 contacts: 1.6 s to read and link at 10,000,000 events)."""
    first = AccessLogContact.objects.order_by("contact_id")[:ACCESS_LOG_CONTACTS_SHOWN]
    return entries.prefetch_related(None).prefetch_related(
        Prefetch("contacts", queryset=first, to_attr="contacts_shown")
    )


def access_log_entries(
    *,
    kind: str = "",
    username: str = "",
    contact_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    query_hash: str = "",
) -> QuerySet[AccessLog]:
    """The access log, newest first, with the contact ids of each entry; every filter optional."""
    entries = AccessLog.objects.prefetch_related(
        Prefetch("contacts", queryset=AccessLogContact.objects.order_by("contact_id"))
    )
    if kind:
        entries = entries.filter(kind=kind)
    if username:
        entries = entries.filter(username=username)
    if contact_id is not None:
        entries = entries.filter(contacts__contact_id=contact_id)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    if query_hash:
        entries = entries.filter(query_hash=query_hash)
    return entries.order_by("-created_at", "-id")


@dataclass(frozen=True)
class KeysetPage:
    """One page of a table too large to count or to skip through: its rows, and the cursors of the
    pages either side ("" where there is none)."""

    rows: list[Any]
    previous_cursor: str
    next_cursor: str


def access_log_page(
    entries: QuerySet[AccessLog], *, after: str = "", before: str = "", size: int, oldest_first: bool = False
) -> KeysetPage:
    """A page of `entries` (filtered, any order) in (created_at, id) order, newest first unless
    `oldest_first`: the first page, the page after the row `after` names, or before `before`.

    Keyset pagination: each page is a range of compliance_accesslog_newest (created_at, id),
    so a page deep in the log costs what the first one does, and nothing counts the rows. A
    cursor is "<created_at ISO>~<id>"; a malformed one reads as none (the first page).
    """
    sign = "" if oldest_first else "-"
    order = [f"{sign}created_at", f"{sign}id"]
    backwards = bool(_cursor(before)) and not _cursor(after)
    cursor = _cursor(after) or _cursor(before)
    if cursor is not None:
        at, id_ = cursor
        # Past the cursor in the reading direction: "later in the order" for `after`, earlier for `before`.
        further = oldest_first != backwards
        if further:
            entries = entries.filter(Q(created_at__gte=at) & (Q(created_at__gt=at) | Q(id__gt=id_)))
        else:
            entries = entries.filter(Q(created_at__lte=at) & (Q(created_at__lt=at) | Q(id__lt=id_)))
    if backwards:
        order = [name[1:] if name.startswith("-") else f"-{name}" for name in order]
    rows = list(entries.order_by(*order)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    has_previous = (more if backwards else cursor is not None) and bool(rows)
    has_next = (cursor is not None if backwards else more) and bool(rows)
    first, last = (rows[0], rows[-1]) if rows else (None, None)
    # In reading order: `before` the first row is the previous page, `after` the last the next.
    return KeysetPage(
        rows=rows,
        previous_cursor=_cursor_of(first) if has_previous else "",
        next_cursor=_cursor_of(last) if has_next else "",
    )


def _cursor_of(entry: AccessLog | None) -> str:
    return f"{entry.created_at.isoformat()}~{entry.pk}" if entry is not None else ""


def _cursor(value: str) -> tuple[datetime, int] | None:
    at, _, id_ = value.rpartition("~")
    try:
        moment = parse_datetime(at)
    except ValueError:
        return None
    if moment is None or moment.tzinfo is None or not id_.isdigit():
        return None
    return moment, int(id_)


def policy_versions() -> QuerySet[PolicyVersion]:
    """Every published policy version, the newest in effect first."""
    return PolicyVersion.objects.filter(published_at__isnull=False).order_by("-effective_at", "-id")


def policy_version_consent_counts() -> dict[int, int]:
    """How many current opt-ins cite each policy version: {policy version id: count}.

    The counts beat keeps (`OptInCount`, `compliance.tallies`) plus the moves of the events past
    its mark: a few rows, whatever the number of current opt-ins (counting them from
    `ConsentState` read millions of index entries at 10,000,000 events). The same figures as
    ``ConsentState`` opt-ins per ``policy_version``.
    """
    counts: dict[int, int] = {}
    for (_purpose, policy, _legacy), n in optin_counts().items():
        if policy:
            counts[policy] = counts.get(policy, 0) + n
    return {policy: n for policy, n in counts.items() if n}


@dataclass(frozen=True)
class DiffLine:
    """A line of the difference between two texts. kind: same, added, removed, or gap (lines
    left out between two hunks, `text` empty). Line numbers are 1-based, None where absent."""

    kind: str
    text: str
    old_number: int | None
    new_number: int | None


def policy_version_diff(*, old: PolicyVersion, new: PolicyVersion, context: int = 3) -> list[DiffLine]:
    """The lines that differ between two versions' texts (difflib), with `context` lines around
    each change. A version published as a URL only compares as that one line."""
    before, after = _policy_lines(old), _policy_lines(new)
    lines: list[DiffLine] = []
    if before == after:
        return lines
    matcher = difflib.SequenceMatcher(a=before, b=after, autojunk=False)
    for number, group in enumerate(matcher.get_grouped_opcodes(context)):
        if number or group[0][1] > 0:
            lines.append(DiffLine("gap", "", None, None))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                lines += [
                    DiffLine("same", before[i], i + 1, j1 + offset + 1)
                    for offset, i in enumerate(range(i1, i2))
                ]
                continue
            lines += [DiffLine("removed", before[i], i + 1, None) for i in range(i1, i2)]
            lines += [DiffLine("added", after[j], None, j + 1) for j in range(j1, j2)]
    return lines


def _policy_lines(policy: PolicyVersion) -> list[str]:
    return policy.text.splitlines() if policy.text else [f"(published as a link) {policy.url}"]
