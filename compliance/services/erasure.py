"""Erasure (GDPR Art. 17): forget the person, keep the proof.

`erasure_request` records the request (pending) in a transaction of its own, then
`erasure_perform` erases in one transaction:

- withdraws every consent still given or pending (an ordinary event from source `system`, so the
  sync turns marketing off and the ledger says when and why);
- keeps hashed identifiers (HMAC under the suppression secret) of every email address and phone
  number the person had, so that a new contact with one of them is held by "do not contact";
- deletes the person's personal values kept apart from the chains (EventPersonalData,
  IdentityPersonalData) and the contact's secret (crypto-shredding: the commitments in the
  events can no longer be tested against any guess);
- blanks the contact's identifiers and names, and appends an identity event `erased` (who
  asked, through which channel, why) so the contact row still matches its identity chain;
- clears the personal evidence of its suppressions, and the address, subject and body of the
  mails sent to them.

Events stay: purpose, status, times, source, policy version and hashes; `verify_ledger` passes.
A legal hold refuses the erasure (`LegalHoldActive`). A crash leaves the request pending, and
`erasure_retry_pending` completes it. Inside the transaction `contact_erasing` is sent (the sync
writes down, in the same transaction, what Zoho must still forget); once committed,
`contact_erased` (the sync masks its own records; compliance never imports sync).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone

from compliance.erasure_models import ErasedIdentifier, ErasureRequest, LegalHold
from compliance.models import (
    ApiClient,
    ConsentState,
    ConsentStatus,
    Contact,
    EventPersonalData,
    IdentityEvent,
    IdentityPersonalData,
    LifecycleMessage,
    Source,
    Suppression,
)
from compliance.services.consent import ConsentDecision, Lookups, consent_record
from compliance.services.erased_identifiers import digest, key_id, suppression_secrets
from compliance.services.errors import ConsentRejected
from compliance.services.identity import IdentityContext, actor_name, identity_append

logger = logging.getLogger(__name__)

# Sent inside the erasure's transaction, then once it is committed: sender=Contact, contact_id,
# zoho_id, emails, phones (the values exist only in this message, in memory). A receiver of
# `contact_erasing` that raises rolls the erasure back (it stays pending and is retried):
# sync/erasure.py writes there the durable job that removes the person from Zoho.
contact_erasing = Signal()
contact_erased = Signal()


class LegalHoldActive(Exception):
    """The contact is under a legal hold: it cannot be erased until the hold is lifted."""

    def __init__(self, hold: LegalHold) -> None:
        self.hold = hold
        super().__init__(f"Contact {hold.contact_id} is under legal hold {hold.pk}: {hold.reason}")


@dataclass(frozen=True)
class ErasureResult:
    erasure: ErasureRequest
    created: bool  # False: the contact was erased (or asked to be) before


# --- requests -------------------------------------------------------------------------------


def legal_hold_open(contact: Contact) -> LegalHold | None:
    return LegalHold.objects.filter(contact=contact, lifted_at__isnull=True).order_by("id").first()


def erasure_request(
    *,
    contact: Contact,
    channel: str,
    reason: str = "",
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> ErasureResult:
    """Record an erasure request and carry it out. A contact erased (or asked for) before answers
    with that erasure (created=False); a legal hold raises LegalHoldActive."""
    if "\x00" in reason:
        raise ConsentRejected("reason", "Text may not contain the NUL character.")
    existing = ErasureRequest.objects.filter(contact=contact).first()
    if existing is not None:
        if existing.status == ErasureRequest.Status.PENDING:
            existing = erasure_perform(existing)
        return ErasureResult(existing, created=False)
    hold = legal_hold_open(contact)
    if hold is not None:
        raise LegalHoldActive(hold)
    if contact.merged_into_id is not None:
        raise ConsentRejected(
            "contact", f"Contact {contact.pk} was merged into {contact.merged_into_id}; erase that one."
        )
    try:
        with transaction.atomic():
            erasure = ErasureRequest.objects.create(
                contact=contact,
                channel=channel,
                reason=reason.strip(),
                requested_by=actor_name(api_client=api_client, actor_user=actor_user),
                requested_at=now or timezone.now(),
            )
    except IntegrityError:
        # The same contact asked for at the same time: answer with that one.
        return ErasureResult(erasure_perform(ErasureRequest.objects.get(contact=contact)), created=False)
    return ErasureResult(erasure_perform(erasure), created=True)


def erasure_perform(erasure: ErasureRequest) -> ErasureRequest:
    """Erase the request's contact in one transaction (see the module). Done once: a request
    already done is returned as it is. On failure the request stays pending, its error noted."""
    try:
        with transaction.atomic():
            locked = ErasureRequest.objects.select_for_update().get(pk=erasure.pk)
            if locked.status == ErasureRequest.Status.DONE:
                return locked
            hold = legal_hold_open(locked.contact)
            if hold is not None:
                raise LegalHoldActive(hold)
            _erase(locked)
            return locked
    except LegalHoldActive:
        raise
    except Exception as exc:
        ErasureRequest.objects.filter(pk=erasure.pk).update(
            attempts=erasure.attempts + 1, last_error=f"{type(exc).__name__}"[:500]
        )
        raise


def _erase(erasure: ErasureRequest) -> None:
    now = timezone.now()
    contact = Contact.objects.select_for_update().get(pk=erasure.contact_id)
    reason = f"Erasure request {erasure.pk} ({erasure.get_channel_display()})"

    # 1. Withdraw what is still given: the sync turns marketing off, the ledger says why.
    lookups = Lookups()
    for state in ConsentState.objects.filter(
        contact=contact, status__in=[ConsentStatus.OPTED_IN, ConsentStatus.PENDING]
    ).select_related("purpose"):
        consent_record(
            contact=contact,
            decision=ConsentDecision(
                purpose=state.purpose.code,
                status=ConsentStatus.OPTED_OUT,
                source=Source.SYSTEM,
                occurred_at=now,
                idempotency_key=f"erasure:{erasure.pk}:{state.purpose.code}",
                evidence={"erasure": erasure.pk},
                reason=reason,
            ),
            lookups=lookups,
        )

    # 2. The objection outlives the person: hashed email addresses and phone numbers.
    emails = (
        {contact.email}
        | set(
            IdentityPersonalData.objects.filter(
                identity_event__contact=contact, email__isnull=False
            ).values_list("email", flat=True)
        )
        | set(
            IdentityEvent.objects.filter(contact=contact, email__isnull=False).values_list("email", flat=True)
        )
    )
    phones = (
        {contact.phone}
        | set(
            IdentityPersonalData.objects.filter(
                identity_event__contact=contact, phone__isnull=False
            ).values_list("phone", flat=True)
        )
        | set(
            IdentityEvent.objects.filter(contact=contact, phone__isnull=False).values_list("phone", flat=True)
        )
    )
    emails.discard(None)
    phones.discard(None)
    secret = suppression_secrets()[0]
    ErasedIdentifier.objects.bulk_create(
        [
            ErasedIdentifier(
                kind=kind, digest=digest(secret, kind, value), key_id=key_id(secret), erasure=erasure
            )
            for kind, values in ((ErasedIdentifier.Kind.EMAIL, emails), (ErasedIdentifier.Kind.PHONE, phones))
            for value in sorted(v for v in values if v)
        ]
    )

    # 3. The values kept apart, and the key of their commitments.
    deleted, _ = EventPersonalData.objects.filter(event__contact=contact).delete()
    identity_deleted, _ = IdentityPersonalData.objects.filter(identity_event__contact=contact).delete()
    Suppression.objects.filter(contact=contact).update(evidence={})
    # The mails sent to them (double opt-in, refresh): kept as a record that a mail went out,
    # without address, subject, body or the mail server's answer (which may name the address).
    LifecycleMessage.objects.filter(contact=contact).update(
        to_email="", subject="", body_text="", body_html="", last_error=""
    )

    # 4. The contact forgets who it was; its identity chain says so.
    zoho_id = contact.zoho_id
    for name in ("email", "phone", "app_user_id"):
        setattr(contact, name, None)
    contact.first_name = contact.last_name = ""
    contact.secret = None
    contact.erased_at = now
    event = identity_append(
        contact,
        kind=IdentityEvent.Kind.ERASED,
        context=IdentityContext(
            source=Source.ADMIN if erasure.channel == ErasureRequest.Channel.ADMIN else Source.SYSTEM,
            actor=erasure.requested_by,
            reason=f"{reason}: {erasure.reason}" if erasure.reason else reason,
            request_key=f"erasure:{erasure.pk}",
        ),
        changed=["email", "phone", "app_user_id", "first_name", "last_name", "secret", "erased_at"],
        now=now,
    )

    erasure.status = ErasureRequest.Status.DONE
    erasure.erased_at = now
    erasure.identity_event = event
    erasure.attempts += 1
    erasure.last_error = ""
    erasure.events_kept = contact.events.count()
    erasure.legacy_events = contact.events.filter(hash_version=1).count()
    erasure.values_deleted = deleted + identity_deleted
    erasure.save()

    payload = {
        "contact_id": contact.pk,
        "zoho_id": zoho_id,
        "emails": sorted(e for e in emails if e),
        "phones": sorted(p for p in phones if p),
    }
    contact_erasing.send(sender=Contact, **payload)
    transaction.on_commit(lambda: contact_erased.send(sender=Contact, **payload))
    logger.info("Contact %s erased (request %s, %s)", contact.pk, erasure.pk, erasure.channel)


def erasure_retry_pending(*, limit: int = 100) -> int:
    """Complete erasures a crash left pending; returns how many were completed."""
    done = 0
    for erasure in ErasureRequest.objects.filter(status=ErasureRequest.Status.PENDING).order_by("id")[:limit]:
        try:
            erasure_perform(erasure)
            done += 1
        except LegalHoldActive:
            continue
        except Exception:
            logger.exception("Erasure request %s failed again; it stays pending", erasure.pk)
    return done


def legal_hold_set(*, contact: Contact, reason: str, actor_user: AbstractBaseUser) -> LegalHold:
    if not reason.strip():
        raise ConsentRejected("reason", "A legal hold needs a reason.")
    return LegalHold.objects.create(
        contact=contact, reason=reason.strip(), set_by=actor_name(api_client=None, actor_user=actor_user)
    )


def legal_hold_lift(*, hold: LegalHold, actor_user: AbstractBaseUser) -> LegalHold:
    hold.lifted_at = timezone.now()
    hold.lifted_by = actor_name(api_client=None, actor_user=actor_user)
    hold.save(update_fields=["lifted_at", "lifted_by"])
    return hold
