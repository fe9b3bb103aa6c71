"""The one write path of consent events: the ledger's rules, the append, the chain's state.

`consent_record` appends one event for a known contact; `consent_ingest` first finds or
makes the contact. Both go through `_record`: check the decision, lock the chain's current
state, append the event with its version, previous status and hash, move the state and
write the outbox row. The batch path (`consent_batch`) takes the same steps for a chunk of
items at once, with the helpers below that it shares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from compliance import chain, personal
from compliance.identifiers import normalise_ip
from compliance.models import (
    ApiClient,
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    EventPersonalData,
    PolicyVersion,
    Purpose,
    Source,
)
from compliance.outbox import outbox_written_on_commit
from compliance.services.consent_append import event_append
from compliance.services.contacts import ContactIdentity, contact_resolve, erased_refusal
from compliance.services.errors import ConsentForbidden, ConsentRejected, IdempotencyConflict
from compliance.services.identity import actor_name, decision_identity_context
from compliance.services.state import advance_state, lock_state


@dataclass(frozen=True)
class ConsentDecision:
    purpose: str
    status: str
    source: str
    occurred_at: datetime
    idempotency_key: str
    frequency: str | None = None
    ip_address: str | None = None
    user_agent: str = ""
    policy_version: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class RecordResult:
    event: ConsentEvent
    created: bool


# Sources that speak for the person themselves: only these may record an opt-in.
PERSON_SOURCES = frozenset(
    {
        Source.MOBILE_APP,
        Source.WEB_PORTAL,
        Source.CUSTOMER_SERVICE,
        Source.EMAIL_LINK,
        Source.PREFERENCE_CENTRE,
        Source.IMPORT,
        Source.ADMIN,
    }
)


# The choices as sets: `TextChoices.values` builds a new list on every use.
STATUSES = frozenset(ConsentStatus.values)
SOURCES = frozenset(Source.values)

# The earliest occurred_at the ledger takes: older is a client's bug (year 1, a zero date).
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
DECISION_TEXT_FIELDS = (
    "purpose",
    "status",
    "source",
    "idempotency_key",
    "frequency",
    "ip_address",
    "user_agent",
    "policy_version",
    "reason",
)


def _text_check(field_name: str, value: object) -> None:
    """Text the database can store and a hash can cover: valid Unicode, no NUL."""
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise ConsentRejected(field_name, "Text may not contain the NUL character.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConsentRejected(field_name, "Text must be valid Unicode (it holds a lone surrogate).") from None


def _evidence_check(evidence: object) -> None:
    """At most EVIDENCE_MAX_DEPTH levels, EVIDENCE_MAX_KEYS keys and EVIDENCE_MAX_BYTES of JSON.

    Walked without recursion, so hostile nesting cannot overflow the stack; every JSON value
    takes a byte at least, so a walk that meets more values than the byte limit stops early.
    """
    if not isinstance(evidence, Mapping):
        raise ConsentRejected("evidence", "Evidence must be a JSON object.")
    max_depth, max_keys, max_bytes = (
        settings.EVIDENCE_MAX_DEPTH,
        settings.EVIDENCE_MAX_KEYS,
        settings.EVIDENCE_MAX_BYTES,
    )
    too_large = ConsentRejected("evidence", f"Evidence may take at most {max_bytes} bytes as JSON.")
    keys = values = 0
    stack: list[tuple[object, int]] = [(evidence, 1)]
    while stack:
        item, depth = stack.pop()
        values += 1
        if values > max_bytes:
            raise too_large
        if isinstance(item, Mapping | list | tuple) and depth > max_depth:
            raise ConsentRejected("evidence", f"Evidence may nest at most {max_depth} levels deep.")
        if isinstance(item, Mapping):
            keys += len(item)
            if keys > max_keys:
                raise ConsentRejected("evidence", f"Evidence may hold at most {max_keys} keys in all.")
            for key, value in item.items():
                _text_check("evidence", key)
                stack.append((value, depth + 1))
        elif isinstance(item, list | tuple):
            stack.extend((value, depth + 1) for value in item)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ConsentRejected("evidence", "Evidence numbers must be finite.")
        else:
            _text_check("evidence", item)
    size = len(json.dumps(evidence, ensure_ascii=False, separators=(",", ":"), default=str).encode())
    if size > max_bytes:
        raise too_large


def evidence_stored(value: Any) -> Any:
    """The evidence as the database gives it back, so that the hash taken now matches the row.

    PostgreSQL keeps a JSON number as a decimal: a float Python writes with an exponent and
    no fraction (1e16 and up) comes back an integer of the same value, and -0.0 comes back
    0.0. Those are stored as such; every other value already comes back as it went in.
    (Called after `_evidence_check`, so the nesting is bounded.)
    """
    if isinstance(value, float):
        if value == 0:
            return 0.0
        if value.is_integer() and abs(value) >= 1e16:
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {key: evidence_stored(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [evidence_stored(item) for item in value]
    return value


def consent_input_check(*, identity: ContactIdentity | None, decision: ConsentDecision) -> None:
    """Refuse input that no event may hold, before anything reads or writes the database:
    invalid Unicode or NUL in any text, evidence past its limits, an occurred_at without a
    time zone or before 2000. Raises ConsentRejected naming the field."""
    if identity is not None:
        for identity_field in dataclasses.fields(identity):
            _text_check(f"contact.{identity_field.name}", getattr(identity, identity_field.name))
    for name in DECISION_TEXT_FIELDS:
        _text_check(name, getattr(decision, name))
    if timezone.is_naive(decision.occurred_at):
        raise ConsentRejected("occurred_at", "occurred_at needs a time zone, e.g. 2026-11-20T09:14:03Z.")
    if decision.occurred_at < EARLIEST_OCCURRED_AT:
        raise ConsentRejected("occurred_at", "occurred_at must lie after 2000-01-01.")
    _evidence_check(decision.evidence)


class Lookups:
    """Purposes and policy versions rarely change; a batch (or a caller recording many
    decisions, like the demo loader) resolves each once."""

    def __init__(self) -> None:
        self.purposes: dict[str, Purpose] = {}
        self.policies: dict[str, PolicyVersion] = {}

    def purpose(self, code: str) -> Purpose:
        if code not in self.purposes:
            try:
                self.purposes[code] = Purpose.objects.get(code=code)
            except Purpose.DoesNotExist:
                known = ", ".join(Purpose.objects.values_list("code", flat=True))
                raise ConsentRejected("purpose", f"Unknown purpose {code!r}; known: {known}.") from None
        return self.purposes[code]

    def policy(self, label: str) -> PolicyVersion:
        if label not in self.policies:
            try:
                self.policies[label] = PolicyVersion.objects.get(label=label, published_at__isnull=False)
            except PolicyVersion.DoesNotExist:
                raise ConsentRejected(
                    "policy_version", f"Unknown or unpublished policy version {label!r}."
                ) from None
        return self.policies[label]


def _check_rules(
    decision: ConsentDecision,
    purpose: Purpose,
    *,
    api_client: ApiClient | None,
    actor_user: AbstractBaseUser | None,
    now: datetime,
) -> None:
    if decision.status not in STATUSES:
        raise ConsentRejected("status", f"Unknown status {decision.status!r}.")
    if decision.source not in SOURCES:
        raise ConsentRejected("source", f"Unknown source {decision.source!r}.")
    if api_client is not None and not api_client.may_write(decision.source):
        raise ConsentForbidden(
            "source", f"API client {api_client.name!r} may not write source {decision.source!r}."
        )
    if not decision.idempotency_key.strip():
        raise ConsentRejected("idempotency_key", "An idempotency key is required.")
    if decision.occurred_at > now + timedelta(seconds=settings.CONSENT_OCCURRED_AT_SKEW_S):
        raise ConsentRejected("occurred_at", "occurred_at lies in the future.")
    if decision.frequency and decision.status != ConsentStatus.OPTED_IN:
        raise ConsentRejected("frequency", "A frequency goes only with status opted_in.")
    if decision.status == ConsentStatus.OPTED_IN:
        if decision.source not in PERSON_SOURCES:
            raise ConsentRejected(
                "source",
                f"An opt-in needs the person's own action; source {decision.source!r} cannot give one.",
            )
        if not decision.policy_version:
            raise ConsentRejected("policy_version", "An opt-in must name the policy version the person saw.")
        if (
            purpose.double_opt_in_required
            and decision.source != Source.ADMIN
            and not decision.evidence.get("double_opt_in_confirmed_at")
        ):
            raise ConsentRejected(
                "evidence",
                f"{purpose.code} requires double opt-in: record status pending first, then opted_in with "
                "evidence.double_opt_in_confirmed_at.",
            )
    if decision.status == ConsentStatus.PENDING and not purpose.double_opt_in_required:
        raise ConsentRejected("status", f"{purpose.code} has no double opt-in, so nothing can be pending.")
    if decision.status == ConsentStatus.EXPIRED and decision.source != Source.SYSTEM:
        raise ConsentRejected("status", "Only the system expires consent.")
    if decision.source == Source.ADMIN:
        if actor_user is None:
            raise ConsentRejected("source", "Admin corrections are made by a signed-in admin.")
        if not decision.reason.strip():
            raise ConsentRejected("reason", "An admin correction needs a reason.")


@dataclass(frozen=True)
class Checked:
    """A decision that passed the rules, with what its event needs from the database."""

    decision: ConsentDecision
    purpose: Purpose
    policy: PolicyVersion | None
    ip_address: str | None
    api_client: ApiClient | None
    actor_user: AbstractBaseUser | None
    actor: str


def consent_check(
    decision: ConsentDecision,
    *,
    api_client: ApiClient | None,
    actor_user: AbstractBaseUser | None,
    lookups: Lookups,
    now: datetime,
) -> Checked:
    """The ledger's rules for one decision, in the order their errors are reported."""
    purpose = lookups.purpose(decision.purpose)
    _check_rules(decision, purpose, api_client=api_client, actor_user=actor_user, now=now)
    policy = lookups.policy(decision.policy_version) if decision.policy_version else None
    ip_address = None
    if decision.ip_address:
        try:
            ip_address = normalise_ip(decision.ip_address)
        except ValidationError as exc:
            raise ConsentRejected("ip_address", exc.messages[0]) from exc
    actor = actor_name(api_client=api_client, actor_user=actor_user)
    return Checked(decision, purpose, policy, ip_address, api_client, actor_user, actor)


def request_digest(contact_ref: int | str | None, decision: ConsentDecision, secret: Any) -> str:
    """Tells a replay from a conflict. `contact_ref` is the contact's id (the batch path also
    compares requests for contacts it has not inserted yet, under a stand-in reference).

    The digest stays in the insert-only event, so it takes the personal values (IP address,
    user agent, personal evidence) through their commitment under the contact's `secret`: a
    plain hash of them could be broken by trying every IP address once the rest is known."""
    kept, personal_evidence = personal.evidence_split(decision.evidence)
    plain = {
        "ip_address": decision.ip_address or "",
        "user_agent": decision.user_agent,
        "evidence": personal_evidence,
    }
    content = {
        "contact": contact_ref,
        "purpose": decision.purpose,
        "status": decision.status,
        "frequency": decision.frequency or "",
        "source": decision.source,
        "personal": personal.commitment(secret, plain, version=chain.HASH_VERSION),
        "policy_version": decision.policy_version or "",
        "occurred_at": decision.occurred_at.isoformat(),
        "evidence": kept,
        "reason": decision.reason,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _replay(key: str, digest: str) -> RecordResult | None:
    """The event that holds a key its insert found used (asked after the refusal, so nearly always there)."""
    existing = (
        ConsentEvent.objects.select_related("contact", "purpose", "policy_version", "personal")
        .filter(idempotency_key=key)
        .first()
    )
    if existing is None:
        return None
    if existing.request_digest != digest:
        raise IdempotencyConflict(existing)
    return RecordResult(event=existing, created=False)


def next_event(
    state: ConsentState, contact: Contact, checked: Checked, *, digest: str, now: datetime
) -> ConsentEvent:
    """The chain's next event after `state` (not saved): version, previous status and hash.

    Its personal values (IP address, user agent, personal evidence) stay out of it: its
    personal_hash commits to them, and `personal_data_rows` gives the side table's row."""
    decision = checked.decision
    kept, personal_evidence = personal.evidence_split(evidence_stored(decision.evidence))
    plain = personal.event_personal_values(
        ip_address=checked.ip_address,
        user_agent=decision.user_agent[:500],
        personal_evidence=personal_evidence,
    )
    event = ConsentEvent(
        contact=contact,
        purpose=checked.purpose,
        version=state.version + 1,
        previous_status=state.status,
        status=decision.status,
        frequency=decision.frequency or "",
        source=decision.source,
        ip_address=None,
        user_agent="",
        hash_version=chain.HASH_VERSION,
        personal_hash=personal.commitment(contact.secret, plain, version=chain.HASH_VERSION),
        policy_version=checked.policy,
        occurred_at=decision.occurred_at,
        recorded_at=now,
        api_client=checked.api_client,
        actor_user=checked.actor_user,  # type: ignore[misc]
        actor=checked.actor,
        evidence=kept,
        reason=decision.reason,
        idempotency_key=decision.idempotency_key,
        request_digest=digest,
        prev_hash=state.head_hash,
    )
    event.hash = chain.event_hash_of(state.head_hash, event)
    event.plain_values = plain  # type: ignore[attr-defined]
    return event


def personal_data_rows(events: list[ConsentEvent]) -> list[EventPersonalData]:
    """The side table's rows of these inserted events (those with personal values)."""
    return [
        EventPersonalData(event_id=event.pk, values=event.plain_values)  # type: ignore[attr-defined]
        for event in events
        if getattr(event, "plain_values", None)
    ]


def consent_record(
    *,
    contact: Contact,
    decision: ConsentDecision,
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    lookups: Lookups | None = None,
) -> RecordResult:
    """Append one consent event for a known contact, or answer a repeated request.

    An idempotency key used before replays its event when the request is the same and
    raises IdempotencyConflict when it differs.
    """
    consent_input_check(identity=None, decision=decision)
    lookups = lookups or Lookups()
    try:
        # The common case, a key never seen: no look-up of the key before the insert. The
        # key's unique index refuses a repeat (also one recorded concurrently), which lands below.
        with transaction.atomic():
            return _record(contact, decision, api_client, actor_user, lookups)
    except IntegrityError:
        # Everything above was rolled back: answer from the event that holds the key.
        replay = _replay(decision.idempotency_key, request_digest(contact.pk, decision, contact.secret))
        if replay is None:
            raise
        return replay


def consent_ingest(
    *,
    identity: ContactIdentity,
    decision: ConsentDecision,
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    lookups: Lookups | None = None,
) -> RecordResult:
    """Resolve the contact and record the decision, all or nothing."""
    consent_input_check(identity=identity, decision=decision)
    lookups = lookups or Lookups()
    # A change of the contact's identifiers is an identity event saying who, where and why.
    context = decision_identity_context(decision, api_client=api_client, actor_user=actor_user)
    try:
        # The common case, a key never seen: no look-up of the key and no savepoint
        # of its own. The key's unique index refuses a repeat, which lands below.
        with transaction.atomic():
            contact = contact_resolve(identity=identity, context=context, savepoint=False)
            return _record(contact, decision, api_client, actor_user, lookups)
    except IntegrityError:
        # The key was used before (a replay or a conflict), or concurrently, or another request
        # created the same person meanwhile: everything above was rolled back; do it again the
        # careful way, which finds the person and answers a used key from its event.
        with transaction.atomic():
            contact = contact_resolve(identity=identity, context=context)
            return consent_record(
                contact=contact,
                decision=decision,
                api_client=api_client,
                actor_user=actor_user,
                lookups=lookups,
            )


def _record(
    contact: Contact,
    decision: ConsentDecision,
    api_client: ApiClient | None,
    actor_user: AbstractBaseUser | None,
    lookups: Lookups,
) -> RecordResult:
    """Check the decision and append its event under the chain's lock, in the caller's
    transaction; a key used before makes the insert fail with IntegrityError."""
    now = timezone.now()
    if contact.erased_at is not None:
        raise ConsentRejected("contact", erased_refusal(contact))
    checked = consent_check(decision, api_client=api_client, actor_user=actor_user, lookups=lookups, now=now)
    digest = request_digest(contact.pk, decision, contact.secret)
    state = lock_state(contact, checked.purpose)
    return RecordResult(event=_append(state, contact, checked, digest=digest, now=now), created=True)


def _append(
    state: ConsentState, contact: Contact, checked: Checked, *, digest: str, now: datetime
) -> ConsentEvent:
    """Insert the chain's next event and move the (locked) state; a repeated key raises IntegrityError."""
    event = next_event(state, contact, checked, digest=digest, now=now)
    fields, outbox = advance_state(state, event, checked.purpose)
    if connection.vendor == "postgresql":
        event_append(event, outbox=outbox, state=state, fields=fields)
    else:
        event.save(force_insert=True)
        for row in personal_data_rows([event]):
            row.save(force_insert=True)
        if outbox is not None:
            outbox.save(force_insert=True)
        state.save(update_fields=fields)
    if outbox is not None:
        outbox_written_on_commit()
    return event


def consent_expire_due(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Record `expired` for opt-ins whose validity ran out; returns how many.

    Each expiry is an ordinary event from source `system`, keyed on the opt-in it
    ends, so running the job twice expires nothing twice.
    """
    now = now or timezone.now()
    due = (
        ConsentState.objects.filter(status=ConsentStatus.OPTED_IN, refresh_due_at__lte=now)
        .select_related("contact", "purpose")
        .order_by("refresh_due_at")[:limit]
    )
    lookups = Lookups()
    expired = 0
    for state in due:
        decision = ConsentDecision(
            purpose=state.purpose.code,
            status=ConsentStatus.EXPIRED,
            source=Source.SYSTEM,
            occurred_at=state.refresh_due_at or now,
            idempotency_key=f"expire:{state.event_id}",
            evidence={"opt_in_event": state.event_id, "validity_months": state.purpose.validity_months},
            reason="Consent not refreshed within the purpose's validity.",
        )
        if consent_record(contact=state.contact, decision=decision, lookups=lookups).created:
            expired += 1
    return expired
