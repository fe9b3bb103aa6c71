"""The Zoho import's reading side: CRM records (COQL or Bulk Read) and what each says, as
candidate ledger events (`sync.imports_zoho` records them; docs/import.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from compliance import services
from compliance.address_tokens import email_token
from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import (
    ConsentStatus,
    PolicyVersion,
    Purpose,
    Source,
)
from sync.crm_changes import coerce, crm_user_names, parse_time
from sync.models import FieldMapping
from sync.projection import BASIS_WORDS, CONSENT_OBJECT, active_mappings
from sync.reconcile.crm_rows import coql_getter
from sync.zoho import ZohoClient
from sync.zoho.crm import COQL_MAX_ROWS
from sync.zoho.errors import ZohoTransientError

COQL, BULK = "coql", "bulk"
CONTACTS = "Contacts"
SYSTEM_FIELDS = ("Email", "Modified_By", "Modified_Time")
CONSENT_KEYS = ("Consent_Date", "Consent_Through", "Data_Processing_Basis")
OPTIONAL_FIELDS = ("First_Name", "Last_Name", "Phone", "Data_Processing_Basis")
EMAIL_PURPOSE = "email_marketing"
KEY_PREFIX = "import-zoho"


# Reading Zoho -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrmRow:
    """One CRM record as read, by field name (dotted for the consent object's keys), with
    where it stands in the read (for the run's cursor)."""

    values: Mapping[str, Any]
    module: str = CONTACTS
    page_token: str | None = None  # Bulk Read: the page it came from (None: the first)
    page_row: int = 0  # Bulk Read: its position in the page, from 1
    bad: str = ""  # why the row could not be read at all


def crm_fields(zoho: ZohoClient, mappings: Sequence[FieldMapping], module: str = CONTACTS) -> list[str]:
    """The fields to read: every mapped field, the consent object's keys, the names and the
    phone, and the app user id field, of those the org has (one metadata call)."""
    known = set(zoho.crm.fields(module))
    wanted = {m.crm_field for m in mappings}
    wanted |= {f"{CONSENT_OBJECT}.{key}" for key in CONSENT_KEYS}
    wanted |= set(OPTIONAL_FIELDS)
    if settings.ZOHO_FIELD_APP_USER_ID:
        wanted.add(settings.ZOHO_FIELD_APP_USER_ID)
    return sorted(name for name in wanted if name.partition(".")[0] in known and name not in SYSTEM_FIELDS)


def method_choose(zoho: ZohoClient, *, since: datetime | None) -> str:
    """Bulk Read when the CRM holds more than ``RECONCILE_BULK_THRESHOLD`` records to read, as
    reconciliation decides; told by one COQL row asked at that offset (COQL's OFFSET reaches
    100,000)."""
    threshold = min(int(settings.RECONCILE_BULK_THRESHOLD), 99_999)
    where = _coql_since(since) or "id > '0'"
    query = f"select id from {CONTACTS} where {where} order by id asc limit 1 offset {threshold}"  # noqa: S608
    rows, _ = zoho.crm.coql(query)
    return BULK if rows else COQL


def _coql_since(since: datetime | None) -> str:
    if since is None:
        return ""
    return f"Modified_Time >= '{since.astimezone(UTC).isoformat(timespec='seconds')}'"


def crm_rows_coql(
    zoho: ZohoClient,
    fields: list[str],
    *,
    since: datetime | None,
    after_id: str | None,
    module: str = CONTACTS,
) -> Iterator[CrmRow]:
    """COQL keyset pages in id order, from the record after ``after_id``."""
    where = " and ".join(
        part for part in (_coql_since(since), f"id > '{after_id}'" if after_id else "") if part
    )
    getters = {name: coql_getter(name) for name in fields}
    select = [*fields, *SYSTEM_FIELDS]
    for record in zoho.crm.coql_iter(select, module=module, where=where or None, page_size=COQL_MAX_ROWS):
        values: dict[str, Any] = {
            "id": str(record.get("id") or ""),
            **{n: g(record) for n, g in getters.items()},
        }
        for name in SYSTEM_FIELDS:
            values[name] = record.get(name)
        yield CrmRow(values, module)


def crm_rows_bulk(
    zoho: ZohoClient,
    fields: list[str],
    *,
    since: datetime | None,
    page_token: str | None,
    skip: int,
    skip_last_id: str,
    on_page: Callable[[int | None, bool], None] | None = None,
    module: str = CONTACTS,
) -> Iterator[CrmRow]:
    """Bulk Read pages from the one ``page_token`` names (None: the first), the first ``skip``
    rows of it left out when its row ``skip`` is still ``skip_last_id`` (else the whole page is
    read again: the idempotency keys keep that harmless). The next page's job is asked before
    this one is read, so Zoho builds it meanwhile; past 200,000 rows by token, never by number."""
    poll_s = float(settings.RECONCILE_BULK_POLL_S)
    select = [*fields, *SYSTEM_FIELDS]
    criteria = None
    if since is not None:
        # Always a group, even of one condition: v8 refuses a bare condition.
        criteria = {
            "group_operator": "and",
            "group": [
                {
                    "field": {"api_name": "Modified_Time"},
                    "comparator": "greater_equal",
                    "value": since.astimezone(UTC).isoformat(timespec="seconds"),
                }
            ],
        }
    bulk = zoho.crm.bulk
    token = page_token
    job = bulk.wait(bulk.create(select, module=module, criteria=criteria, page_token=token).id, poll_s=poll_s)
    while True:
        if on_page is not None:
            on_page(job.count, job.more_records)
        following_token = job.next_page_token if job.more_records else None
        if job.more_records and following_token is None:
            raise ZohoTransientError(f"bulk read job {job.id} has more records but no next_page_token")
        following = (
            bulk.create(select, module=module, criteria=criteria, page_token=following_token)
            if following_token
            else None
        )
        table = bulk.table(job.id, retry_s=poll_s)
        header = next(table, None)
        if header is not None:
            rows: Iterator[list[str]] = table
            position = 0
            id_at = header.index("id") if "id" in header else 0
            if skip:
                held = [cells for _, cells in zip(range(skip), table, strict=False)]
                if len(held) == skip and len(held[-1]) > id_at and held[-1][id_at] == skip_last_id:
                    position = skip
                else:
                    rows = _chain(held, table)
            width = len(header)
            for cells in rows:
                position += 1
                if len(cells) != width:
                    values = {"id": cells[id_at] if len(cells) > id_at else ""}
                    bad = f"a CSV row of {len(cells)} cells, not {width}"
                    yield CrmRow(values, module, token, position, bad=bad)
                    continue
                yield CrmRow(dict(zip(header, cells, strict=True)), module, token, position)
        skip = 0
        if following is None:
            return
        token = following_token
        job = bulk.wait(following.id, poll_s=poll_s)


def _chain(first: list[list[str]], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield from first
    yield from rest


# What a record says ---------------------------------------------------------------------------


@dataclass
class Candidate:
    """One decision the import would record, with what the table shows."""

    identity: services.ContactIdentity
    decision: services.ConsentDecision
    where: str  # "crm 123…" or "campaigns <list>"
    email: str
    zoho_id: str
    outcome: str = ""  # recorded / already recorded / ledger decides / refused: …


class BadRecord(Exception):
    """A record the import cannot read: reported, and the import goes on."""


@dataclass
class Rules:
    """What the run needs to read records: the mappings by purpose, the policy versions, the users."""

    mappings: dict[str, list[FieldMapping]]
    double_opt_in: dict[str, bool]
    policies: list[PolicyVersion]  # published, newest effective date first
    policy_label: str | None
    user_names: dict[str, str]
    method: str
    run_id: int | None

    def policy_for(self, day: date) -> str | None:
        if self.policy_label:
            return self.policy_label
        for policy in self.policies:
            if policy.effective_at <= day:
                return policy.label
        return None


def rules_load(*, zoho: ZohoClient, method: str, run_id: int | None, policy_label: str | None) -> Rules:
    by_purpose: dict[str, list[FieldMapping]] = {}
    for mapping in active_mappings():
        by_purpose.setdefault(mapping.purpose.code, []).append(mapping)
    if (
        policy_label
        and not PolicyVersion.objects.filter(label=policy_label, published_at__isnull=False).exists()
    ):
        raise services.ConsentRejected(
            "policy_version", f"Unknown or unpublished policy version {policy_label!r}."
        )
    return Rules(
        mappings=by_purpose,
        double_opt_in=dict(Purpose.objects.values_list("code", "double_opt_in_required")),
        policies=list(PolicyVersion.objects.filter(published_at__isnull=False).order_by("-effective_at")),
        policy_label=policy_label,
        user_names=crm_user_names(zoho),
        method=method,
        run_id=run_id,
    )


def _flag(name: str, value: Any) -> bool | None:
    value = coerce(value)
    if value is None or isinstance(value, bool):
        return value
    raise BadRecord(f"{name} holds {str(value)[:40]!r}, not true or false")


def _words(value: Any, words: Sequence[str]) -> bool:
    text = str(value or "").strip().lower()
    return any(text == w or text.endswith(f"- {w}") for w in words)


def _consent_date(value: Any) -> date | None:
    text = str(coerce(value) or "").strip()
    if not text:
        return None
    try:
        return (
            date.fromisoformat(text[:10]) if len(text) >= 10 and text[4] == "-" else date.fromisoformat(text)
        )
    except ValueError:
        raise BadRecord(f"Consent_Date holds {text[:40]!r}, not a date") from None


def crm_candidates(row: CrmRow, rules: Rules) -> list[Candidate]:
    """The decisions one CRM record says (see the module), or BadRecord."""
    values = row.values
    if row.bad:
        raise BadRecord(row.bad)
    record_id = str(values.get("id") or "").strip()
    if not record_id.isdigit():
        raise BadRecord(f"the record id {record_id[:40]!r} is not a Zoho id")
    modified_raw = coerce(values.get("Modified_Time"))
    modified = parse_time(modified_raw)
    if modified is None:
        raise BadRecord(f"Modified_Time {str(modified_raw)[:40]!r} is not a time")
    email_raw = str(coerce(values.get("Email")) or "").strip()
    email = ""
    if email_raw:
        try:
            email = normalise_email(email_raw)
        except ValidationError:
            raise BadRecord(f"Email {email_raw[:60]!r} is not an email address") from None
    said: list[tuple[str, str, dict[str, Any]]] = []
    for purpose, mappings in rules.mappings.items():
        flags = {m.crm_field: _flag(m.crm_field, values.get(m.crm_field)) for m in mappings}
        withdrawn = any(
            flags[m.crm_field] is True
            for m in mappings
            if m.transform == FieldMapping.Transform.NOT_CONSENTED
        )
        opted_in = any(
            flags[m.crm_field] is True for m in mappings if m.transform == FieldMapping.Transform.CONSENTED
        )
        if withdrawn:
            said.append((purpose, ConsentStatus.OPTED_OUT, flags))
        elif opted_in:
            said.append((purpose, ConsentStatus.OPTED_IN, flags))
    if not said:
        return []
    consent_date = _consent_date(values.get(f"{CONSENT_OBJECT}.Consent_Date"))
    through = coerce(values.get(f"{CONSENT_OBJECT}.Consent_Through"))
    basis = coerce(values.get(f"{CONSENT_OBJECT}.Data_Processing_Basis")) or coerce(
        values.get("Data_Processing_Basis")
    )
    who = values.get("Modified_By")
    by_id = str(who.get("id") or "") if isinstance(who, Mapping) else str(coerce(who) or "")
    by_name = rules.user_names.get(by_id) or (str(who.get("name") or "") if isinstance(who, Mapping) else "")
    phone = None
    if not email and coerce(values.get("Phone")):
        try:
            phone = normalise_phone(str(values["Phone"]))
        except ValidationError:
            phone = None
    app_user_id = None
    if settings.ZOHO_FIELD_APP_USER_ID:
        app_user_id = str(coerce(values.get(settings.ZOHO_FIELD_APP_USER_ID)) or "").strip() or None
    identity = services.ContactIdentity(
        email=email or None,
        phone=phone,
        app_user_id=app_user_id,
        # A contact's Zoho id is its Contacts record; a Lead is linked by the sync (by email).
        zoho_id=record_id if row.module == CONTACTS else None,
        first_name=str(coerce(values.get("First_Name")) or "")[:100],
        last_name=str(coerce(values.get("Last_Name")) or "")[:100],
    )
    crm = {
        "module": row.module,
        "record_id": record_id,
        "modified_time": str(modified_raw),
        "modified_by": {"id": by_id, "name": by_name},
        "read_by": rules.method,
    }
    consent = {
        key: coerce(values.get(f"{CONSENT_OBJECT}.{key}"))
        for key in CONSENT_KEYS
        if coerce(values.get(f"{CONSENT_OBJECT}.{key}")) is not None
    }
    out: list[Candidate] = []
    moment = modified.astimezone(UTC).isoformat()  # one spelling, however Zoho renders it
    for purpose, status, flags in said:
        evidence: dict[str, Any] = {
            "zoho_crm": {**crm, "fields": flags, **({"consent": consent} if consent else {})}
        }
        if rules.run_id is not None:
            evidence["import_run"] = rules.run_id
        occurred = modified
        policy = None
        if status == ConsentStatus.OPTED_IN:
            evidence["legacy"] = True
            evidence["consent_date"] = consent_date.isoformat() if consent_date else None
            evidence["consent_through"] = through
            if consent_date is not None:
                occurred = datetime(consent_date.year, consent_date.month, consent_date.day, tzinfo=UTC)
            policy = rules.policy_for(occurred.date())
            # Zoho's consent mail, confirmed by the person: the double opt-in's confirmation.
            by_mail = _words(basis, BASIS_WORDS["obtained"]) and _words(through, ("email",))
            if rules.double_opt_in.get(purpose) and consent_date is not None and by_mail:
                evidence["double_opt_in_confirmed_at"] = occurred.isoformat()
                evidence["double_opt_in_basis"] = (
                    f"Zoho CRM consent object: Data_Processing_Basis {basis!r} through {through!r} "
                    f"on {consent_date.isoformat()}"
                )
        out.append(
            Candidate(
                identity=identity,
                decision=services.ConsentDecision(
                    purpose=purpose,
                    status=status,
                    source=Source.IMPORT,
                    occurred_at=occurred,
                    idempotency_key=f"{KEY_PREFIX}:crm:{record_id}:{moment}:{purpose}",
                    policy_version=policy,
                    evidence=evidence,
                    reason="Imported from Zoho CRM",
                ),
                where=f"crm {record_id}" if row.module == CONTACTS else f"crm {row.module} {record_id}",
                email=email,
                zoho_id=record_id if row.module == CONTACTS else "",
            )
        )
    return out


def campaigns_candidate(
    list_key: str, row: Mapping[str, Any], *, occurred: datetime, run_id: int | None
) -> Candidate:
    email_raw = str(row.get("contact_email") or row.get("Contact Email") or row.get("email") or "").strip()
    try:
        email = normalise_email(email_raw)
    except ValidationError:
        raise BadRecord(f"list {list_key}: {email_raw[:60]!r} is not an email address") from None
    evidence: dict[str, Any] = {
        "zoho_campaigns": {"list_key": list_key, "status": "unsub", "row": dict(row)},
        "occurred_at_is": "when this import began: Zoho Campaigns gives no unsubscribe time",
    }
    if run_id is not None:
        evidence["import_run"] = run_id
    return Candidate(
        identity=services.ContactIdentity(email=email),
        decision=services.ConsentDecision(
            purpose=EMAIL_PURPOSE,
            status=ConsentStatus.OPTED_OUT,
            source=Source.IMPORT,
            occurred_at=occurred,
            # The address's token, not the address: the key is hashed into the chain for good.
            idempotency_key=f"{KEY_PREFIX}:campaigns:{list_key}:{email_token(email)}:unsub",
            evidence=evidence,
            reason="Imported from Zoho Campaigns",
        ),
        where=f"campaigns {list_key}",
        email=email,
        zoho_id="",
    )


# Writing --------------------------------------------------------------------------------------
