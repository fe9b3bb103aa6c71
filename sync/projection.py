"""The projection: the CRM field values that a contact's *current* ledger state implies.

Values are kept flat, with `Data_Processing_Basis_Details.<key>` for keys of
Zoho's nested consent object; `to_crm_record` nests them for a write and
`read_back` flattens a record read from Zoho the same way, so the two compare
field by field.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from compliance.lifecycle.links import preferences_url_for_crm
from compliance.lifecycle.tokens import link_generations
from compliance.models import ConsentState, ConsentStatus, Purpose, Source, Suppression
from sync.models import FieldMapping
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoPermanentError

logger = logging.getLogger(__name__)

CONSENT_OBJECT = "Data_Processing_Basis_Details"
PICKLISTS_KEY = "sync:consent-picklists"
# How long the consent picklists read from Zoho's field metadata are trusted before a push
# reads them again (one call).
PICKLISTS_TTL_S = 3600

# What each state of the ledger looks for among the org's Data_Processing_Basis values
# (compared without case, alone or after a "Consent - " style prefix): the values
# themselves always come from the field metadata, never from here.
BASIS_WORDS = {
    "obtained": ("obtained",),
    "awaiting": ("awaiting", "pending"),
    "not_responded": ("not responded",),
}
# The same for Consent_Through, by the source of the latest opt-in, in order of preference.
THROUGH_WORDS: dict[str, tuple[str, ...]] = {
    Source.MOBILE_APP: ("mobile app", "app", "portal", "others", "other"),
    Source.WEB_PORTAL: ("web form", "portal", "web", "others", "other"),
    Source.CUSTOMER_SERVICE: ("call", "phone", "others", "other"),
    Source.EMAIL_LINK: ("email",),
    Source.IMPORT: ("import", "others", "other"),
    Source.ADMIN: ("admin", "others", "other"),
}

# What each ledger frequency looks for among the frequency field's values (the values themselves
# come from the field's metadata).
FREQUENCY_WORDS: dict[str, tuple[str, ...]] = {
    "daily": ("daily", "every day", "täglich"),
    "weekly": ("weekly", "every week", "wöchentlich"),
    "monthly": ("monthly", "every month", "monatlich"),
}


@dataclass(frozen=True)
class ConsentPicklists:
    """The org's values of the consent object's picklists, from Zoho's field metadata, and of the
    frequency field's (ZOHO_FIELD_FREQUENCY, a custom picklist of module Contacts)."""

    basis: tuple[str, ...] = ()
    through: tuple[str, ...] = ()
    frequency: tuple[str, ...] = ()

    def basis_for(self, state: str) -> str | None:
        return _pick(self.basis, BASIS_WORDS[state])

    def through_for(self, source: str) -> str | None:
        return _pick(self.through, THROUGH_WORDS.get(source, ("others", "other")))

    def frequency_for(self, frequency: str) -> str | None:
        """The org's value for a ledger frequency (daily, weekly, monthly), matched by its word."""
        return _pick(self.frequency, FREQUENCY_WORDS.get(frequency, ())) if frequency else None


def _pick(values: tuple[str, ...], words: tuple[str, ...]) -> str | None:
    """The first value matching a word, in the words' order of preference."""
    for word in words:
        for value in values:
            text = value.strip().lower()
            if text == word or text.endswith(f"- {word}"):
                return value
    return None


def consent_picklists(*, zoho: ZohoClient | None = None) -> ConsentPicklists | None:
    """The consent picklists, cached for every process. With ``zoho`` they are read from the
    field metadata (module Consents, one call) when missing, older than an hour, or of
    another org; without, the cached ones (None before any push read them)."""
    cached = cache.get(PICKLISTS_KEY)
    frequency_field = settings.ZOHO_FIELD_FREQUENCY
    if zoho is None:
        return _picklists_of(cached) if cached else None
    fresh = (
        cached is not None
        and cached.get("org") == zoho.config.cache_prefix
        and cached.get("frequency_field", "") == frequency_field
        and time.time() - float(cached.get("at", 0)) < PICKLISTS_TTL_S
    )
    if not fresh:
        try:
            fields = zoho.crm.consent_fields()
        except ZohoPermanentError as exc:
            # The consent object's metadata is not to be had (how Zoho answers for it is
            # unverified): the pushes go on without its picklist values (Data_Processing_Basis,
            # Consent_Through), as for an org whose picklists name none of ours.
            logger.warning("Zoho gave no consent field metadata (%s): writing no picklist values", exc)
            fields = {}
        basis = fields.get("Data_Processing_Basis")
        through = fields.get("Consent_Through")
        # The frequency field's values from module Contacts' metadata (one more call, when mapped).
        frequency = zoho.crm.fields("Contacts").get(frequency_field) if frequency_field else None
        cached = {
            "org": zoho.config.cache_prefix,
            "at": time.time(),
            "basis": list(basis.picklist) if basis else [],
            "through": list(through.picklist) if through else [],
            "frequency_field": frequency_field,
            "frequency": list(frequency.picklist) if frequency else [],
        }
        cache.set(PICKLISTS_KEY, cached, None)
    assert cached is not None
    return _picklists_of(cached)


def _picklists_of(cached: Mapping[str, Any]) -> ConsentPicklists:
    frequency = (
        tuple(cached.get("frequency") or ())
        if cached.get("frequency_field", "") == settings.ZOHO_FIELD_FREQUENCY
        else ()
    )
    return ConsentPicklists(tuple(cached["basis"]), tuple(cached["through"]), frequency)


@dataclass(frozen=True)
class Projection:
    contact_id: int
    values: dict[str, Any]
    ledger_versions: dict[str, int] = field(default_factory=dict)
    compared: frozenset[str] = frozenset()

    def differences(self, actual: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Mapped fields whose value in Zoho is not the projected one: {field: (expected, actual)}."""
        return {
            name: (self.values[name], actual.get(name))
            for name in sorted(self.compared)
            if actual.get(name) != self.values[name]
        }


def active_mappings() -> list[FieldMapping]:
    return list(FieldMapping.objects.filter(is_active=True).select_related("purpose"))


def bounce_field() -> str:
    return str(settings.ZOHO_CUSTOM_FIELDS.get("bounce_reason") or "")


@dataclass(frozen=True)
class LifecycleFields:
    """The lifecycle's optional CRM fields (empty: not written): the frequency of one purpose
    (ZOHO_FIELD_FREQUENCY, ZOHO_FREQUENCY_PURPOSE) and the preference centre's URL
    (ZOHO_FIELD_PREFERENCES_URL), with each contact's link generation for that URL."""

    frequency: str = ""
    frequency_purpose: str = ""
    preferences_url: str = ""
    generations: Mapping[int, int] = field(default_factory=dict)


def lifecycle_fields(contact_ids: list[int]) -> LifecycleFields:
    url_field = settings.ZOHO_FIELD_PREFERENCES_URL
    return LifecycleFields(
        frequency=settings.ZOHO_FIELD_FREQUENCY,
        frequency_purpose=settings.ZOHO_FREQUENCY_PURPOSE,
        preferences_url=url_field,
        # One query, only when the URL is mapped.
        generations=link_generations(contact_ids) if url_field else {},
    )


def project(
    contact_ids: Iterable[int],
    mappings: list[FieldMapping] | None = None,
    *,
    picklists: ConsentPicklists | None = None,
) -> dict[int, Projection]:
    """Projections of many contacts in three queries. ``picklists``: the org's consent
    picklists (`consent_picklists`); None: the cached ones. A picklist value the org does
    not offer (or before any metadata was read) is left out, never guessed."""
    ids = list(contact_ids)
    mappings = active_mappings() if mappings is None else mappings
    picklists = picklists if picklists is not None else consent_picklists() or ConsentPicklists()
    pushed = [m for m in mappings if m.pushes]
    states: dict[int, dict[str, ConsentState]] = defaultdict(dict)
    for state in ConsentState.objects.filter(contact_id__in=ids, version__gt=0).select_related(
        "purpose", "event"
    ):
        states[state.contact_id][state.purpose.code] = state
    suppressed: dict[int, Suppression] = {}
    for suppression in Suppression.objects.filter(
        Q(channel=Purpose.Channel.EMAIL) | Q(kind=Suppression.Kind.ERASED),
        contact_id__in=ids,
        lifted_at__isnull=True,
    ).order_by("created_at"):
        suppressed.setdefault(suppression.contact_id, suppression)
    bounce = bounce_field()
    extra = lifecycle_fields(ids)
    return {
        contact_id: _project_one(
            contact_id,
            states.get(contact_id, {}),
            suppressed.get(contact_id),
            pushed,
            bounce,
            picklists,
            extra,
        )
        for contact_id in ids
    }


def _project_one(
    contact_id: int,
    states: dict[str, ConsentState],
    suppression: Suppression | None,
    mappings: list[FieldMapping],
    bounce: str,
    picklists: ConsentPicklists,
    extra: LifecycleFields | None = None,
) -> Projection:
    values: dict[str, Any] = {}
    for mapping in mappings:
        state = states.get(mapping.purpose.code)
        opted_in = state is not None and state.status == ConsentStatus.OPTED_IN
        if suppression is not None and (
            mapping.purpose.channel == Purpose.Channel.EMAIL or suppression.kind == Suppression.Kind.ERASED
        ):
            # A hard bounce or complaint is not a withdrawal, but still means "do not mail"; an
            # erased person's address or number come back means "do not contact" at all.
            opted_in = False
        values[mapping.crm_field] = mapping.value_for(opted_in)
    compared = frozenset(values)
    if bounce:
        values[bounce] = f"{suppression.kind}: {suppression.detail}".strip(": ") if suppression else None
        compared |= {bounce}
    if extra is not None and extra.frequency and picklists.frequency:
        # The purpose's frequency while opted in (none otherwise), as the org's picklist value;
        # left out while the field's values are unknown (never guessed).
        chosen = states.get(extra.frequency_purpose)
        frequency = chosen.frequency if chosen is not None and chosen.status == ConsentStatus.OPTED_IN else ""
        values[extra.frequency] = picklists.frequency_for(frequency)
        compared |= {extra.frequency}
    if extra is not None and extra.preferences_url:
        # Written with every push, never compared: the link is the same for a quarter
        # (`preferences_url_for_crm`), then a newer one (as valid) goes with the next push.
        values[extra.preferences_url] = preferences_url_for_crm(
            contact_id=contact_id, generation=extra.generations.get(contact_id, 0)
        )

    # The consent object stays true to the ledger: the latest opt-in, or what is pending.
    opt_ins = [s for s in states.values() if s.status == ConsentStatus.OPTED_IN and s.occurred_at]
    basis: str | None
    if opt_ins:
        latest = max(opt_ins, key=lambda s: s.occurred_at)  # type: ignore[arg-type,return-value]
        basis = picklists.basis_for("obtained")
        values[f"{CONSENT_OBJECT}.Consent_Date"] = latest.occurred_at.date().isoformat()  # type: ignore[union-attr]
        through = picklists.through_for(latest.event.source if latest.event else "")
        if through is not None:
            values[f"{CONSENT_OBJECT}.Consent_Through"] = through
    elif any(s.status == ConsentStatus.PENDING for s in states.values()):
        basis = picklists.basis_for("awaiting")
    else:
        basis = picklists.basis_for("not_responded")
    if basis is not None:
        values[f"{CONSENT_OBJECT}.Data_Processing_Basis"] = basis
    versions = {code: state.version for code, state in states.items()}
    return Projection(contact_id=contact_id, values=values, ledger_versions=versions, compared=compared)


def to_crm_record(
    zoho_id: str, values: Mapping[str, Any], *, consent_id: str | None = None
) -> dict[str, Any]:
    """A record for PUT /crm/v8/Contacts: flat keys nested back into Zoho's consent object.
    ``consent_id``: the record's consent record, which Zoho then updates; without it Zoho
    makes a new consent record on every write."""
    record: dict[str, Any] = {"id": zoho_id}
    for name, value in values.items():
        top, _, key = name.partition(".")
        if key:
            record.setdefault(top, {})[key] = value
        else:
            record[name] = value
    if consent_id and isinstance(record.get(CONSENT_OBJECT), dict):
        record[CONSENT_OBJECT] = {"id": consent_id, **record[CONSENT_OBJECT]}
    return record


def read_fields(values_or_fields: Iterable[str]) -> list[str]:
    """Top-level API names to ask for when reading the given flat fields back."""
    names = {name.partition(".")[0] for name in values_or_fields}
    return sorted(names | {"Modified_By", "Modified_Time", "Email"})


def read_back(record: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """Flatten a CRM record to the given flat field names (missing ones read as None)."""
    flat: dict[str, Any] = {}
    for name in fields:
        top, _, key = name.partition(".")
        value = record.get(top)
        if key:
            value = value.get(key) if isinstance(value, Mapping) else None
        flat[name] = value
    return flat
