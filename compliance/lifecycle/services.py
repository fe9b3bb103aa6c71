"""What a click on a lifecycle link does: confirm a double opt-in, unsubscribe, change preferences.

Each change is one ledger event through the one write path (`compliance.services.consent_record`),
carrying the click's IP address and user agent as the event's own and, in its evidence, the
token's hash (never the token). A link that cannot act (tampered, expired, revoked, used) raises
`TokenInvalid` and records nothing; a repeated click records nothing new. `lifecycle_cycle` is the
periodic job: reminders of unconfirmed double opt-ins, and mails whose send task never ran.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from compliance import services
from compliance.lifecycle import mail, repermission, tokens
from compliance.lifecycle.policies import policy_in_force
from compliance.lifecycle.tokens import LinkToken, TokenInvalid
from compliance.models import (
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    LifecycleMessage,
    LinkGeneration,
    PolicyVersion,
    Purpose,
    Source,
)

WITHDRAWN = (ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED)


@dataclass(frozen=True)
class Click:
    """Who clicked: what the event records as its own IP address and user agent."""

    ip_address: str | None
    user_agent: str


@dataclass
class Outcome:
    recorded: list[ConsentEvent] = field(default_factory=list)
    # Double opt-in purposes chosen in the preference centre that wait for a confirmation mail.
    confirmation_sent: list[Purpose] = field(default_factory=list)


def _state(contact_id: int, purpose: Purpose) -> ConsentState | None:
    return ConsentState.objects.select_related("event").filter(contact_id=contact_id, purpose=purpose).first()


def _record(
    contact: Contact, decision: services.ConsentDecision, lookups: services.Lookups | None = None
) -> ConsentEvent | None:
    """Record, or None when the same key was recorded already (a repeated click)."""
    try:
        result = services.consent_record(contact=contact, decision=decision, lookups=lookups)
    except services.IdempotencyConflict:
        return None
    return result.event if result.created else None


def confirmation_message(link: LinkToken) -> LifecycleMessage:
    if link.message_id is None:
        raise TokenInvalid("unknown")
    message = (
        LifecycleMessage.objects.select_related("purpose", "event", "event__policy_version", "contact")
        .filter(pk=link.message_id, contact_id=link.contact_id, purpose__code=link.purpose)
        .first()
    )
    if message is None:
        raise TokenInvalid("unknown")
    if message.kind == LifecycleMessage.Kind.REPERMISSION:
        # A re-permission names its opt-in through its run's target (one per run, not per event).
        target = repermission.message_target(message)
        if target is None:
            raise TokenInvalid("unknown")
        message.event = target.event
        message.repermission_policy = target.run.policy  # type: ignore[attr-defined]
        message.repermission_run_id = target.run_id  # type: ignore[attr-defined]
    if message.event is None:
        raise TokenInvalid("unknown")
    return message


def asked_policy(message: LifecycleMessage) -> PolicyVersion | None:
    """The policy a confirm link asks the person to agree to: the re-permission's new version,
    the policy in force for a refresh, the one the person saw for a double opt-in."""
    asked = message.event.policy_version if message.event else None
    if message.kind == LifecycleMessage.Kind.REPERMISSION:
        policy: PolicyVersion | None = getattr(message, "repermission_policy", None)
        return policy
    if message.kind == LifecycleMessage.Kind.REFRESH:
        return policy_in_force() or asked
    return asked or policy_in_force()


def renews_opt_in(message: LifecycleMessage) -> bool:
    """A refresh or re-permission asks about an opt-in; a confirmation about a pending event."""
    return message.kind in (LifecycleMessage.Kind.REFRESH, LifecycleMessage.Kind.REPERMISSION)


def doi_confirm_check(*, token: str, now: datetime | None = None) -> LifecycleMessage:
    """The message a confirm link came in, if the link may still confirm (what its GET page shows)."""
    link = tokens.token_read(token, kind=tokens.Kind.CONFIRM, now=now)
    message = confirmation_message(link)
    if ConsentEvent.objects.filter(idempotency_key=_confirm_key(token)).exists():
        raise TokenInvalid("used")
    state = _state(link.contact_id, message.purpose)
    asks_about = ConsentStatus.OPTED_IN if renews_opt_in(message) else ConsentStatus.PENDING
    if state is None or state.status != asks_about or state.event_id != message.event_id:
        # Confirmed (or renewed) through another mail, withdrawn or expired since: this link
        # asks about the past.
        raise TokenInvalid("used")
    return message


def _confirm_key(token: str) -> str:
    return f"doi:{tokens.token_hash(token)}"


def doi_confirm(*, token: str, click: Click, now: datetime | None = None) -> ConsentEvent:
    """Record the opted_in that a confirmation link's POST confirms, with the evidence an auditor
    asks for: the token's hash, the message id, when it was sent and when it was clicked."""
    now = now or timezone.now()
    message = doi_confirm_check(token=token, now=now)
    asked = message.event
    assert asked is not None
    kind = message.kind
    renews = renews_opt_in(message)
    policy = asked_policy(message)
    through = {
        LifecycleMessage.Kind.REFRESH: "refresh_link",
        LifecycleMessage.Kind.REPERMISSION: "repermission_link",
    }.get(LifecycleMessage.Kind(kind), "confirmation_link")
    evidence: dict[str, object] = {
        # The link came in a mail to the contact's address: a double opt-in confirmation either way.
        "double_opt_in_confirmed_at": now.isoformat(),
        "confirmed_through": through,
        "token_sha256": tokens.token_hash(token),
        "message_id": message.message_id,
        "message_kind": message.kind,
        "sent_at": message.sent_at.isoformat() if message.sent_at else None,
        "clicked_at": now.isoformat(),
    }
    if kind == LifecycleMessage.Kind.REFRESH:
        evidence.update(refresh=True, refreshed_event=asked.pk)
    elif kind == LifecycleMessage.Kind.REPERMISSION:
        evidence.update(
            repermission=True,
            repermission_run=getattr(message, "repermission_run_id", None),
            repermission_of_event=asked.pk,
            previous_policy_version=asked.policy_version.label if asked.policy_version else None,
        )
    else:
        evidence["pending_event"] = asked.pk
    decision = services.ConsentDecision(
        purpose=message.purpose.code,
        status=ConsentStatus.OPTED_IN,
        source=Source.EMAIL_LINK,
        occurred_at=now,
        idempotency_key=_confirm_key(token),
        # A refresh or a re-permission renews the opt-in as it was, frequency included.
        frequency=(asked.frequency or None) if renews else None,
        ip_address=click.ip_address,
        user_agent=click.user_agent,
        policy_version=policy.label if policy else None,
        evidence=evidence,
    )
    event = _record(message.contact, decision)
    if event is None:
        raise TokenInvalid("used")
    return event


def unsubscribe_purposes(link: LinkToken) -> list[Purpose]:
    if link.all_purposes:
        return list(Purpose.objects.filter(channel=Purpose.Channel.EMAIL).order_by("code"))
    purpose = Purpose.objects.filter(code=link.purpose).first()
    if purpose is None:
        raise TokenInvalid("unknown")
    return [purpose]


def _unsubscribe_chains(link: LinkToken) -> list[Purpose] | None:
    """The link's purposes, each with its chain's state (`state_status`, `state_version`; None
    before the first event), in ONE query that also checks the contact still exists (unmerged)
    and the link's generation: all a repeat needs to answer, and all a first click reads but the
    contact. None when the contact or generation does not hold or the link names no purpose (the
    full check says why). Written in SQL: the ORM's building of it cost more than running it."""
    where, value = (
        ("p.channel = %s", Purpose.Channel.EMAIL.value)
        if link.all_purposes
        else ("p.code = %s", link.purpose)
    )
    columns = ", ".join(f"p.{f.column}" for f in Purpose._meta.concrete_fields)
    sql = (
        f"SELECT {columns}, s.status AS state_status, s.version AS state_version,"  # noqa: S608 - table names from the models; values bound
        " COALESCE(g.generation, 0) AS link_generation, c.id AS live_contact_id"
        f" FROM {Purpose._meta.db_table} p"
        f" LEFT JOIN {ConsentState._meta.db_table} s ON s.purpose_id = p.id AND s.contact_id = %s"
        f" LEFT JOIN {LinkGeneration._meta.db_table} g ON g.contact_id = %s"
        f" LEFT JOIN {Contact._meta.db_table} c ON c.id = %s AND c.merged_into_id IS NULL"
        f" WHERE {where} ORDER BY p.code"
    )
    purposes = list(Purpose.objects.raw(sql, [link.contact_id, link.contact_id, link.contact_id, value]))
    if not purposes or not all(
        p.live_contact_id is not None and p.link_generation == link.generation  # type: ignore[attr-defined]
        for p in purposes
    ):
        return None
    return purposes


def unsubscribe(*, token: str, click: Click, one_click: bool, now: datetime | None = None) -> Outcome:
    """Record opted_out (source email_link) for the link's purpose, or every email purpose of an
    "all" link, where the person is not opted out already. A repeat records nothing and costs one
    query, a first click two reads (`_unsubscribe_chains`, then the contact) before its writes."""
    now = now or timezone.now()
    link = tokens.token_unsigned(token, kind=tokens.Kind.UNSUBSCRIBE, now=now)
    chains = _unsubscribe_chains(link)
    if chains is None:
        # The link cannot act, or names no purpose: token_read and unsubscribe_purposes raise
        # what is wrong (an "all" link while no purpose is by email records nothing).
        unsubscribe_purposes(tokens.token_read(token, kind=tokens.Kind.UNSUBSCRIBE, now=now))
        return Outcome()
    outcome = Outcome()
    to_withdraw = [p for p in chains if p.state_status not in WITHDRAWN]  # type: ignore[attr-defined]
    if not to_withdraw:
        return outcome
    # The signature, the contact and the generation held a moment ago (`_unsubscribe_chains`):
    # the contact's row is all that is left to read (merged since: the link no longer acts).
    try:
        contact = Contact.objects.get(pk=link.contact_id, merged_into__isnull=True)
    except Contact.DoesNotExist:
        raise TokenInvalid("unknown") from None
    digest = tokens.token_hash(token)
    lookups = services.Lookups()
    lookups.purposes.update((p.code, p) for p in to_withdraw)
    for purpose in to_withdraw:
        evidence: dict[str, object] = {
            "token_sha256": digest,
            "link": "one_click" if one_click else "unsubscribe_page",
            "clicked_at": now.isoformat(),
        }
        if link.campaign:
            evidence["campaign_id"] = link.campaign
        decision = services.ConsentDecision(
            purpose=purpose.code,
            status=ConsentStatus.OPTED_OUT,
            source=Source.EMAIL_LINK,
            occurred_at=now,
            # Per chain version: the same link unsubscribes again after a later opt-in.
            idempotency_key=f"unsub:{digest[:40]}:{purpose.code}:{purpose.state_version or 0}",  # type: ignore[attr-defined]
            ip_address=click.ip_address,
            user_agent=click.user_agent,
            evidence=evidence,
        )
        event = _record(contact, decision, lookups)
        if event is not None:
            outcome.recorded.append(event)
    return outcome


@dataclass(frozen=True)
class Choice:
    """One purpose's answer in the preference centre: opted_in (with a frequency, or none) or opted_out."""

    status: str
    frequency: str = ""


def _mailed_to_address(link: LinkToken, contact: Contact) -> LifecycleMessage | None:
    """The message a preference link came in, when it went to the contact's current address."""
    if link.message_id is None or not contact.email:
        return None
    return LifecycleMessage.objects.filter(
        pk=link.message_id, contact=contact, to_email__iexact=contact.email
    ).first()


def preferences_save(
    *,
    token: str,
    choices: Mapping[str, Choice],
    policy: PolicyVersion,
    click: Click,
    now: datetime | None = None,
) -> Outcome:
    """Record each changed choice as an event from source preference_centre, all or nothing.

    An opt-in to a purpose with double opt-in counts as confirmed only when the link came in a
    mail to the contact's address (the evidence says so); otherwise it is recorded as pending
    and a confirmation mail goes out.
    """
    now = now or timezone.now()
    link = tokens.token_read(token, kind=tokens.Kind.PREFERENCES, now=now)
    contact = Contact.objects.get(pk=link.contact_id)
    digest = tokens.token_hash(token)
    purposes = {p.code: p for p in Purpose.objects.filter(code__in=list(choices))}
    outcome = Outcome()
    with transaction.atomic():
        for code, choice in sorted(choices.items()):
            purpose = purposes[code]
            state = _state(contact.pk, purpose)
            current = (state.status, state.frequency) if state else ("", "")
            wanted = (choice.status, choice.frequency if choice.status == ConsentStatus.OPTED_IN else "")
            if current == wanted or (choice.status == ConsentStatus.OPTED_OUT and current[0] in WITHDRAWN):
                continue
            evidence: dict[str, object] = {"token_sha256": digest, "page": "preference_centre"}
            status = choice.status
            if status == ConsentStatus.OPTED_IN and purpose.double_opt_in_required:
                confirmed = (
                    state.event.evidence.get("double_opt_in_confirmed_at")
                    if state and state.status == ConsentStatus.OPTED_IN and state.event
                    else None
                )
                mailed = _mailed_to_address(link, contact)
                if confirmed:
                    evidence.update(double_opt_in_confirmed_at=confirmed, double_opt_in_event=state.event_id)  # type: ignore[union-attr]
                elif mailed is not None:
                    evidence.update(
                        double_opt_in_confirmed_at=now.isoformat(),
                        confirmed_through="preference_link_mailed_to_address",
                        message_id=mailed.message_id,
                    )
                elif current[0] == ConsentStatus.PENDING:
                    continue  # already waiting for its confirmation
                else:
                    status = ConsentStatus.PENDING
            decision = services.ConsentDecision(
                purpose=code,
                status=status,
                source=Source.PREFERENCE_CENTRE,
                occurred_at=now,
                idempotency_key=f"pref:{digest[:40]}:{code}:{state.version if state else 0}:{status}:{wanted[1]}",
                frequency=(wanted[1] or None) if status == ConsentStatus.OPTED_IN else None,
                ip_address=click.ip_address,
                user_agent=click.user_agent,
                policy_version=policy.label,
                evidence=evidence,
            )
            event = _record(contact, decision)
            if event is None:
                continue
            outcome.recorded.append(event)
            if status == ConsentStatus.PENDING:
                message = mail.message_queue(kind=LifecycleMessage.Kind.CONFIRMATION, event=event, now=now)
                if _queued(message):  # not when the contact is held by "do not contact"
                    outcome.confirmation_sent.append(purpose)
    return outcome


def _queued(message: LifecycleMessage | None) -> bool:
    """Whether a message was made to be sent: not one held by "do not contact" (made failed)."""
    return message is not None and message.status != LifecycleMessage.Status.FAILED


def confirmation_request(*, event: ConsentEvent) -> LifecycleMessage | None:
    """After a `pending` for a purpose with double opt-in was recorded: queue its confirmation mail."""
    if event.status != ConsentStatus.PENDING or not event.purpose.double_opt_in_required:
        return None
    return mail.message_queue(kind=LifecycleMessage.Kind.CONFIRMATION, event=event)


def confirmation_requests(*, events: Sequence[ConsentEvent]) -> list[LifecycleMessage]:
    """`confirmation_request` for the events of a batch ingest, built in bulk: a constant number
    of queries however many events are pending."""
    due = [e for e in events if e.status == ConsentStatus.PENDING and e.purpose.double_opt_in_required]
    return mail.confirmation_messages_queue(events=due)


def demo_signup(*, email: str, click: Click, now: datetime | None = None) -> LifecycleMessage | None:
    """Demo mode's stand-in for a web portal's sign-up form: record `pending` email_marketing for
    this address (source web_portal, the policy in force) and mail the confirmation. Refused
    (ConsentRejected) for an address already subscribed: a pending would undo its opt-in."""
    now = now or timezone.now()
    contact = Contact.objects.filter(email__iexact=email.strip()).first()
    if contact is not None:
        state = ConsentState.objects.filter(contact=contact, purpose__code="email_marketing").first()
        if state is not None and state.status == ConsentStatus.OPTED_IN:
            raise services.ConsentRejected("email", f"{email} is subscribed already.")
    policy = policy_in_force()
    decision = services.ConsentDecision(
        purpose="email_marketing",
        status=ConsentStatus.PENDING,
        source=Source.WEB_PORTAL,
        occurred_at=now,
        idempotency_key=f"demo-signup:{uuid.uuid4().hex}",
        ip_address=click.ip_address,
        user_agent=click.user_agent,
        policy_version=policy.label if policy else None,
        evidence={"form": "demo sign-up (sent-mail page)"},
    )
    result = services.consent_ingest(identity=services.ContactIdentity(email=email), decision=decision)
    return confirmation_request(event=result.event)


@dataclass(frozen=True)
class CycleResult:
    reminders: int
    refreshes: int
    sent: int
    failed: int


def refresh_notices_queue(*, now: datetime, limit: int = 1000) -> int:
    """A refresh request for each opt-in whose refresh date comes within REFRESH_NOTICE_DAYS (one
    per opt-in, to a contact with an email address). Unanswered, the expiry job (`expire_due`)
    ends the opt-in on its date and the sync pushes the opt-out. A contact held by "do not
    contact" gets its request recorded as not sent (`mail.message_queue`), not counted here."""
    due = (
        ConsentState.objects.filter(
            status=ConsentStatus.OPTED_IN,
            refresh_due_at__gt=now,
            refresh_due_at__lte=now + timedelta(days=settings.REFRESH_NOTICE_DAYS),
            contact__email__isnull=False,
            event__isnull=False,
        )
        .exclude(
            event_id__in=LifecycleMessage.objects.filter(kind=LifecycleMessage.Kind.REFRESH).values(
                "event_id"
            )
        )
        .select_related("event", "event__contact", "event__purpose", "event__policy_version")
        .order_by("refresh_due_at")[:limit]
    )
    queued = 0
    for state in due:
        assert state.event is not None
        if _queued(mail.message_queue(kind=LifecycleMessage.Kind.REFRESH, event=state.event, now=now)):
            queued += 1
    return queued


def lifecycle_cycle(*, now: datetime | None = None, send_grace_s: int = 60) -> CycleResult:
    """One round of the lifecycle jobs: queue the one reminder of each confirmation unanswered for
    DOI_REMINDER_HOURS (while its link is still valid) and the refresh requests that are due, then
    send the mails still queued whose send task never ran (older than `send_grace_s`) or whose
    retry is due."""
    now = now or timezone.now()
    refreshes = refresh_notices_queue(now=now)
    # Re-permission runs whose task never ran (a broker down when an admin started one).
    repermission.repermission_runs_resume(older_than_s=send_grace_s * 5)
    reminders = 0
    due = (
        LifecycleMessage.objects.filter(
            kind=LifecycleMessage.Kind.CONFIRMATION,
            status=LifecycleMessage.Status.SENT,
            sent_at__lte=now - timedelta(hours=settings.DOI_REMINDER_HOURS),
            created_at__gt=now - timedelta(hours=settings.DOI_LINK_TTL_HOURS),
        )
        .exclude(event__isnull=True)
        .select_related("event", "event__contact", "event__purpose", "event__policy_version")
        .order_by("created_at")
    )
    for message in due:
        event = message.event
        assert event is not None
        state = _state(event.contact_id, event.purpose)
        if state is None or state.event_id != event.pk or state.status != ConsentStatus.PENDING:
            continue
        if LifecycleMessage.objects.filter(event=event, kind=LifecycleMessage.Kind.REMINDER).exists():
            continue
        if _queued(mail.message_queue(kind=LifecycleMessage.Kind.REMINDER, event=event, now=now)):
            reminders += 1
    sent = failed = 0
    queued = LifecycleMessage.objects.filter(status=LifecycleMessage.Status.QUEUED).filter(
        Q(attempts=0, created_at__lte=now - timedelta(seconds=send_grace_s)) | Q(attempts__gt=0)
    )
    for message in queued.order_by("created_at"):
        if (
            message.attempts
            and message.last_attempt_at
            and (message.last_attempt_at + timedelta(seconds=mail.retry_delay(message.attempts)) > now)
        ):
            continue
        try:
            done = mail.message_send(message_pk=message.pk, now=now)
        except mail.SendFailed:
            failed += 1
        else:
            # Not sent when its contact is held by "do not contact" (the row says so).
            if done is None or done.status != LifecycleMessage.Status.FAILED:
                sent += 1
    return CycleResult(reminders=reminders, refreshes=refreshes, sent=sent, failed=failed)
