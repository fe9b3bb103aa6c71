"""Reads for the history pages (contact search and detail), with their joins chosen."""

from __future__ import annotations

import contextlib
import sys

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import Contact, Suppression

SEARCH_MIN_LENGTH = 2


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
    with contextlib.suppress(ValidationError):
        condition |= Q(email=normalise_email(query))
    has_digit = any(char.isdigit() for char in query)
    if has_digit:
        with contextlib.suppress(ValidationError):
            condition |= Q(phone=normalise_phone(query))
    if not has_digit and "@" not in query:
        names = Q()
        for word in query.split():
            names &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
        condition |= names
    return Contact.objects.filter(condition).order_by("last_name", "first_name", "id")


def _email_begins_with(prefix: str) -> Q:
    """Emails that begin with `prefix`: the range [prefix, prefix with its last character + 1)."""
    if ord(prefix[-1]) == sys.maxunicode:
        return Q(email__startswith=prefix)
    following = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return Q(email__gte=prefix, email__lt=following, email__startswith=prefix)


def contact_suppressions(*, contact: Contact) -> QuerySet[Suppression]:
    """Reasons not to mail that are not consent, newest first; lifted ones included."""
    return Suppression.objects.filter(contact=contact).order_by("-created_at", "-id")
