"""Reads for pages, the API and reports, with their joins chosen."""

from __future__ import annotations

import contextlib
import sys
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import BooleanField, Case, CharField, Prefetch, Q, QuerySet, Value, When

from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import (
    AccessLog,
    AccessLogContact,
    ConsentEvent,
    ConsentState,
    Contact,
    IdentityEvent,
    Suppression,
)

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
    return list(
        IdentityEvent.objects.filter(email=address)
        .exclude(contact__email=address)
        .order_by("contact_id")
        .values_list("contact_id", flat=True)
        .distinct()[:FORMER_LIMIT]
    )


def identity_history(*, contact: Contact) -> QuerySet[IdentityEvent]:
    """The contact's identity events, newest first, with the other contact of a merge."""
    return IdentityEvent.objects.filter(contact=contact).select_related("other_contact").order_by("-version")


def contact_states(*, contact: Contact) -> QuerySet[ConsentState]:
    return (
        ConsentState.objects.filter(contact=contact, version__gt=0)
        .select_related("purpose", "event", "event__policy_version")
        .order_by("purpose__code")
    )


def event_history(*, contact: Contact | None = None) -> QuerySet[ConsentEvent]:
    events = ConsentEvent.objects.select_related("purpose", "policy_version", "contact")
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
