"""A contact's identifiers change only by appending an identity event: its chain, and merges.

Every contact's identifiers are an append-only, hash-chained history (`IdentityEvent`, chained
per contact like consent events per contact and purpose): version 1 holds the first identifiers,
each later event the identifiers after a change, with who made it, from where and why. The
contact row holds the newest identifiers and the chain's version; verify_ledger checks both
against the chain.

`contact_resolve` (single path) and `consent_batch` (set-based) append through
`identity_event_next`; `contact_merge` is the admin's merge of two contacts.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compliance import chain, personal
from compliance.identifiers import normalise_ip
from compliance.models import (
    IDENTITY_HASH_VERSION,
    ApiClient,
    Contact,
    IdentityEvent,
    IdentityPersonalData,
    Source,
)
from compliance.services.erased_identifiers import erased_suppressions_add
from compliance.services.errors import ConsentRejected
from compliance.services.rows import rows_insert

if TYPE_CHECKING:
    from compliance.services.consent import ConsentDecision

# What an identity event holds of its contact: the identifiers after the change.
SNAPSHOT_FIELDS = ("email", "phone", "app_user_id", "zoho_id", "first_name", "last_name")


@dataclass(frozen=True)
class IdentityContext:
    """Who changes a contact's identifiers, from where and why; what its identity events record."""

    source: str = Source.SYSTEM
    actor: str = "system"
    api_client: ApiClient | None = None
    actor_user: AbstractBaseUser | None = None
    ip_address: str | None = None
    reason: str = ""
    request_key: str = ""

    def may_update(self) -> bool:
        """Whether this caller may overwrite identifiers (with update_identity): API clients need
        the identity:write right; code running in-process (an admin, the system) may."""
        if self.api_client is None:
            return True
        return self.api_client.has_scope(ApiClient.Scope.IDENTITY_WRITE)


def actor_name(*, api_client: ApiClient | None, actor_user: AbstractBaseUser | None) -> str:
    """Who recorded an event, as consent and identity events both name it."""
    if api_client is not None:
        return f"api:{api_client.name}"
    if actor_user is not None:
        return f"user:{actor_user.get_username()}"
    return "system"


def identity_context(
    *,
    source: str,
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    ip_address: str | None = None,
    reason: str = "",
    request_key: str = "",
) -> IdentityContext:
    """The context of a request, its actor named as consent events name it."""
    address = None
    if ip_address:
        try:
            address = normalise_ip(ip_address)
        except ValidationError:
            address = None  # the consent decision's own check refuses it, rolling this back
    return IdentityContext(
        source=source,
        actor=actor_name(api_client=api_client, actor_user=actor_user),
        api_client=api_client,
        actor_user=actor_user,
        ip_address=address,
        reason=reason,
        request_key=request_key,
    )


def identity_event_next(
    contact: Contact,
    *,
    kind: str,
    version: int,
    prev_hash: str,
    context: IdentityContext,
    now: datetime,
    snapshot: dict[str, str | None] | None = None,
    other_contact: Contact | None = None,
) -> IdentityEvent:
    """The chain's event `version` (not saved) holding `snapshot` (by default the contact's
    identifiers as they are now), with its hash. The contact must have its id.

    The personal values (identifiers but the Zoho id, names, IP address) are not in the event:
    its personal_hash commits to them and `identity_events_save` stores them apart."""
    values = dict(snapshot if snapshot is not None else identity_snapshot(contact))
    plain = personal.identity_personal_values({**values, "ip_address": context.ip_address})
    event = IdentityEvent(
        contact_id=contact.pk,
        version=version,
        kind=kind,
        other_contact_id=other_contact.pk if other_contact is not None else None,
        source=context.source,
        zoho_id=values.get("zoho_id"),
        hash_version=IDENTITY_HASH_VERSION,
        personal_hash=(personal.identity_commitment(contact.secret, plain, version=IDENTITY_HASH_VERSION)),
        api_client=context.api_client,
        actor_user=context.actor_user,  # type: ignore[misc]
        actor=context.actor,
        reason=context.reason,
        request_key=context.request_key[:200],
        recorded_at=now,
        prev_hash=prev_hash,
    )
    event.hash = chain.identity_event_hash_of(prev_hash, event)
    event.plain_values = plain  # type: ignore[attr-defined]
    return event


def identity_events_save(events: list[IdentityEvent]) -> None:
    """Insert the new identity events and their personal values apart, two INSERTs in all."""
    if len(events) == 1:
        events[0].save(force_insert=True)
    else:
        rows_insert(events)
    rows = [
        IdentityPersonalData(identity_event_id=event.pk, **event.plain_values)  # type: ignore[attr-defined]
        for event in events
        if getattr(event, "plain_values", None)
    ]
    if len(rows) == 1:
        rows[0].save(force_insert=True)
    elif rows:
        rows_insert(rows)


def identity_snapshot(contact: Contact) -> dict[str, str | None]:
    return {name: getattr(contact, name) for name in SNAPSHOT_FIELDS}


def identity_former_holders(address: str, *, limit: int) -> list[int]:
    """Ids of the contacts whose identity history holds the email `address` and that hold
    another now: from the side table (hash version 2) and the events' own column (version 1)."""
    ids: set[int] = set()
    for query in (
        IdentityPersonalData.objects.filter(email=address)
        .exclude(identity_event__contact__email=address)
        .values_list("identity_event__contact_id", flat=True),
        IdentityEvent.objects.filter(Q(email=address) & ~Q(contact__email=address)).values_list(
            "contact_id", flat=True
        ),
    ):
        ids.update(query.order_by().distinct()[:limit])
    return sorted(ids)[:limit]


def identity_heads(contact_ids: Iterable[int]) -> dict[int, str]:
    """The hash of each contact's newest identity event (the one its identity_version names)."""
    ids = sorted(set(contact_ids))
    if not ids:
        return {}
    heads: dict[int, tuple[int, str]] = {}
    rows = IdentityEvent.objects.filter(contact_id__in=ids).values_list("contact_id", "version", "hash")
    for contact_id, version, event_hash in rows:
        if contact_id not in heads or version > heads[contact_id][0]:
            heads[contact_id] = (version, event_hash)
    return {contact_id: event_hash for contact_id, (_version, event_hash) in heads.items()}


def identity_append(
    contact: Contact,
    *,
    kind: str,
    context: IdentityContext,
    changed: Iterable[str],
    now: datetime | None = None,
    other_contact: Contact | None = None,
) -> IdentityEvent:
    """Save the contact's changed identifiers (already set on it) and append the event that
    records them, in the caller's transaction. A concurrent change of the same contact makes
    the event's (contact, version) collide: IntegrityError, and the caller's transaction rolls
    back. A contact that takes an erased person's address or number is held by "do not
    contact", as a new one is (`erased_suppressions_add`)."""
    now = now or timezone.now()
    changed = list(changed)
    prev_hash = identity_heads([contact.pk]).get(contact.pk, chain.GENESIS_HASH)
    contact.identity_version += 1
    contact.save(update_fields=[*changed, "identity_version", "updated_at"])
    if {"email", "phone"} & set(changed):
        erased_suppressions_add([contact], source=Source.SYSTEM)
    event = identity_event_next(
        contact,
        kind=kind,
        version=contact.identity_version,
        prev_hash=prev_hash,
        context=context,
        now=now,
        other_contact=other_contact,
    )
    identity_events_save([event])
    return event


def contact_merge(
    *,
    primary: Contact,
    merged: Contact,
    actor_user: AbstractBaseUser,
    reason: str,
    ip_address: str | None = None,
) -> tuple[IdentityEvent, IdentityEvent]:
    """Merge `merged` into `primary`: an admin's decision, recorded on both contacts.

    `primary` takes every identifier it lacks from `merged`; `merged` gives up all of its
    identifiers (so every look-up by them finds `primary`, or `merged` marked as merged by a
    former email) and points at `primary`. Nothing else moves: each contact keeps its consent
    history, whose chains stay as they were and verify as before, so a merge never changes
    anyone's consent silently. Returns the two identity events (primary's, merged's).
    """
    if not reason.strip():
        raise ConsentRejected("reason", "A merge needs a reason.")
    if primary.pk == merged.pk:
        raise ConsentRejected("contact", "A contact cannot be merged into itself.")
    context = identity_context(
        source=Source.ADMIN, actor_user=actor_user, ip_address=ip_address, reason=reason.strip()
    )
    now = timezone.now()
    with transaction.atomic():
        # Both rows locked in id order, so two merges of the same contacts queue, not deadlock.
        locked = {
            contact.pk: contact
            for contact in Contact.objects.select_for_update()
            .filter(pk__in=[primary.pk, merged.pk])
            .order_by("pk")
        }
        primary, merged = locked[primary.pk], locked[merged.pk]
        for contact in (primary, merged):
            if contact.merged_into_id is not None:
                raise ConsentRejected("contact", f"Contact {contact.pk} was merged already.")
        taken = {
            name: getattr(merged, name)
            for name in SNAPSHOT_FIELDS
            if getattr(merged, name) and not getattr(primary, name)
        }
        # The merged contact lets go first: emails and app user ids are unique.
        for name in SNAPSHOT_FIELDS:
            setattr(merged, name, "" if name in ("first_name", "last_name") else None)
        merged.merged_into = primary
        merged_event = identity_append(
            merged,
            kind=IdentityEvent.Kind.MERGED_INTO,
            context=context,
            changed=[*SNAPSHOT_FIELDS, "merged_into"],
            now=now,
            other_contact=primary,
        )
        for name, value in taken.items():
            setattr(primary, name, value)
        primary_event = identity_append(
            primary,
            kind=IdentityEvent.Kind.MERGED_FROM,
            context=context,
            changed=list(taken),
            now=now,
            other_contact=merged,
        )
    return primary_event, merged_event


def decision_identity_context(
    decision: ConsentDecision, *, api_client: ApiClient | None, actor_user: AbstractBaseUser | None
) -> IdentityContext:
    """The context of the identity events made while recording a consent decision: its source,
    IP address, reason and idempotency key."""
    return identity_context(
        source=decision.source,
        api_client=api_client,
        actor_user=actor_user,
        ip_address=decision.ip_address,
        reason=decision.reason,
        request_key=decision.idempotency_key,
    )
