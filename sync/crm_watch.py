"""Instant CRM changes: Zoho CRM's notification channel (``/actions/watch``) and its callbacks.

One channel watches ``<module>.edit`` for every module of ``ZOHO_MODULES`` (``Contacts.edit``,
and ``Leads.edit`` when Leads are configured). Zoho keeps a channel at most a week, so
`crm_watch_ensure` (called by the daily reconciliation) renews it two days before it ends, and
enables it again when the modules configured change.

A callback names a module and its record ids (zoho-api.md section 6). `crm_notification_receive`
checks the channel and its token, finds each record's contacts through their written
`CrmLinkRecord` rows (and ``Contact.zoho_id`` for Contacts), reads the records (one call per 100
ids) and applies the rule of direction (`sync.crm_changes.crm_changes_apply`), as reconciliation
would. A Lead named but gone was converted (or deleted): a converted one moves its link to the
Contact it became (`sync.linking.lead_converted_relink`) and the contact is pushed again; a
deleted one is left to the read-back and the reconciliation. Polling (reconciliation) stays the
fallback for a callback that never came.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from compliance.models import Contact
from sync.crm_changes import CrmChangesResult, CrmRecord, crm_changes_apply, crm_record
from sync.linking import crm_modules, lead_converted_relink
from sync.models import CrmLinkRecord, CrmWatchChannel
from sync.outbox import contacts_requeue
from sync.projection import active_mappings, read_fields
from sync.zoho import ZohoClient
from sync.zoho.crm import MAX_RECORDS_PER_CALL
from sync.zoho.errors import ZohoPermanentError

logger = logging.getLogger(__name__)

# Zoho keeps a channel at most a week (longer, or none: one hour); renew well before.
WATCH_LIFETIME = timedelta(days=7) - timedelta(minutes=10)
WATCH_RENEW_BEFORE = timedelta(days=2)


class NotificationRefused(Exception):
    """A callback that is not from our channel (unknown channel, wrong token): nothing is done."""


def watch_events() -> list[str]:
    """The events our channel watches: an edit of a record of any configured module."""
    return [f"{module}.edit" for module in crm_modules()]


def crm_watch_ensure(*, zoho: ZohoClient, notify_url: str, now: datetime | None = None) -> CrmWatchChannel:
    """Our notification channel, enabled or renewed (same id and token) when it is missing, points
    elsewhere, watches other modules than those configured, or has less than two days left. One
    call when it acts, none otherwise."""
    now = now or timezone.now()
    events = watch_events()
    channel = CrmWatchChannel.objects.order_by("-id").first()
    if (
        channel is not None
        and channel.notify_url == notify_url
        and list(channel.events) == events
        and channel.expires_at - now > WATCH_RENEW_BEFORE
    ):
        return channel
    if channel is None:
        channel = CrmWatchChannel(
            channel_id=str(int(now.timestamp() * 1000)),
            token=secrets.token_urlsafe(32)[:43],  # Zoho takes at most 50 characters
        )
    else:
        channel.renewed_at = now
    expires_at = now + WATCH_LIFETIME
    watch = functools.partial(
        zoho.crm.watch,
        channel_id=channel.channel_id,
        events=events,
        notify_url=notify_url,
        token=channel.token,
        expires_at=expires_at,
    )
    if channel.pk is not None and channel.expires_at > now:
        # Zoho holds it: replaced (PUT); one Zoho no longer holds (deleted there) is enabled anew.
        try:
            watch(renew=True)
        except ZohoPermanentError as exc:
            logger.warning(
                "Zoho did not renew watch channel %s (%s): enabling it anew", channel.channel_id, exc
            )
            watch()
    else:
        watch()
    channel.events, channel.notify_url, channel.expires_at = events, notify_url, expires_at
    channel.save()
    return channel


def _contacts_of(module: str, record_ids: list[str]) -> dict[str, set[int]]:
    """Each record's contacts: every contact with a written link record of it (a record may be
    written for more than one contact), and for Contacts the contacts with that Zoho id."""
    contacts: dict[str, set[int]] = {}
    if module == "Contacts":
        for zoho_id, pk in Contact.objects.filter(zoho_id__in=record_ids).values_list("zoho_id", "pk"):
            contacts.setdefault(str(zoho_id), set()).add(pk)
    for record_id, contact_id in CrmLinkRecord.objects.filter(
        module=module, record_id__in=record_ids, role__in=CrmLinkRecord.WRITTEN
    ).values_list("record_id", "contact_id"):
        contacts.setdefault(record_id, set()).add(contact_id)
    return contacts


def crm_notification_receive(*, body: Any, zoho: ZohoClient) -> CrmChangesResult:
    """A callback from Zoho: check its channel and token, then pull the records it names through
    the rule of direction. See the module docstring."""
    if not isinstance(body, Mapping):
        raise ValueError("the notification is not a JSON object")
    ids = body.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, (str, int)) for i in ids):
        raise ValueError("the notification has no list of record ids")
    channel = CrmWatchChannel.objects.filter(channel_id=str(body.get("channel_id") or "")).first()
    token = str(body.get("token") or "")
    if channel is None or not hmac.compare_digest(token.encode(), channel.token.encode()):
        raise NotificationRefused("unknown channel or wrong token")
    CrmWatchChannel.objects.filter(pk=channel.pk).update(last_notified_at=timezone.now())
    record_ids = sorted({str(i) for i in ids if str(i).isdigit()})
    module = str(body.get("module") or "Contacts")
    if module not in crm_modules() or not record_ids:
        return CrmChangesResult()
    contacts_of = _contacts_of(module, record_ids)
    names = sorted({m.crm_field for m in active_mappings() if m.pulls})
    if not contacts_of or not names:
        return CrmChangesResult()
    wanted = sorted(contacts_of)
    records: list[CrmRecord] = []
    found: set[str] = set()
    for start in range(0, len(wanted), MAX_RECORDS_PER_CALL):
        for row in zoho.crm.get_many(
            wanted[start : start + MAX_RECORDS_PER_CALL], read_fields(names), module=module
        ):
            rid = str(row.get("id") or "")
            found.add(rid)
            records.extend(
                crm_record(contact_id, row, names, module=module)
                for contact_id in sorted(contacts_of.get(rid, ()))
            )
    moved = [
        contact_id
        for rid in wanted
        if rid not in found
        for contact_id in sorted(contacts_of[rid])
        if lead_converted_relink(contact_id=contact_id, module=module, record_id=rid, zoho=zoho)
    ]
    contacts_requeue(contact_ids=moved)
    return crm_changes_apply(records=records, client=zoho)
