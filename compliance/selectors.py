"""Reads for pages, the API and reports, with their joins chosen."""

from __future__ import annotations

from django.db.models import QuerySet

from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import ConsentEvent, ConsentState, Contact


def contact_find(*, email: str = "", phone: str = "", app_user_id: str = "") -> QuerySet[Contact]:
    """Contacts matching every identifier given. Raises ValidationError for a malformed one."""
    contacts = Contact.objects.order_by("id")
    if email:
        contacts = contacts.filter(email=normalise_email(email))
    if phone:
        contacts = contacts.filter(phone=normalise_phone(phone))
    if app_user_id:
        contacts = contacts.filter(app_user_id=app_user_id.strip())
    return contacts


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
