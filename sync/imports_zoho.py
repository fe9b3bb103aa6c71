"""The import of the consent already in Zoho: what CRM records and Campaigns lists say, recorded
in the ledger as ``source=import`` events (``manage.py import_zoho_consent``, docs/import.md).

**Reading.** Every CRM record of ``ZOHO_MODULES`` (Contacts; Leads when configured; only
those modified since ``since``, when given), by COQL
keyset pages of 2,000 in id order, or by Bulk Read (200,000 rows a job page, the next page
asked by Zoho's ``next_page_token``) when the CRM holds more than
``RECONCILE_BULK_THRESHOLD`` records, as reconciliation decides (one COQL call with an OFFSET
at the threshold tells). Then the unsubscribed contacts of every configured Campaigns list
(``ZOHO_CAMPAIGNS_LIST_KEYS``). Rows are streamed and written in batches, so memory does not
grow with the CRM.

**What a record says**, per purpose, through the active field mappings (`sync.mappings`):

* a ``not_consented`` field that is set (``Email_Opt_Out`` true) is an **opt-out**, whatever
  else the record says (the least permissive state wins);
* else a ``consented`` field that is set (``SMS_Opt_In`` true, the consent object's
  ``Contact_Through_Email``) is an **opt-in**, recorded with ``evidence.legacy = true`` and
  the record's ``Consent_Date`` (its ``occurred_at``; else ``Modified_Time``) and
  ``Consent_Through``. The ledger's rules still hold: it cites the policy version in force on
  that date (or the one given), and a purpose with double opt-in takes it only when the
  consent object shows consent obtained through Email (Zoho's consent mail, which the person
  confirmed from their mailbox; ``double_opt_in_confirmed_at`` is its ``Consent_Date``);
* a field not set says nothing (an unticked box is no decision).

A Campaigns ``unsub`` row is an opt-out of email marketing (Campaigns gives no time: its
``occurred_at`` is when the run began). Active and bounced rows are not decisions (a list
row carries no confirmation; bounces are the Campaigns pull's suppressions).

Every event's evidence names what it came from: the record id, the field values,
``Modified_Time``, ``Modified_By`` (id, and name from the users API), or the list key, its
status and row. Contacts are found or made from the record (email, the record id as their
Zoho id when it is a Contacts record, so they are linked to it; a Lead's person is linked by
the sync, by email; the phone only when there is no email; names only where the ledger has none), through the one write path (`consent_ingest_batch`).

**The ledger's own decisions stand.** A purpose for which the ledger already holds a decision
(any but this import's own) is not imported for that contact (counted as ``ledger_decides``): the
import brings in what the ledger does not know; afterwards the sync's rule of direction
deals with CRM-side changes.

**Again, and after a crash.** Each event's idempotency key is the record id, its
``Modified_Time`` and the purpose (``import-zoho:crm:…``), or the list key, the address and
its status (``import-zoho:campaigns:…``); keys already in the ledger are skipped before
writing, so a second run records nothing. Each batch commits its events together with the
run's cursor (`ImportRun`): a run whose process died is taken over by the next command and
goes on from the last committed batch.

**Bad records** (a field of the wrong type, no usable time, an invalid email, a CSV row that
does not fit its header) are reported with their id and reason, and the import goes on.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from compliance import services
from compliance.identifiers import normalise_email, normalise_phone
from compliance.models import (
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    PolicyVersion,
    Purpose,
    Source,
)
from compliance.services.consent import consent_check
from sync.crm_changes import coerce, crm_user_names, parse_time
from sync.import_models import PROBLEMS_KEPT, ImportRun
from sync.models import FieldMapping
from sync.projection import BASIS_WORDS, CONSENT_OBJECT, active_mappings
from sync.reconcile.crm_rows import coql_getter
from sync.zoho import ZohoClient
from sync.zoho.crm import COQL_MAX_ROWS
from sync.zoho.errors import ZohoPermanentError, ZohoTransientError

logger = logging.getLogger("sync.imports_zoho")

COQL, BULK = "coql", "bulk"
CONTACTS = "Contacts"
SYSTEM_FIELDS = ("Email", "Modified_By", "Modified_Time")
CONSENT_KEYS = ("Consent_Date", "Consent_Through", "Data_Processing_Basis")
OPTIONAL_FIELDS = ("First_Name", "Last_Name", "Phone", "Data_Processing_Basis")
# Records per batch: one transaction with the run's cursor (its events in chunks of 100).
BATCH = 500
# A run on another host is taken for dead when its heartbeat is older than this.
STALE_AFTER = timedelta(minutes=10)
EMAIL_PURPOSE = "email_marketing"
KEY_PREFIX = "import-zoho"


class ImportBusy(Exception):
    """Another process is running the import."""


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
        criteria = {
            "field": {"api_name": "Modified_Time"},
            "comparator": "greater_equal",
            "value": since.astimezone(UTC).isoformat(timespec="seconds"),
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
        table = bulk.table(job.id)
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
            idempotency_key=f"{KEY_PREFIX}:campaigns:{list_key}:{email}:unsub",
            evidence=evidence,
            reason="Imported from Zoho Campaigns",
        ),
        where=f"campaigns {list_key}",
        email=email,
        zoho_id="",
    )


# Writing --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What a batch did (added to the run's counters in the batch's transaction)."""

    records_read: int = 0
    records_bad: int = 0
    list_rows_read: int = 0
    events_recorded: int = 0
    events_existing: int = 0
    ledger_decides: int = 0
    refused: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    def problem(self, where: str, reason: str) -> None:
        self.problems.append({"where": where, "reason": reason[:300]})


def _sift(candidates: list[Candidate], tally: Tally) -> list[Candidate]:
    """Drop the decisions already in the ledger (their keys) and those for purposes the ledger
    decides from elsewhere; fit the identity to the contact the ledger holds. Reads only."""
    keys = [c.decision.idempotency_key for c in candidates]
    existing = set(
        ConsentEvent.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True)
    )
    fresh = []
    for c in candidates:
        if c.decision.idempotency_key in existing:
            c.outcome = "already recorded"
            tally.events_existing += 1
        else:
            fresh.append(c)
    if not fresh:
        return []
    zoho_ids = {c.zoho_id for c in fresh if c.zoho_id}
    emails = {c.email for c in fresh if c.email}
    contacts = list(
        Contact.objects.filter(Q(zoho_id__in=zoho_ids) | Q(email__in=emails)).values(
            "pk", "zoho_id", "email", "first_name", "last_name"
        )
    )
    by_zoho = {c["zoho_id"]: c for c in contacts if c["zoho_id"]}
    by_email = {c["email"]: c for c in contacts if c["email"]}
    decided = {
        (contact_id, code)
        for contact_id, code in ConsentState.objects.filter(
            contact_id__in=[c["pk"] for c in contacts], version__gt=0
        )
        .exclude(event__idempotency_key__startswith=f"{KEY_PREFIX}:")
        .values_list("contact_id", "purpose__code")
    }
    out = []
    for c in fresh:
        contact = by_zoho.get(c.zoho_id) or by_email.get(c.email)
        if contact is not None:
            if (contact["pk"], c.decision.purpose) in decided:
                c.outcome = "ledger decides"
                tally.ledger_decides += 1
                continue
            if contact["first_name"] or contact["last_name"]:
                # Names are identifiers too: never overwritten by the import.
                c.identity = services.ContactIdentity(
                    email=c.identity.email,
                    phone=c.identity.phone,
                    app_user_id=c.identity.app_user_id,
                    zoho_id=c.identity.zoho_id,
                )
        out.append(c)
    return out


def _precheck(
    candidates: list[Candidate], tally: Tally, lookups: services.Lookups, *, full: bool
) -> list[Candidate]:
    """Clearer words for an opt-in the import cannot give, and with ``full`` (the dry run's
    verdicts) every rule of the ledger, before any write. (A real run leaves the other rules to
    the write path, which checks each decision anyway.)"""
    now = timezone.now()
    out = []
    for c in candidates:
        d = c.decision
        reason = ""
        if d.status == ConsentStatus.OPTED_IN and not d.policy_version:
            reason = (
                f"no published policy version was in force on {d.occurred_at.date().isoformat()}: publish the "
                "notice then in force, or give --policy-version"
            )
        elif (
            d.status == ConsentStatus.OPTED_IN
            and "double_opt_in_confirmed_at" not in d.evidence
            and (lookups.purpose(d.purpose).double_opt_in_required)
        ):
            reason = (
                f"{d.purpose} asks for double opt-in, and the CRM consent object does not show consent "
                "obtained through Email (Zoho's consent mail); left for a re-permission campaign"
            )
        elif full:
            try:
                services.consent_input_check(identity=c.identity, decision=d)
                consent_check(d, api_client=None, actor_user=None, lookups=lookups, now=now)
            except services.ConsentRejected as exc:
                reason = f"{exc.field}: {exc.message}"
        if reason:
            c.outcome = f"refused: {reason}"
            tally.refused += 1
            tally.problem(c.where, f"{d.purpose} {d.status} not recorded: {reason}")
            continue
        out.append(c)
    return out


def _record(candidates: list[Candidate], tally: Tally, lookups: services.Lookups) -> None:
    if not candidates:
        return
    outcomes = services.consent_ingest_batch(
        items=[(c.identity, c.decision) for c in candidates], api_client=None, lookups=lookups
    )
    for c, outcome in zip(candidates, outcomes, strict=True):
        if isinstance(outcome, services.RecordResult):
            if outcome.created:
                c.outcome = "recorded"
                tally.events_recorded += 1
            else:
                c.outcome = "already recorded"
                tally.events_existing += 1
        elif isinstance(outcome, services.ConsentRejected):
            c.outcome = f"refused: {outcome.field}: {outcome.message}"
            tally.refused += 1
            tally.problem(
                c.where, f"{c.decision.purpose} {c.decision.status} not recorded: {outcome.message}"
            )
        else:
            c.outcome = "refused: the key was recorded before with other content"
            tally.refused += 1
            tally.problem(
                c.where, f"{c.decision.purpose}: idempotency key recorded before with other content"
            )


# The run --------------------------------------------------------------------------------------


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_alive(run: ImportRun, now: datetime) -> bool:
    """Whether the process running the run is alive (on this host: by its pid; elsewhere: by
    its heartbeat)."""
    if not run.owner:
        return False  # stopped on an error
    host, _, pid = run.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return run.heartbeat_at is not None and now - run.heartbeat_at < STALE_AFTER


def import_run_claim(
    *, method: str, since: datetime | None, requested_by: str = "", fresh: bool = False
) -> ImportRun:
    """The run to work on: the unfinished one, taken over when its process is gone (ImportBusy
    when it still runs), or a new one. ``fresh``: a stopped run is marked failed instead."""
    now = timezone.now()
    running = ImportRun.objects.filter(status=ImportRun.Status.RUNNING).first()
    if running is not None:
        if run_alive(running, now):
            raise ImportBusy(
                f"Import {running.pk} is running ({running.owner}, last progress {running.heartbeat_at})."
            )
        if fresh:
            ImportRun.objects.filter(pk=running.pk, owner=running.owner).update(
                status=ImportRun.Status.FAILED,
                finished_at=now,
                error="Abandoned (--fresh) after its process stopped.",
            )
        else:
            taken = ImportRun.objects.filter(pk=running.pk, owner=running.owner).update(
                owner=_me(), heartbeat_at=now, resumed=running.resumed + 1
            )
            if not taken:
                raise ImportBusy(f"Import {running.pk} was just taken over by another process.")
            running.refresh_from_db()
            if running.error:
                running.error = ""
                running.save(update_fields=["error"])
            return running
    try:
        with transaction.atomic():
            return ImportRun.objects.create(
                method=method, since=since, requested_by=requested_by[:150], owner=_me(), heartbeat_at=now
            )
    except IntegrityError:
        raise ImportBusy("Another import started at the same moment.") from None


@dataclass
class Progress:
    run: ImportRun | None
    tally: Tally
    note: str = ""
    table: list[Candidate] = field(default_factory=list)


Reporter = Callable[[Progress], None]


def _commit(run: ImportRun, tally: Tally, cursor: dict[str, Any], *, phase: str | None = None) -> None:
    """Add a batch's counts, move the cursor, beat the heart: in the batch's transaction."""
    for name in ("records_read", "records_bad", "list_rows_read", "events_recorded", "events_existing",
                 "ledger_decides", "refused"):  # fmt: skip
        setattr(run, name, getattr(run, name) + getattr(tally, name))
    room = PROBLEMS_KEPT - len(run.problems)
    if room > 0 and tally.problems:
        run.problems = [*run.problems, *tally.problems[:room]]
    run.cursor = cursor
    if phase is not None:
        run.phase = phase
    run.heartbeat_at = timezone.now()
    run.save()


def zoho_import(
    *,
    zoho: ZohoClient,
    run: ImportRun | None,
    method: str,
    since: datetime | None = None,
    policy_label: str | None = None,
    list_keys: Sequence[str] | None = None,
    batch: int = BATCH,
    report: Reporter | None = None,
) -> Tally:
    """Import what Zoho says (see the module). ``run=None`` is the dry run: nothing is written,
    and ``report`` gets each batch's verdicts (`Progress.table`). Returns the totals of this call."""
    dry = run is None
    run_id = None if run is None else run.pk
    started_at = run.started_at if run is not None else timezone.now()
    lookups = services.Lookups()
    rules = rules_load(zoho=zoho, method=method, run_id=run_id, policy_label=policy_label)
    all_mappings = [m for ms in rules.mappings.values() for m in ms]
    total = Tally()
    cursor: dict[str, Any] = dict(run.cursor) if run is not None else {}

    def flush(
        candidates: list[Candidate],
        tally: Tally,
        new_cursor: dict[str, Any],
        note: str,
        phase: str | None = None,
    ) -> None:
        table = list(candidates)
        if dry:
            ready = _precheck(_sift(candidates, tally), tally, lookups, full=True)
            for c in ready:
                c.outcome = "would record"
        else:
            assert run is not None
            with transaction.atomic():
                ready = _precheck(_sift(candidates, tally), tally, lookups, full=False)
                _record(ready, tally, lookups)
                _commit(run, tally, new_cursor, phase=phase)
        for name in ("records_read", "records_bad", "list_rows_read", "events_recorded", "events_existing",
                     "ledger_decides", "refused"):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(tally, name))
        total.problems.extend(tally.problems)
        if report is not None:
            report(Progress(run, tally, note, table))

    # CRM records, module by module (ZOHO_MODULES: Contacts, and Leads when configured)
    if run is None or run.phase == ImportRun.Phase.CRM:
        crm = dict(cursor.get("crm") or {})
        # Rows read so far (committed ones included), and those of the page a resumed run skips.
        seen = {"read": run.records_read if run is not None else 0, "skip": int(crm.get("page_rows") or 0)}
        modules = list(settings.ZOHO_MODULES) or [CONTACTS]
        first = modules.index(crm["module"]) if crm.get("module") in modules else 0
        for module in modules[first:]:
            if crm.get("module", CONTACTS) != module:
                crm = {"module": module}
            fields = crm_fields(zoho, all_mappings, module)
            last_module = module == modules[-1]
            if method == COQL:
                rows = crm_rows_coql(zoho, fields, since=since, after_id=crm.get("last_id"), module=module)
            else:

                def on_page(count: int | None, more: bool, last_module: bool = last_module) -> None:
                    # The number to read is known once the last page of the last module is.
                    if run is not None and count is not None and last_module and not more:
                        run.records_total = seen["read"] - seen["skip"] + count
                    seen["skip"] = 0

                rows = crm_rows_bulk(
                    zoho,
                    fields,
                    since=since,
                    page_token=crm.get("page_token"),
                    skip=int(crm.get("page_rows") or 0),
                    skip_last_id=str(crm.get("last_id") or ""),
                    on_page=on_page,
                    module=module,
                )
            candidates: list[Candidate] = []
            tally = Tally()
            note = "crm" if module == CONTACTS else f"crm {module}"
            for count, row in enumerate(rows, 1):
                tally.records_read += 1
                seen["read"] += 1
                try:
                    candidates.extend(crm_candidates(row, rules))
                except BadRecord as exc:
                    where = "crm" if module == CONTACTS else f"crm {module}"
                    tally.problem(f"{where} {row.values.get('id') or '?'}", str(exc))
                    tally.records_bad += 1
                record_id = str(row.values.get("id") or "")
                if method == COQL:
                    if record_id.isdigit():
                        crm = {"module": module, "last_id": record_id}
                else:
                    crm = {
                        "module": module,
                        "page_token": row.page_token,
                        "page_rows": row.page_row,
                        "last_id": record_id,
                    }
                if count % batch == 0:
                    flush(candidates, tally, {"crm": crm}, note)
                    candidates, tally = [], Tally()
            if last_module:
                cursor = {"crm": crm, "campaigns": {"list": 0}}
                flush(candidates, tally, cursor, note, ImportRun.Phase.CAMPAIGNS)
            else:
                crm = {"module": modules[modules.index(module) + 1]}
                flush(candidates, tally, {"crm": crm}, note)

    # Campaigns lists: each list read whole again after a crash (its rows carry no stable order)
    keys = list(list_keys if list_keys is not None else settings.ZOHO_CAMPAIGNS_LIST_KEYS)
    start = int((cursor.get("campaigns") or {}).get("list") or 0)
    for index in range(start, len(keys)):
        list_key = keys[index]
        candidates, tally = [], Tally()
        try:
            for count, entry in enumerate(zoho.campaigns.list_subscribers(list_key, "unsub"), 1):
                tally.list_rows_read += 1
                try:
                    candidates.append(
                        campaigns_candidate(list_key, entry, occurred=started_at, run_id=run_id)
                    )
                except BadRecord as exc:
                    tally.records_bad += 1
                    tally.problem(f"campaigns {list_key}", str(exc))
                if count % batch == 0:
                    flush(
                        candidates, tally, {**cursor, "campaigns": {"list": index}}, f"campaigns {list_key}"
                    )
                    candidates, tally = [], Tally()
        except ZohoPermanentError as exc:
            # A list Campaigns does not know (a wrong key): reported, and the other lists go on.
            # (A transient error stops the run, to be resumed.)
            tally.problem(f"campaigns {list_key}", f"the list could not be read: {exc}")
        cursor = {**cursor, "campaigns": {"list": index + 1}}
        flush(candidates, tally, cursor, f"campaigns {list_key}")
    if run is not None:
        run.phase = ImportRun.Phase.DONE
        run.status = ImportRun.Status.DONE
        run.finished_at = timezone.now()
        run.save()
    return total


def import_run_stop(run: ImportRun, exc: BaseException) -> None:
    """The run stopped on an error (Zoho down, a bug): it stays to be resumed by the next
    command, which goes on from its last committed batch."""
    ImportRun.objects.filter(pk=run.pk).update(owner="", error=f"{type(exc).__name__}: {exc}"[:2000])
