"""Who a request is about: the contact its identifiers name, found, made or filled in.

The rule that picks the contact (`contact_choose`) and the one that says what to fill in
or change (`contact_changes`) are pure functions: `contact_resolve` applies them to what the
database holds, and the batch path (`consent_batch._ContactIndex`) to the contacts of its chunk.

Identifiers are never overwritten silently: a new contact's identifiers are its first identity
event, a missing identifier filled in is one more, and a request whose identifiers conflict
with the contact's is refused (`IdentityConflict`, 409) unless it says `update_identity` and the
caller holds the identity:write right; then the change is an identity event too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from hashlib import blake2b

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from compliance import chain
from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import Contact, IdentityEvent, Source
from compliance.services.erased_identifiers import erased_suppressions_add
from compliance.services.errors import ConsentForbidden, ConsentRejected, IdentityConflict
from compliance.services.identity import (
    IdentityContext,
    identity_append,
    identity_event_next,
    identity_events_save,
)


@dataclass(frozen=True)
class ContactIdentity:
    email: str | None = None
    phone: str | None = None
    app_user_id: str | None = None
    zoho_id: str | None = None
    first_name: str = ""
    last_name: str = ""
    # The caller means to change the contact's identifiers to these (needs identity:write).
    update_identity: bool = False


# Each of these names one person at most; a phone number may be shared.
STRONG_IDENTIFIERS = ("app_user_id", "email", "zoho_id")
IDENTIFIERS = (*STRONG_IDENTIFIERS, "phone")
CONTACT_FIELDS = ("email", "phone", "app_user_id", "zoho_id", "first_name", "last_name")
# contact_resolve considers at most this many matching contacts.
RESOLVE_LIMIT = 10


def _clean_identifier(field_name: str, value: str | None, normalise: Callable[[str], str]) -> str | None:
    if value is None or value == "":
        return None
    try:
        return normalise(value)
    except ValidationError as exc:
        raise ConsentRejected(f"contact.{field_name}", exc.messages[0]) from exc


def identity_normalise(identity: ContactIdentity) -> ContactIdentity:
    """The identity in normal form; raises ConsentRejected for a malformed or missing identifier."""
    result = ContactIdentity(
        email=_clean_identifier("email", identity.email, normalise_email),
        phone=_clean_identifier("phone", identity.phone, normalise_phone),
        app_user_id=(identity.app_user_id or "").strip() or None,
        zoho_id=(identity.zoho_id or "").strip() or None,
        first_name=identity.first_name.strip(),
        last_name=identity.last_name.strip(),
        update_identity=identity.update_identity,
    )
    if not (result.email or result.phone or result.app_user_id or result.zoho_id):
        raise ConsentRejected("contact", "Give at least one of email, phone, app_user_id or zoho_id.")
    return result


def contact_choose(*, found: Sequence[Contact], identity: ContactIdentity) -> Contact | None:
    """The contact a normalised identity names among `found` (the contacts sharing any of its
    identifiers), or None when it names nobody yet.

    Identifiers that point at two different people are refused rather than guessed at
    (IdentityConflict naming the identifier that points at a second contact).
    """
    strong: list[Contact] = []
    for name in STRONG_IDENTIFIERS:
        value = getattr(identity, name)
        for contact in found:
            if not value or getattr(contact, name) != value or any(contact is seen for seen in strong):
                continue
            if strong:
                first = next(
                    n
                    for n in STRONG_IDENTIFIERS
                    if getattr(identity, n) and getattr(identity, n) == getattr(strong[0], n)
                )
                raise IdentityConflict(
                    f"contact.{name}",
                    f"This {name} belongs to another contact than this {first}; correct the identifiers "
                    "or ask an admin to merge the two contacts.",
                )
            strong.append(contact)
    if strong:
        return strong[0]
    if len(found) > 1:
        raise ConsentRejected(
            "contact.phone", "This phone number belongs to several contacts; add email or app_user_id."
        )
    return found[0] if found else None


def contact_changes(
    *, contact: Contact, identity: ContactIdentity, may_update: bool = False
) -> tuple[dict[str, str], str]:
    """The fields a normalised identity fills in or changes on the contact it names, and the
    kind of identity event that records them.

    A field the contact holds another value in is a conflict: IdentityConflict naming the
    first such field, unless the identity says update_identity and `may_update` (the caller
    holds identity:write), and ConsentForbidden when it says so without the right.
    """
    changes = {}
    overwritten = []
    for name in CONTACT_FIELDS:
        value = getattr(identity, name)
        held = getattr(contact, name)
        if value and held != value:
            changes[name] = value
            if held:
                overwritten.append(name)
    if not overwritten:
        return changes, IdentityEvent.Kind.FILLED_IN
    name = overwritten[0]
    if not identity.update_identity:
        raise IdentityConflict(
            f"contact.{name}",
            f"The contact these identifiers name has another {name}; identifiers are never overwritten. "
            'To record the change, send "update_identity": true (needs the identity:write right).',
        )
    if not may_update:
        raise ConsentForbidden(
            "update_identity", f"Changing the contact's {name} needs the identity:write right."
        )
    return changes, IdentityEvent.Kind.UPDATED


def contact_new(identity: ContactIdentity) -> Contact:
    """An unsaved contact for a normalised identity that names nobody yet; its identity chain
    will hold one event, the first identifiers."""
    return Contact(**{name: getattr(identity, name) for name in CONTACT_FIELDS}, identity_version=1)


def contact_resolve(
    *, identity: ContactIdentity, context: IdentityContext | None = None, savepoint: bool = True
) -> Contact:
    """Find the one contact these identifiers name, creating it if none does.

    Identifiers that point at two different people are refused rather than
    guessed at. Missing identifiers and names are filled in on the contact;
    conflicting ones are refused unless the identity says update_identity and
    the caller may (see contact_changes). Every change, and a new contact's first
    identifiers, is an identity event recorded with `context`.

    A new contact is inserted under a savepoint of its own, so that a concurrent request
    creating the same person is found again instead of failing the caller's transaction. A
    caller that retries its whole transaction on IntegrityError anyway (`consent_ingest`'s
    fast path) passes ``savepoint=False`` and saves the two round trips.
    """
    return _resolve(
        identity_normalise(identity), context or IdentityContext(), attempts=3, savepoint=savepoint
    )


def contacts_holding(identifiers: dict[str, set[str]]) -> QuerySet[Contact]:
    """The contacts holding any of these identifier values (by identifier name)."""
    condition = Q()
    for name, values in identifiers.items():
        if values:
            condition |= Q(**{f"{name}__in": values})
    return Contact.objects.filter(condition) if condition else Contact.objects.none()


def identifiers_unseen(wanted: dict[str, set[str]], found: list[Contact]) -> dict[str, set[str]]:
    """The wanted identifier values that none of the contacts found holds."""
    return {name: values - {getattr(contact, name) for contact in found} for name, values in wanted.items()}


# The first key of the advisory locks on identifier values (the second: the value's hash). The
# two-key form is a key space of its own: no one-key lock (sync/outbox.py) can meet these.
_IDENTIFIER_LOCK_CLASS = 0x4944_454E


def identifiers_lock(identifiers: dict[str, set[str]]) -> bool:
    """On PostgreSQL, lock these identifier values until the transaction ends (an advisory lock
    each, taken in one order by every writer, so two cannot wait for each other here); True when
    any was locked. A writer locks the identifiers nobody had when it read, before it gives them
    to a new contact or fills them in, then reads again. Without it, two concurrent batch chunks
    giving one new address both plan their whole chunk, one meets the other's row in the unique
    index, and its work is rolled back and done again (bench/ingest.py's concurrent batches: a
    third of the chunks); two writers giving one new phone number (not unique) to a new person
    would each create a contact. A value's hash shared by another only makes one wait for the other.

    A batch chunk holds at most one lock per identifier of its items (400 for 100 items, all new
    people with four identifiers each), in PostgreSQL's shared lock table (docs/operations.md says
    how large it must be)."""
    if connection.vendor != "postgresql":
        return False  # SQLite runs one writer at a time
    keys = {
        int.from_bytes(blake2b(f"{name}:{value}".encode(), digest_size=4).digest(), "big", signed=True)
        for name, values in identifiers.items()
        for value in values
    }
    if not keys:
        return False
    with connection.cursor() as cursor:
        # A function scan gives the array's elements in order: the locks are taken in key order.
        cursor.execute(
            "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int4[]) AS k",
            [_IDENTIFIER_LOCK_CLASS, sorted(keys)],
        )
    return True


def erased_refusal(contact: Contact) -> str:
    """Why nothing more is recorded for an erased contact (found again by the Zoho id it keeps)."""
    return f"Contact {contact.pk} was erased; it records no more events."


def _create(contact: Contact, context: IdentityContext) -> None:
    """Insert a new contact and the first event of its identity chain."""
    contact.save(force_insert=True)
    # An erased person's address or number: held by "do not contact".
    erased_suppressions_add([contact], source=Source.SYSTEM)
    event = identity_event_next(
        contact,
        kind=IdentityEvent.Kind.CREATED,
        version=1,
        prev_hash=chain.GENESIS_HASH,
        context=context,
        now=timezone.now(),
    )
    identity_events_save([event])


def _resolve(
    identity: ContactIdentity, context: IdentityContext, *, attempts: int, savepoint: bool = True
) -> Contact:
    given = {name: {value} for name in IDENTIFIERS if (value := getattr(identity, name))}
    found = list(contacts_holding(given)[:RESOLVE_LIMIT])
    # Identifiers nobody has yet (a new person, or one to fill in): locked, then read again, so
    # that a concurrent writer giving them too waits for this one (identifiers_lock).
    if identifiers_lock(identifiers_unseen(given, found)):
        found = list(contacts_holding(given)[:RESOLVE_LIMIT])
    contact = contact_choose(found=found, identity=identity)
    if contact is not None and contact.erased_at is not None:
        # Only its Zoho id can find it: it takes no identifiers again, and records nothing.
        raise ConsentRejected("contact", erased_refusal(contact))
    if contact is None:
        contact = contact_new(identity)
        if not savepoint:
            _create(contact, context)
            return contact
        try:
            with transaction.atomic():
                _create(contact, context)
        except IntegrityError:
            # Another request created this person a moment ago: find them again.
            return _resolve(identity, context, attempts=attempts)
        return contact

    changes, kind = contact_changes(contact=contact, identity=identity, may_update=context.may_update())
    if changes:
        try:
            with transaction.atomic():
                # The contact's row locked, so its chain's next version is ours; judged again
                # if another request changed its identifiers since it was read.
                stored = (
                    Contact.objects.select_for_update()
                    .filter(pk=contact.pk)
                    .values_list("identity_version", flat=True)
                    .first()
                )
                if stored == contact.identity_version:
                    for name, value in changes.items():
                        setattr(contact, name, value)
                    identity_append(contact, kind=kind, context=context, changed=changes)
                    return contact
        except IntegrityError as exc:
            raise IdentityConflict(
                "contact", "An identifier given here already belongs to another contact."
            ) from exc
        if attempts <= 1:
            raise ConsentRejected("contact", "The contact changed meanwhile; send the request again.")
        return _resolve(identity, context, attempts=attempts - 1)
    return contact
