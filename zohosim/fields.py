"""CRM field metadata for Contacts/Leads, value validation and rendering of times."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from zohosim.config import CONSENT_BASIS_VALUES, SimConfig

# The consent object's Data_Processing_Basis values (zoho-api.md sections 5 and 11).
BASIS_VALUES = CONSENT_BASIS_VALUES
CONSENT_DETAIL_FIELDS: dict[str, str] = {
    "Contact_Through_Email": "boolean",
    "Contact_Through_Phone": "boolean",
    "Contact_Through_Survey": "boolean",
    "Contact_Through_Social": "boolean",
    "Consent_Date": "date",
    "Consent_Through": "picklist",
    "Consent_Remarks": "textarea",
    "Data_Processing_Basis": "picklist",
    "Lawful_Reason": "text",
    "Mail_Sent_Time": "datetime",
    "id": "bigint",
}
CONSENT_DETAIL_READ_ONLY = {"id"}

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$")


@dataclass(frozen=True)
class FieldDef:
    api_name: str
    data_type: str
    label: str
    read_only: bool = False  # system field, never writable
    custom: bool = False
    length: int = 255
    field_id: str = ""
    # A custom picklist's values: a write of any other value is refused (INVALID_DATA).
    picklist: tuple[str, ...] = ()


_STANDARD: list[tuple[str, str, bool]] = [
    ("id", "bigint", True),
    ("First_Name", "text", False),
    ("Last_Name", "text", False),
    ("Email", "email", False),
    ("Phone", "phone", False),
    ("Mobile", "phone", False),
    ("Email_Opt_Out", "boolean", False),
    ("Data_Processing_Basis", "picklist", False),
    ("Data_Processing_Basis_Details", "consent_lookup", False),
    ("Unsubscribed_Mode", "picklist", False),
    ("Unsubscribed_Time", "datetime", False),
    ("Created_Time", "datetime", True),
    ("Modified_Time", "datetime", True),
    ("Created_By", "ownerlookup", True),
    ("Modified_By", "ownerlookup", True),
]
UNSUBSCRIBED_MODES = ("Manual", "Unsubscribe Link", "Consent form", "Zoho Campaigns")  # UNVERIFIED values


def build_fields(config: SimConfig) -> dict[str, FieldDef]:
    out: dict[str, FieldDef] = {}
    n = 1
    for name, dtype, ro in _STANDARD:
        out[name] = FieldDef(
            name, dtype, name.replace("_", " "), read_only=ro, field_id=f"5725767000000{n:06d}"
        )
        n += 1
    for spec in config.custom_fields:
        name = spec["api_name"]
        out[name] = FieldDef(
            name,
            spec.get("data_type", "text"),
            spec.get("label", name.replace("_", " ")),
            custom=True,
            field_id=f"5725767000000{n:06d}",
            picklist=tuple(spec.get("pick_list_values") or ()),
        )
        n += 1
    return out


def json_type(data_type: str) -> str:
    return {
        "boolean": "boolean",
        "bigint": "string",
        "consent_lookup": "jsonobject",
        "ownerlookup": "jsonobject",
        "integer": "integer",
    }.get(data_type, "string")


def check_value(data_type: str, value: Any) -> str | None:
    """Return the expected data type when ``value`` does not fit ``data_type``, else None."""
    if value is None:
        return None if data_type != "boolean" else "boolean"
    if data_type == "boolean":
        return None if isinstance(value, bool) else "boolean"
    if data_type == "integer":
        return None if isinstance(value, int) and not isinstance(value, bool) else "integer"
    if data_type in ("text", "textarea", "picklist", "phone", "email", "bigint"):
        if not isinstance(value, str):
            return "string"
        if data_type == "email" and value and not EMAIL_RE.match(value):
            return "email"
        return None
    if data_type == "date":
        if not isinstance(value, str) or not DATE_RE.match(value):
            return "date"
        try:
            date.fromisoformat(value)
        except ValueError:
            return "date"
        return None
    if data_type == "datetime":
        if not isinstance(value, str) or not DATETIME_RE.match(value):
            return "datetime"
        return None
    if data_type == "consent_lookup":
        return None if isinstance(value, dict) else "jsonobject"
    return None


def tz_of(config: SimConfig) -> timezone:
    return timezone(timedelta(minutes=config.tz_offset_minutes))


def fmt_time(ts: float | None, config: SimConfig) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(int(ts), tz_of(config)).isoformat(timespec="seconds")


def parse_time(value: str) -> float:
    """Parse an ISO 8601 datetime (offset required, Z allowed) to epoch seconds."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
