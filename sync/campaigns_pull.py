"""Campaigns pull: what Zoho Campaigns learns (unsubscribes, bounces) comes back into the ledger.

For each configured list (``ZOHO_CAMPAIGNS_LIST_KEYS``):

* ``unsub`` subscribers: a person's withdrawal, recorded through the ledger's
  one write path as ``opted_out`` of ``email_marketing`` with source
  ``campaigns`` and evidence (the list key and Campaigns' row). An address we
  hold no contact for is still a person's decision: the contact is created by
  email. If the ledger already holds a withdrawal for that contact, the row is
  only observed (it is usually the echo of our own "write to both" unsubscribe).
* ``bounce`` subscribers: a hard-bounce suppression (not a consent decision),
  which reaches CRM as ``Email_Opt_Out`` plus the bounce-reason field through
  the projection and the outbox.

For each recently sent campaign: ``senthardbounce`` recipients become hard-bounce
suppressions; ``sentsoftbounce`` recipients are only counted.

Idempotency: every row seen is a `CampaignsObservation` (unique per list,
campaign, email and status), written in the same transaction as its ledger
write. A row already observed is skipped, so pulling twice records each
unsubscribe and bounce once. The unsubscribe's idempotency key is
``campaigns:unsub:<list>:<email token>`` (the address's keyed token,
compliance/address_tokens.py: the key is hashed into the chain, so it must not
name the person) and its ``occurred_at`` the moment we first saw it (Campaigns
gives no unsubscribe time), so even a replay through the ledger is a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from compliance import services
from compliance.address_tokens import email_token
from compliance.identifiers import normalise_email
from compliance.models import ConsentState, ConsentStatus, Source, Suppression
from config.logs import mask_emails
from sync.models import CampaignsObservation
from sync.zoho import ZohoClient
from sync.zoho.campaigns import ListStatus, RecipientAction
from sync.zoho.errors import ZohoError

logger = logging.getLogger("sync.campaigns_pull")

PURPOSE = "email_marketing"
Status = CampaignsObservation.Status


@dataclass
class PullResult:
    lists: int = 0
    campaigns: int = 0
    unsubscribes_seen: int = 0
    unsubscribes_recorded: int = 0
    hard_bounces_seen: int = 0
    suppressions_added: int = 0
    soft_bounces_counted: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    transient_errors: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def unsubscribe_key(list_key: str, email: str) -> str:
    """The unsubscribe's idempotency key: the list and the address's token, never the address."""
    return f"campaigns:unsub:{list_key}:{email_token(email)}"


def _email(row: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = row.get(name)
        if value:
            try:
                return normalise_email(str(value))
            except ValidationError:
                return None
    return None


def _seen(*, list_key: str, campaign_key: str, status: str) -> set[str]:
    return set(
        CampaignsObservation.objects.filter(
            list_key=list_key, campaign_key=campaign_key, status=status
        ).values_list("email", flat=True)
    )


def _observe(
    *, list_key: str, campaign_key: str, email: str, status: str, row: Mapping[str, Any]
) -> CampaignsObservation | None:
    """Create the observation; None when another worker recorded it first."""
    try:
        with transaction.atomic():
            return CampaignsObservation.objects.create(
                list_key=list_key, campaign_key=campaign_key, email=email, status=status, raw=dict(row)
            )
    except IntegrityError:
        return None


def _already_withdrawn(email: str) -> bool:
    return ConsentState.objects.filter(
        contact__email=email,
        purpose__code=PURPOSE,
        status__in=(ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED),
    ).exists()


def unsubscribe_record(*, list_key: str, row: Mapping[str, Any], email: str) -> bool:
    """Record one unsubscribe seen in a list, once. True when a ledger event was written."""
    if services.erased_identifiers_match(email=email):
        return False  # an erased person: their objection is kept already; nothing of them is stored
    with transaction.atomic():
        observation = _observe(
            list_key=list_key, campaign_key="", email=email, status=Status.UNSUBSCRIBED, row=row
        )
        if observation is None:
            return False
        if _already_withdrawn(email):
            return False
        result = services.consent_ingest(
            identity=services.ContactIdentity(email=email),
            decision=services.ConsentDecision(
                purpose=PURPOSE,
                status=ConsentStatus.OPTED_OUT,
                source=Source.CAMPAIGNS,
                occurred_at=observation.first_seen_at,
                idempotency_key=unsubscribe_key(list_key, email),
                evidence={
                    "campaigns_list_key": list_key,
                    "campaigns_row": dict(row),
                    "observed_at": observation.first_seen_at.isoformat(),
                },
            ),
        )
        return result.created


def hard_bounce_record(*, list_key: str, campaign_key: str, row: Mapping[str, Any], email: str) -> bool:
    """Record one hard bounce, once, as a suppression. True when a suppression was added."""
    if services.erased_identifiers_match(email=email):
        return False  # an erased person: held by "do not contact" already
    with transaction.atomic():
        observation = _observe(
            list_key=list_key, campaign_key=campaign_key, email=email, status=Status.HARD_BOUNCE, row=row
        )
        if observation is None:
            return False
        contact = services.contact_resolve(identity=services.ContactIdentity(email=email))
        where = f"campaign {campaign_key}" if campaign_key else f"list {list_key}"
        _, created = services.suppression_add(
            contact=contact,
            kind=Suppression.Kind.HARD_BOUNCE,
            source=Source.CAMPAIGNS,
            detail=f"Zoho Campaigns hard bounce ({where})",
            evidence={
                "campaigns_list_key": list_key,
                "campaigns_campaign_key": campaign_key,
                "campaigns_row": dict(row),
                "observed_at": observation.first_seen_at.isoformat(),
            },
        )
        return created


def soft_bounce_count(*, campaign_key: str, row: Mapping[str, Any], email: str) -> bool:
    return (
        _observe(list_key="", campaign_key=campaign_key, email=email, status=Status.SOFT_BOUNCE, row=row)
        is not None
    )


def _failed(result: PullResult, where: str, exc: ZohoError) -> None:
    logger.warning("Campaigns pull: %s failed: %s", where, exc)
    result.errors.append(f"{where}: {exc}")
    if not exc.permanent:
        result.transient_errors += 1


# Where a list's read stopped (the next row's index), kept a week in the shared cache.
RESUME_TTL_S = 7 * 24 * 3600


def _resume_key(zoho: ZohoClient, source: str, status: str) -> str:
    return f"{zoho.config.cache_prefix}:campaigns-pull:resume:{source}:{status}"


def _list_rows(
    result: PullResult, zoho: ZohoClient, list_key: str, status: ListStatus
) -> Iterator[dict[str, Any]]:
    """A list's rows of one status, from where the last read of it stopped, if it did.

    Campaigns allows 500 ``getlistsubscribers`` calls in 5 minutes for every list and status
    together (the client stops short of them, sync/zoho/campaigns_limits.py): 100 rows a call, a
    pull of larger lists is cut before their end, and the task retries it. Each retry goes on
    from the row where the read stopped, so every row is read across the retries; a read that
    reaches the end starts from the first row next time. (Rows are in the order Campaigns adds
    contacts; one that changes status meanwhile may be read on the next full pass instead.)"""
    return _resumed_rows(
        result,
        f"list {list_key} {status}",
        _resume_key(zoho, list_key, status),
        lambda start: zoho.campaigns.list_subscribers(list_key, status, start=start),
    )


def _campaign_rows(
    result: PullResult, zoho: ZohoClient, campaign_key: str, action: RecipientAction
) -> Iterator[dict[str, Any]]:
    """A sent campaign's recipients of one outcome, from where the last read stopped, as
    `_list_rows`: a campaign with many bounces is read whole across the retries even when
    Campaigns fails one page in so many, instead of from its first row each time."""
    return _resumed_rows(
        result,
        f"campaign {campaign_key} {action}",
        _resume_key(zoho, f"campaign-{campaign_key}", action),
        lambda start: zoho.campaigns.campaign_recipients(campaign_key, action, start=start),
    )


def _resumed_rows(
    result: PullResult, where: str, key: str, read: Callable[[int], Iterator[dict[str, Any]]]
) -> Iterator[dict[str, Any]]:
    """`read`'s rows from the row kept under `key` (the first, if none); a failure is noted, ends
    the read and keeps the next row's index a week, and a read to the end forgets it."""
    start = int(cache.get(key) or 1)
    read_count = 0
    try:
        for row in read(start):
            read_count += 1
            yield row
    except ZohoError as exc:
        cache.set(key, start + read_count, timeout=RESUME_TTL_S)
        _failed(
            result, f"{where} (from row {start}; the next pull goes on from row {start + read_count})", exc
        )
        return
    cache.delete(key)


def _bounce(result: PullResult, **kwargs: Any) -> bool:
    try:
        return hard_bounce_record(**kwargs)
    except services.ConsentRejected as exc:
        # Masked: the errors are logged and kept as the task's result.
        result.errors.append(f"hard bounce {mask_emails(str(kwargs.get('email')))}: {exc}")
        return False


def campaigns_pull(*, client: ZohoClient | None = None, list_keys: Iterable[str] | None = None) -> PullResult:
    """Pull unsubscribes and bounces from every configured list and recent campaign."""
    keys = list(list_keys if list_keys is not None else settings.ZOHO_CAMPAIGNS_LIST_KEYS)
    owns = client is None
    zoho = client or ZohoClient.from_settings()
    result = PullResult()
    try:
        for list_key in keys:
            result.lists += 1
            seen = _seen(list_key=list_key, campaign_key="", status=Status.UNSUBSCRIBED)
            for row in _list_rows(result, zoho, list_key, "unsub"):
                email = _email(row, "contact_email", "Contact Email", "email")
                if email is None:
                    result.skipped += 1
                    continue
                result.unsubscribes_seen += 1
                if email in seen:
                    continue
                try:
                    result.unsubscribes_recorded += unsubscribe_record(
                        list_key=list_key, row=row, email=email
                    )
                except (services.ConsentRejected, services.IdempotencyConflict) as exc:
                    result.errors.append(f"unsubscribe {mask_emails(email)}: {exc}")
            seen = _seen(list_key=list_key, campaign_key="", status=Status.HARD_BOUNCE)
            for row in _list_rows(result, zoho, list_key, "bounce"):
                email = _email(row, "contact_email", "Contact Email", "email")
                if email is None:
                    result.skipped += 1
                    continue
                result.hard_bounces_seen += 1
                if email not in seen:
                    result.suppressions_added += _bounce(
                        result, list_key=list_key, campaign_key="", row=row, email=email
                    )
        campaigns: list[dict[str, Any]] = []
        try:
            campaigns = zoho.campaigns.recent_campaigns(limit=settings.CAMPAIGNS_RECENT_LIMIT)
        except ZohoError as exc:
            result.errors.append(f"recent campaigns: {exc}")
            result.transient_errors += 0 if exc.permanent else 1
        for campaign in campaigns:
            campaign_key = str(campaign.get("campaign_key") or campaign.get("campaignkey") or "")
            if not campaign_key:
                continue
            result.campaigns += 1
            seen = _seen(list_key="", campaign_key=campaign_key, status=Status.HARD_BOUNCE)
            for row in _campaign_rows(result, zoho, campaign_key, "senthardbounce"):
                email = _email(row, "contactemailaddress", "contact_email")
                if email is None:
                    result.skipped += 1
                    continue
                result.hard_bounces_seen += 1
                if email not in seen:
                    result.suppressions_added += _bounce(
                        result, list_key="", campaign_key=campaign_key, row=row, email=email
                    )
            seen = _seen(list_key="", campaign_key=campaign_key, status=Status.SOFT_BOUNCE)
            for row in _campaign_rows(result, zoho, campaign_key, "sentsoftbounce"):
                email = _email(row, "contactemailaddress", "contact_email")
                if email is None:
                    result.skipped += 1
                    continue
                if email not in seen:
                    result.soft_bounces_counted += soft_bounce_count(
                        campaign_key=campaign_key, row=row, email=email
                    )
    finally:
        if owns:
            zoho.close()
    logger.info("Campaigns pull: %s", result.as_dict())
    return result


def soft_bounces(*, email: str | None = None) -> int:
    """How many soft bounces were seen (for one address, or in all)."""
    query = CampaignsObservation.objects.filter(status=Status.SOFT_BOUNCE)
    if email:
        query = query.filter(email=email.lower())
    return query.count()
