"""The projection: the CRM field values that a contact's *current* ledger state implies.

Values are kept flat, with `Data_Processing_Basis_Details.<key>` for keys of
Zoho's nested consent object; `to_crm_record` nests them for a write and
`read_back` flattens a record read from Zoho the same way, so the two compare
field by field.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from compliance.models import ConsentState, ConsentStatus, Purpose, Source, Suppression
from sync.models import FieldMapping

CONSENT_OBJECT = "Data_Processing_Basis_Details"

# How Zoho's consent object names the way consent was given.
CONSENT_THROUGH = {
    Source.MOBILE_APP: "Mobile app",
    Source.WEB_PORTAL: "Web form",
    Source.CUSTOMER_SERVICE: "Phone",
    Source.EMAIL_LINK: "Email",
    Source.IMPORT: "Import",
    Source.ADMIN: "Admin",
}


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


def project(contact_ids: Iterable[int], mappings: list[FieldMapping] | None = None) -> dict[int, Projection]:
    """Projections of many contacts in three queries."""
    ids = list(contact_ids)
    mappings = active_mappings() if mappings is None else mappings
    pushed = [m for m in mappings if m.pushes]
    states: dict[int, dict[str, ConsentState]] = defaultdict(dict)
    for state in ConsentState.objects.filter(contact_id__in=ids, version__gt=0).select_related(
        "purpose", "event"
    ):
        states[state.contact_id][state.purpose.code] = state
    suppressed: dict[int, Suppression] = {}
    for suppression in Suppression.objects.filter(
        contact_id__in=ids, channel=Purpose.Channel.EMAIL, lifted_at__isnull=True
    ).order_by("created_at"):
        suppressed.setdefault(suppression.contact_id, suppression)
    bounce = bounce_field()
    return {
        contact_id: _project_one(
            contact_id, states.get(contact_id, {}), suppressed.get(contact_id), pushed, bounce
        )
        for contact_id in ids
    }


def _project_one(
    contact_id: int,
    states: dict[str, ConsentState],
    suppression: Suppression | None,
    mappings: list[FieldMapping],
    bounce: str,
) -> Projection:
    values: dict[str, Any] = {}
    for mapping in mappings:
        state = states.get(mapping.purpose.code)
        opted_in = state is not None and state.status == ConsentStatus.OPTED_IN
        if suppression is not None and mapping.purpose.channel == Purpose.Channel.EMAIL:
            # A hard bounce or complaint is not a withdrawal, but still means "do not mail".
            opted_in = False
        values[mapping.crm_field] = mapping.value_for(opted_in)
    compared = frozenset(values)
    if bounce:
        values[bounce] = f"{suppression.kind}: {suppression.detail}".strip(": ") if suppression else None
        compared |= {bounce}

    # The consent object stays true to the ledger: the latest opt-in, or what is pending.
    opt_ins = [s for s in states.values() if s.status == ConsentStatus.OPTED_IN and s.occurred_at]
    if opt_ins:
        latest = max(opt_ins, key=lambda s: s.occurred_at)  # type: ignore[arg-type,return-value]
        values[f"{CONSENT_OBJECT}.Data_Processing_Basis"] = "Obtained"
        values[f"{CONSENT_OBJECT}.Consent_Date"] = latest.occurred_at.date().isoformat()  # type: ignore[union-attr]
        source = latest.event.source if latest.event else ""
        values[f"{CONSENT_OBJECT}.Consent_Through"] = CONSENT_THROUGH.get(source, "Other")  # type: ignore[call-overload]
    elif any(s.status == ConsentStatus.PENDING for s in states.values()):
        values[f"{CONSENT_OBJECT}.Data_Processing_Basis"] = "Awaiting"
    else:
        values[f"{CONSENT_OBJECT}.Data_Processing_Basis"] = "Not Responded"
    versions = {code: state.version for code, state in states.items()}
    return Projection(contact_id=contact_id, values=values, ledger_versions=versions, compared=compared)


def to_crm_record(zoho_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A record for PUT /crm/v8/Contacts: flat keys nested back into Zoho's consent object."""
    record: dict[str, Any] = {"id": zoho_id}
    for name, value in values.items():
        top, _, key = name.partition(".")
        if key:
            record.setdefault(top, {})[key] = value
        else:
            record[name] = value
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
