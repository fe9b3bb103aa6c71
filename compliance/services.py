"""Every write to the ledger. Nothing else inserts consent events.

`consent_record` is the one write path: in one transaction it replays or
refuses a duplicate idempotency key, locks the chain's current state, appends
the event with its version, previous status and hash, updates the state and
writes the outbox row the sync consumes.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from compliance import chain
from compliance.identifiers import normalise_email, normalise_ip, normalise_phone
from compliance.models import (
    ApiClient,
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    OutboxEntry,
    PolicyVersion,
    Purpose,
    Seal,
    Source,
    Suppression,
)
from compliance.outbox import outbox_written_on_commit


class ConsentRejected(Exception):
    """The request breaks a rule of the ledger; nothing was written. `field` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


class ConsentForbidden(ConsentRejected):
    """The caller may not write this (for example an API client writing a source it was not given)."""


class IdempotencyConflict(Exception):
    """The idempotency key was used before for different content."""

    def __init__(self, event: ConsentEvent) -> None:
        super().__init__(f"Idempotency key {event.idempotency_key!r} was already used for other content.")
        self.event = event


@dataclass(frozen=True)
class ContactIdentity:
    email: str | None = None
    phone: str | None = None
    app_user_id: str | None = None
    zoho_id: str | None = None
    first_name: str = ""
    last_name: str = ""


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
        Source.IMPORT,
        Source.ADMIN,
    }
)
WITHDRAWN = frozenset({ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED})


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _clean_identifier(field_name: str, value: str | None, normalise: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(normalise(value))
    except ValidationError as exc:
        raise ConsentRejected(f"contact.{field_name}", exc.messages[0]) from exc


def _normalised_identity(identity: ContactIdentity) -> ContactIdentity:
    result = ContactIdentity(
        email=_clean_identifier("email", identity.email, normalise_email),
        phone=_clean_identifier("phone", identity.phone, normalise_phone),
        app_user_id=(identity.app_user_id or "").strip() or None,
        zoho_id=(identity.zoho_id or "").strip() or None,
        first_name=identity.first_name.strip(),
        last_name=identity.last_name.strip(),
    )
    if not (result.email or result.phone or result.app_user_id or result.zoho_id):
        raise ConsentRejected("contact", "Give at least one of email, phone, app_user_id or zoho_id.")
    return result


def contact_resolve(*, identity: ContactIdentity) -> Contact:
    """Find the one contact these identifiers name, creating it if none does.

    Identifiers that point at two different people are refused rather than
    guessed at. Missing identifiers and names are filled in on the contact.
    """
    identity = _normalised_identity(identity)
    lookups = [
        ("app_user_id", identity.app_user_id),
        ("email", identity.email),
        ("zoho_id", identity.zoho_id),
        ("phone", identity.phone),
    ]
    condition = Q()
    for name, value in lookups:
        if value:
            condition |= Q(**{name: value})
    found = list(Contact.objects.filter(condition)[:10])
    strong = {c.pk for c in found for name, value in lookups[:3] if value and getattr(c, name) == value}
    if len(strong) > 1:
        raise ConsentRejected(
            "contact",
            "These identifiers belong to different contacts; correct them or ask an admin to merge.",
        )
    if strong:
        contact = next(c for c in found if c.pk in strong)
    elif len(found) > 1:
        raise ConsentRejected(
            "contact.phone", "This phone number belongs to several contacts; add email or app_user_id."
        )
    elif found:
        contact = found[0]
    else:
        try:
            with transaction.atomic():
                return Contact.objects.create(
                    email=identity.email,
                    phone=identity.phone,
                    app_user_id=identity.app_user_id,
                    zoho_id=identity.zoho_id,
                    first_name=identity.first_name,
                    last_name=identity.last_name,
                )
        except IntegrityError:
            # Another request created this person a moment ago: find them again.
            return contact_resolve(identity=identity)

    changed = []
    for name in ("email", "phone", "app_user_id", "zoho_id", "first_name", "last_name"):
        value = getattr(identity, name)
        if value and getattr(contact, name) != value:
            setattr(contact, name, value)
            changed.append(name)
    if changed:
        try:
            with transaction.atomic():
                contact.save(update_fields=[*changed, "updated_at"])
        except IntegrityError as exc:
            raise ConsentRejected(
                "contact", "An identifier given here already belongs to another contact."
            ) from exc
    return contact


def _request_digest(contact: Contact, decision: ConsentDecision) -> str:
    content = {
        "contact": contact.pk,
        "purpose": decision.purpose,
        "status": decision.status,
        "frequency": decision.frequency or "",
        "source": decision.source,
        "ip_address": decision.ip_address or "",
        "user_agent": decision.user_agent,
        "policy_version": decision.policy_version or "",
        "occurred_at": decision.occurred_at.isoformat(),
        "evidence": decision.evidence,
        "reason": decision.reason,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _replay(key: str, digest: str) -> RecordResult | None:
    existing = (
        ConsentEvent.objects.select_related("contact", "purpose", "policy_version")
        .filter(idempotency_key=key)
        .first()
    )
    if existing is None:
        return None
    if existing.request_digest != digest:
        raise IdempotencyConflict(existing)
    return RecordResult(event=existing, created=False)


class _Lookups:
    """Purposes and policy versions rarely change; a batch resolves each once."""

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
    if decision.status not in ConsentStatus.values:
        raise ConsentRejected("status", f"Unknown status {decision.status!r}.")
    if decision.source not in Source.values:
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


def consent_record(
    *,
    contact: Contact,
    decision: ConsentDecision,
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    lookups: _Lookups | None = None,
) -> RecordResult:
    """Append one consent event for a known contact. See the module docstring."""
    lookups = lookups or _Lookups()
    now = timezone.now()
    purpose = lookups.purpose(decision.purpose)
    _check_rules(decision, purpose, api_client=api_client, actor_user=actor_user, now=now)
    policy = lookups.policy(decision.policy_version) if decision.policy_version else None
    ip_address = None
    if decision.ip_address:
        try:
            ip_address = normalise_ip(decision.ip_address)
        except ValidationError as exc:
            raise ConsentRejected("ip_address", exc.messages[0]) from exc
    digest = _request_digest(contact, decision)
    if api_client is not None:
        actor = f"api:{api_client.name}"
    elif actor_user is not None:
        actor = f"user:{actor_user.get_username()}"
    else:
        actor = "system"

    try:
        with transaction.atomic():
            state = _lock_state(contact, purpose)
            replay = _replay(decision.idempotency_key, digest)
            if replay is not None:
                return replay
            event = ConsentEvent(
                contact=contact,
                purpose=purpose,
                version=state.version + 1,
                previous_status=state.status,
                status=decision.status,
                frequency=decision.frequency or "",
                source=decision.source,
                ip_address=ip_address,
                user_agent=decision.user_agent[:500],
                policy_version=policy,
                occurred_at=decision.occurred_at,
                recorded_at=now,
                api_client=api_client,
                actor_user=actor_user,  # type: ignore[misc]
                actor=actor,
                evidence=dict(decision.evidence),
                reason=decision.reason,
                idempotency_key=decision.idempotency_key,
                request_digest=digest,
                prev_hash=state.head_hash,
            )
            event.hash = chain.event_hash(
                state.head_hash, tuple(getattr(event, name) for name in chain.EVENT_HASHED_FIELDS)
            )
            event.save(force_insert=True)
            _advance_state(state, event, purpose)
    except IntegrityError:
        # The same key was recorded concurrently (under another chain's lock).
        replay = _replay(decision.idempotency_key, digest)
        if replay is None:
            raise
        return replay
    return RecordResult(event=event, created=True)


def _lock_state(contact: Contact, purpose: Purpose) -> ConsentState:
    query = ConsentState.objects.select_for_update().filter(contact=contact, purpose=purpose)
    state = query.first()
    if state is None:
        # The chain's first event: make the row to lock. A concurrent first
        # writer's insert is ignored and both then queue on the same row lock.
        ConsentState.objects.bulk_create(
            [ConsentState(contact=contact, purpose=purpose)], ignore_conflicts=True
        )
        state = query.get()
    return state


def _advance_state(state: ConsentState, event: ConsentEvent, purpose: Purpose) -> None:
    """Move the chain head; the current status follows the latest *occurred* decision."""
    state.version = event.version
    state.head_hash = event.hash
    fields = ["version", "head_hash", "updated_at"]
    is_newest = state.occurred_at is None or event.occurred_at >= state.occurred_at
    if is_newest:
        changed = (state.status, state.frequency) != (event.status, event.frequency)
        state.status = event.status
        state.frequency = event.frequency
        state.event = event
        state.occurred_at = event.occurred_at
        state.refresh_due_at = (
            add_months(event.occurred_at, purpose.validity_months)
            if event.status == ConsentStatus.OPTED_IN and purpose.validity_months
            else None
        )
        fields += ["status", "frequency", "event", "occurred_at", "refresh_due_at"]
        if changed:
            OutboxEntry.objects.create(
                contact_id=state.contact_id,
                purpose=purpose,
                event=event,
                priority=(
                    OutboxEntry.Priority.WITHDRAWAL
                    if event.status in WITHDRAWN
                    else OutboxEntry.Priority.OPT_IN
                    if event.status == ConsentStatus.OPTED_IN
                    else OutboxEntry.Priority.OTHER
                ),
            )
            outbox_written_on_commit()
    state.save(update_fields=fields)


def consent_ingest(
    *,
    identity: ContactIdentity,
    decision: ConsentDecision,
    api_client: ApiClient | None = None,
    actor_user: AbstractBaseUser | None = None,
    lookups: _Lookups | None = None,
) -> RecordResult:
    """Resolve the contact and record the decision, all or nothing."""
    with transaction.atomic():
        contact = contact_resolve(identity=identity)
        return consent_record(
            contact=contact, decision=decision, api_client=api_client, actor_user=actor_user, lookups=lookups
        )


# A batch commits every this many items: one WAL flush per chunk instead of per
# event, while row locks are held only briefly.
BATCH_COMMIT_EVERY = 100


def consent_ingest_batch(
    *, items: list[tuple[ContactIdentity, ConsentDecision]], api_client: ApiClient | None
) -> list[RecordResult | ConsentRejected | IdempotencyConflict]:
    """Record many decisions; each item stands alone, so one bad item blocks no other.

    Items run in savepoints inside one transaction per chunk. Should a chunk hit
    a deadlock with a concurrent writer, it rolls back whole and its items run
    again one transaction each (they carry idempotency keys, so nothing doubles).
    """
    lookups = _Lookups()

    def one(
        item: tuple[ContactIdentity, ConsentDecision],
    ) -> RecordResult | ConsentRejected | IdempotencyConflict:
        identity, decision = item
        try:
            return consent_ingest(
                identity=identity, decision=decision, api_client=api_client, lookups=lookups
            )
        except (ConsentRejected, IdempotencyConflict) as exc:
            return exc

    results: list[RecordResult | ConsentRejected | IdempotencyConflict] = []
    for start in range(0, len(items), BATCH_COMMIT_EVERY):
        chunk = items[start : start + BATCH_COMMIT_EVERY]
        try:
            with transaction.atomic():
                outcomes = [one(item) for item in chunk]
        except OperationalError:
            outcomes = [one(item) for item in chunk]
        results.extend(outcomes)
    return results


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
    lookups = _Lookups()
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


def suppression_add(
    *, contact: Contact, kind: str, source: str, detail: str = "", evidence: Mapping[str, Any] | None = None
) -> tuple[Suppression, bool]:
    """Record a reason not to mail that is not consent. Returns (suppression, created)."""
    with transaction.atomic():
        existing = Suppression.objects.filter(
            contact=contact, channel=Purpose.Channel.EMAIL, kind=kind, lifted_at__isnull=True
        ).first()
        if existing is not None:
            return existing, False
        suppression = Suppression.objects.create(
            contact=contact, kind=kind, source=source, detail=detail, evidence=dict(evidence or {})
        )
        OutboxEntry.objects.create(contact=contact, priority=OutboxEntry.Priority.WITHDRAWAL)
        outbox_written_on_commit()
        return suppression, True


def api_client_create(*, name: str, sources: list[str]) -> tuple[ApiClient, str]:
    """Create an API client; returns it with its key, which is shown once and stored hashed."""
    unknown = sorted(set(sources) - set(Source.values))
    if unknown:
        raise ConsentRejected("source", f"Unknown source(s): {', '.join(unknown)}.")
    if not sources:
        raise ConsentRejected("source", "Give at least one source the client may write.")
    prefix = secrets.token_hex(4)
    key = f"cd_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient.objects.create(
        name=name, key_prefix=prefix, key_hash=api_key_hash(key), sources=sorted(set(sources))
    )
    return client, key


def api_key_hash(key: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough (no guessing to slow down).
    return hashlib.sha256(key.encode()).hexdigest()


def policy_version_publish(*, label: str, effective_at: Any, text: str = "", url: str = "") -> PolicyVersion:
    policy = PolicyVersion(
        label=label, effective_at=effective_at, text=text, url=url, published_at=timezone.now()
    )
    policy.full_clean()
    policy.save()
    return policy


def _safe_high_water_mark() -> int:
    """The highest event id below which every insert has committed.

    Ids are handed out when a row is inserted, not when it commits, so a writer
    that took id 100 may commit after one that took 101. On PostgreSQL a SHARE
    lock waits for every open writer of the table and holds new ones back for
    the one query; on SQLite writers are serialised already.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {ConsentEvent._meta.db_table} IN SHARE MODE")
        last = ConsentEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


def ledger_seal() -> Seal | None:
    """Seal every event since the previous seal, chained to it. None when there is nothing new."""
    high = _safe_high_water_mark()
    with transaction.atomic():
        previous = Seal.objects.select_for_update().order_by("-sequence").first()
        start = previous.last_event_id if previous else 0
        if high <= start:
            return None
        hashes = (
            ConsentEvent.objects.filter(id__gt=start, id__lte=high)
            .order_by("id")
            .values_list("id", "hash")
            .iterator(chunk_size=20000)
        )
        first_id: int | None = None
        count = 0
        digest = hashlib.sha256()
        for event_id, event_hash in hashes:
            if first_id is None:
                first_id = event_id
            count += 1
            digest.update(event_hash.encode())
        created_at = timezone.now()
        prev_hash = previous.hash if previous else chain.GENESIS_HASH
        sequence = (previous.sequence + 1) if previous else 1
        seal = Seal(
            sequence=sequence,
            created_at=created_at,
            first_event_id=first_id,
            last_event_id=high,
            event_count=count,
            events_digest=digest.hexdigest(),
            prev_hash=prev_hash,
        )
        seal.hash = chain.seal_hash(
            sequence=sequence,
            created_at=created_at,
            first_event_id=first_id,
            last_event_id=high,
            event_count=count,
            events_digest=seal.events_digest,
            prev_hash=prev_hash,
        )
        seal.save(force_insert=True)
        transaction.on_commit(lambda: _seal_log_append(seal))
    return seal


def _seal_log_append(seal: Seal) -> None:
    """Copy the seal's hash out of the database (write-once storage in production)."""
    path = settings.LEDGER_SEAL_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{seal.sequence} {seal.hash} {seal.last_event_id} {seal.created_at.isoformat()}\n")
