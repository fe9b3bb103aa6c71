"""Push, Campaigns' side ("write to both"): a push that carries an email withdrawal or a
suppression also unsubscribes the address from every list in ``ZOHO_CAMPAIGNS_LIST_KEYS``.

The unsubscribes stop at the first transient Campaigns error (its limit, its lock, an outage);
the push makes its CRM writes all the same, then raises it with the batch's rows unprocessed
(`sync.push.contacts_push`). Each unsubscribe Campaigns took is marked at once (`sync.taken`)
under the contact, the version of its identity and the heads of its consent chains, so the retry
sends only the rest: a batch stopped by the limit does not spend the limit again on what it
already did, and it finishes however often Campaigns fails. A newer decision, or a new address,
gives a new mark: its unsubscribes are sent again.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping

from django.conf import settings

from compliance.models import ConsentState, Contact
from sync.optout_clock import withdrawal_clocks_unsubscribed
from sync.projection import Projection
from sync.taken import taken, taken_mark
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoPermanentError, ZohoTransientError

logger = logging.getLogger(__name__)

# Campaigns' "contact is not in this list": nothing to unsubscribe.
CAMPAIGNS_NOT_IN_LIST = "2103"


def contacts_unsubscribe(
    *, contacts: list[Contact], projections: Mapping[int, Projection], unsubscribe: set[int], zoho: ZohoClient
) -> tuple[int, ZohoTransientError | None]:
    """The push's unsubscribes: those of `unsubscribe` whose projection no longer permits email
    (`campaigns_unsubscribe`)."""
    leaving = [
        c for c in contacts if c.pk in unsubscribe and c.email and _email_not_permitted(projections[c.pk])
    ]
    return campaigns_unsubscribe(
        emails=[c.email for c in leaving if c.email], zoho=zoho, marks=_unsubscribe_marks(leaving)
    )


def campaigns_unsubscribe(
    *, emails: list[str], zoho: ZohoClient, marks: Mapping[str, str] | None = None
) -> tuple[int, ZohoTransientError | None]:
    """Unsubscribe each address from every configured list; "not in the list" is fine. Returns
    how many were unsubscribed and, when Campaigns could not be reached for the rest (its limit,
    its lock, an outage), the error that stopped it: no further Campaigns call is made then.

    ``marks``: per address, what its unsubscribes are remembered under (`sync.taken`): an
    address and list done under the same mark before is not sent again."""
    done = 0
    absent: list[tuple[str, str]] = []
    stopped: ZohoTransientError | None = None
    marks = marks or {}
    pairs = [(email, list_key) for email in emails for list_key in settings.ZOHO_CAMPAIGNS_LIST_KEYS]
    keys = {
        (email, list_key): f"campaigns-unsubscribed:{list_key}:{marks[email]}"
        for email, list_key in pairs
        if email in marks
    }
    remembered = taken(keys.values())
    for email, list_key in pairs:
        key = keys.get((email, list_key))
        if key in remembered:
            # An earlier attempt of this withdrawal had it taken. Told to the opt-out clock again
            # (which keeps the time it has): that attempt's worker may have died before telling it.
            absent.append((email, list_key))
            continue
        try:
            zoho.campaigns.unsubscribe(list_key, email)
            done += 1
        except ZohoPermanentError as exc:
            if exc.code != CAMPAIGNS_NOT_IN_LIST:
                logger.warning("Campaigns unsubscribe of %s from %s failed: %s", email, list_key, exc)
                continue
        except ZohoTransientError as exc:
            stopped = exc
            break
        absent.append((email, list_key))
        if key is not None:
            taken_mark(key)
    # The opt-out clock: each address is now out of these lists (or was never in one).
    withdrawal_clocks_unsubscribed(done=absent)
    return done, stopped


def _unsubscribe_marks(contacts: list[Contact]) -> dict[str, str]:
    """Per address, what its unsubscribes are remembered under: the contact, the version of its
    identity (its address) and the head of each of its consent chains (an event's hash, unique
    to it)."""
    heads: dict[int, list[str]] = defaultdict(list)
    states = ConsentState.objects.filter(contact_id__in=[c.pk for c in contacts if c.email])
    for contact_id, head_hash in states.order_by("purpose_id").values_list("contact_id", "head_hash"):
        heads[contact_id].append(head_hash)
    return {
        contact.email: hashlib.sha256(
            f"{contact.pk}:{contact.identity_version}:{','.join(heads[contact.pk])}".encode()
        ).hexdigest()
        for contact in contacts
        if contact.email
    }


def _email_not_permitted(projection: Projection) -> bool:
    return projection.values.get("Email_Opt_Out") is True or (
        projection.values.get("Data_Processing_Basis_Details.Contact_Through_Email") is False
    )
