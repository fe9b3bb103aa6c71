"""The default field mapping for a standard Zoho org (created by migration sync.0003), and what a
mapping's history keeps of each version."""

from __future__ import annotations

from typing import Any

# A standard Zoho org: Email_Opt_Out is the inverse of email consent; the GDPR
# consent object carries email and phone; custom fields carry the rest.
DEFAULT_MAPPINGS = [
    ("email_marketing", "Email_Opt_Out", "not_consented", "both"),
    ("email_marketing", "Data_Processing_Basis_Details.Contact_Through_Email", "consented", "to_zoho"),
    ("phone_marketing", "Data_Processing_Basis_Details.Contact_Through_Phone", "consented", "both"),
    ("sms_marketing", "SMS_Opt_In", "consented", "both"),
    ("profiling", "Profiling_Consent", "consented", "to_zoho"),
    ("third_party_sharing", "Third_Party_Sharing_Consent", "consented", "to_zoho"),
]


def field_mappings_install(field_mapping_model: Any, purpose_model: Any) -> None:
    """Create the default mappings where none is active for the field; takes models so migrations can pass theirs."""
    for code, field, transform, direction in DEFAULT_MAPPINGS:
        field_mapping_model.objects.get_or_create(
            crm_field=field,
            is_active=True,
            defaults={
                "purpose": purpose_model.objects.get(code=code),
                "transform": transform,
                "direction": direction,
            },
        )


def field_mapping_version_values(mapping: Any) -> dict[str, Any]:
    """What a `FieldMappingVersion` keeps of a mapping as saved; takes migrations' models too."""
    return {
        "mapping": mapping,
        "version": mapping.version,
        "purpose_id": mapping.purpose_id,
        "crm_field": mapping.crm_field,
        "transform": mapping.transform,
        "direction": mapping.direction,
        "is_active": mapping.is_active,
    }
