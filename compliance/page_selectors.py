"""Reads for the history pages (contact search and detail), with their joins chosen."""

from __future__ import annotations

import contextlib

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import Contact, Suppression

SEARCH_MIN_LENGTH = 2


def contact_search(*, query: str) -> QuerySet[Contact]:
    """Contacts whose email, phone or app user id is `query`, or whose name contains every word of it.

    Identifiers match in their normal form (so " Anna@Example.COM " and "+49 151 1234 5678" find
    the stored ones); an email also matches by its beginning. Too short a query finds nobody.
    """
    query = query.strip()
    if len(query) < SEARCH_MIN_LENGTH:
        return Contact.objects.none()
    condition = Q(app_user_id=query) | Q(zoho_id=query) | Q(email__istartswith=query)
    with contextlib.suppress(ValidationError):
        condition |= Q(email=normalise_email(query))
    if any(char.isdigit() for char in query):
        with contextlib.suppress(ValidationError):
            condition |= Q(phone=normalise_phone(query))
    words = query.split()
    if words:
        names = Q()
        for word in words:
            names &= Q(first_name__icontains=word) | Q(last_name__icontains=word)
        condition |= names
    return Contact.objects.filter(condition).order_by("last_name", "first_name", "id")


def contact_suppressions(*, contact: Contact) -> QuerySet[Suppression]:
    """Reasons not to mail that are not consent, newest first; lifted ones included."""
    return Suppression.objects.filter(contact=contact).order_by("-created_at", "-id")
