"""Every page of the workbench under gunicorn over a 10,000,000-event ledger: p50/p95/max per page.

    .venv/bin/python bench/pages.py                       # build bench_pages (16 min idle in session 3), then measure
    .venv/bin/python bench/pages.py --skip-build          # measure again on the database already built
    .venv/bin/python bench/pages.py --database bench_pages_x --build-only   # build another one, no measuring
    .venv/bin/python bench/pages.py --finish              # beat's steps again on a built database
    .venv/bin/python bench/pages.py --events 200000       # a quick check on a small database
    .venv/bin/python bench/pages.py --skip-build --queries   # each page once in-process: its queries, timed

The database (bench_pages or `--database`, dropped and recreated by a build) holds:

- the ledger, built by `bench/_ledger_build.py` (COPY, hashes from `compliance.chain.event_hash`,
  ConsentState = each chain's head with its policy version, seals): `--events` events over
  `--contacts` contacts (default events / 5), five purposes, spread over three years up to an
  hour before the build. Most events pick their contact uniformly (a few events per contact and
  purpose); one in 500 goes to one of the first 1,000 contacts, log-uniformly, so a few contacts
  have long histories (contact 1 about 2,000 events at 10,000,000). Names come from 40 first
  names and 1,600 surnames (skewed: common surnames are shared by thousands), emails are
  first.last.n@example.com; two in three have a phone, half an app user id, nine in ten a Zoho
  CRM id. A policy version every quarter (12, texts of 40 paragraphs, a few reworded each
  time); an opt-in cites the version in effect when it occurred (one in five the one before);
- suppressions for one contact in 100 (hard bounces, complaints, manual; one in ten lifted);
- the sync's CRM link of every contact (linked, or not in CRM), and what the Campaigns pull saw
  (unsubscribes of one contact in 40, the hard bounces);
- sync data: `--older-calls` Zoho calls over the 24 days before the last 7 and `--calls` over
  those 7 (CRM updates and reads, COQL, search, Campaigns, token refreshes; about 4% errors and
  429s), a SyncPush per record of every successful CRM update call (about 3 per call), the
  call hours beat stored for the year before the call log (`CallHour`, the trends' history),
  `--discrepancies` discrepancies over a year (`--open` of them open, the rest resolved) with
  the evidence verify writes, 60 alerts (7 unacknowledged), 30 daily reconciliation runs,
  outbox rows for the newest 200,000 events (processed) and 120 pending;
- the verified push that carried each withdrawal of the last 90 days to CRM (but for the seeds'
  failing ones: phone of the last 3 days, email of the last day, and one in 3,000 stuck);
- `--access-log` access-log entries over a year (history views, searches, exports...);
- an officer, an admin, an auditor (and 7 more officers, in the access log) with the roles of
  compliance/roles.py;
- then what beat does, run by its own services: the opt-out clock (`optout_clock_run`: the
  clocks of the 90 days' withdrawals, settled against those pushes), the consent and policy
  tallies (`consent_day_tally`), the call hours and days (`callhour_tally`, `callday_tally`),
  30 nightly verify runs and tonight's, real (`ledger_verify_run`, the whole ledger).

Then the app runs under `gunicorn config.wsgi -w 2` (DEBUG=false, cache in Redis db 9 or
BENCH_PAGES_CACHE_URL, port 8790 or BENCH_PAGES_PORT) and this process, with httpx, signs
each role in and requests every page, and the read API's look-ups of a contact by email, phone
and app user id (`GET /api/v1/contacts`, each client with the key of an API client of its own
that may read contacts): first sequentially from one client (`--warmup` requests per page, then
`--requests` timed), then from 4 concurrent clients (each its own session or key, `--requests`
each, all starting together). A latency is the client's: from sending the request
to having read the whole answer. The load generator, gunicorn and PostgreSQL share the
machine's cores. The sync health page counts the calls of the 24 hours before *now*: measured
long after a build, it sees fewer (the script says how many). Before measuring, the script runs
beat's tallies again (`beat_tallies`), as a running desk has them, and while measuring, beat's
opt-out clock each minute (`ClockBeat`: the clock page shows the figures of its last run). Not measured: the Zoho
doctor's run (a POST that calls Zoho; its page, the last run, is), the demo's sent-mail page.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import random
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import _ledger_build

DB = "bench_pages"
# Overridable so that a second person can bench beside the first (own Redis, own port).
CACHE_URL = os.environ.get("BENCH_PAGES_CACHE_URL", "redis://127.0.0.1:6379/9")
PORT = int(os.environ.get("BENCH_PAGES_PORT", "8790"))
PASSWORD = "bench-pages-pass"
OFFICER, ADMIN, AUDITOR = "olivia-officer", "ada-admin", "aldo-auditor"
# A system calling the read API (GET /api/v1/contacts) with a key of contacts:read: each client
# of it (the sequential one, each concurrent one) an API client of its own, as several systems.
API_READER = "api:contacts-read"
API_READER_PREFIX = "bench-pages-reader-"
CONCURRENT_CLIENTS = 4
USERS = (OFFICER, ADMIN, AUDITOR, API_READER)

FIRST_NAMES = [
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hannah", "Ida", "Jonas", "Karl", "Lena",
    "Lukas", "Maria", "Mia", "Noah", "Olga", "Paul", "Rosa", "Sofia", "Tom", "Ute", "Vera", "Wolf", "Yara",
    "Zoe", "Amir", "Bea", "Chen", "Dana", "Elif", "Fatima", "Goran", "Ines", "Jan", "Kemal", "Lars",
    "Mehmet", "Nina", "Omar",
]  # fmt: skip
# 20 x 8 x 10 = 1,600 surnames, e.g. Lindenberg, Holmquist.
SYLLABLES = (
    ["Ber", "Lind", "Hol", "Mar", "Schu", "Wei", "Kra", "Fal", "Dor", "Eng", "Hau", "Kel", "Lor", "Nor",
     "Ost", "Rie", "Sto", "Tal", "Vog", "Zim"],
    ["a", "e", "i", "o", "u", "en", "er", "in"],
    ["berg", "mann", "stein", "feld", "quist", "son", "holm", "wald", "rath", "dorf"],
)  # fmt: skip
SURNAMES = [a + b + c for a in SYLLABLES[0] for b in SYLLABLES[1] for c in SYLLABLES[2]]
FIELDS = [
    "Email_Opt_Out",
    "Data_Processing_Basis_Details.Contact_Through_Email",
    "Data_Processing_Basis_Details.Contact_Through_Phone",
    "SMS_Opt_In",
    "Profiling_Consent",
    "Third_Party_Sharing_Consent",
]
# (service, operation, method, path, weight)
OPERATIONS = [
    ("crm", "crm.update", "PUT", "/crm/v8/Contacts", 30),
    ("crm", "crm.get", "GET", "/crm/v8/Contacts", 30),
    ("crm", "crm.coql", "POST", "/crm/v8/coql", 10),
    ("crm", "crm.search", "GET", "/crm/v8/Contacts/search", 5),
    ("campaigns", "campaigns.unsubscribe", "POST", "/api/v1.1/json/listunsubscribe", 9),
    ("campaigns", "campaigns.list_subscribers", "GET", "/api/v1.1/getlistsubscribers", 8),
    ("campaigns", "campaigns.recipients", "POST", "/api/v1.1/getcampaignrecipientsdata", 5),
    ("campaigns", "campaigns.subscribe", "POST", "/api/v1.1/json/listsubscribe", 2),
    ("accounts", "accounts.refresh", "POST", "/oauth/v2/token", 0.6),
    ("crm", "crm.fields", "GET", "/crm/v8/settings/fields", 0.3),
    ("crm", "crm.current_user", "GET", "/crm/v8/users", 0.1),
]
# (kind, weight, record-level)
KINDS = [
    ("overwritten", 35, False),
    ("not_applied", 25, False),
    ("drift", 12, False),
    ("permission_denied", 10, False),
    ("record_missing", 5, True),
    ("not_in_crm", 5, True),
    ("duplicate", 3, True),
    ("rejected", 3, False),
    ("unevidenced_opt_in", 2, False),
]
HINT = {
    "overwritten": "A workflow rule or a user changed it after our write: check workflow rules on {field}.",
    "not_applied": "Accepted but not applied: field-level security or a silent reset; check the API user's "
    "profile has edit rights on {field}.",
    "permission_denied": "Zoho refused the write (NO_PERMISSION): give the API user's profile edit rights on "
    "{field}.",
    "record_missing": "The CRM record {zoho} does not exist (deleted or merged): link the contact to its new "
    "record.",
    "duplicate": "Several CRM records share {email}: merge them or set the contact's Zoho id to the primary; "
    "none is written until then.",
}


def zoho_id(contact_id: int) -> str:
    return str(5725767000000000000 + contact_id)


# -- building -----------------------------------------------------------------------------------


def ledger_plan(events: int, contacts: int, seed: int, now: datetime) -> _ledger_build.LedgerPlan:
    start = now - timedelta(days=3 * 365)
    names = random.Random(seed + 1)
    span = (now - start).total_seconds()

    def contact_row(n: int, _now: datetime) -> tuple[Any, ...]:
        first = names.choice(FIRST_NAMES)
        last = SURNAMES[int(len(SURNAMES) * names.random() ** 2)]
        created = start + timedelta(seconds=span * n / (contacts + 1) * 0.9)
        return (
            f"{first}.{last}.{n}@example.com".lower(),
            f"+4915{110000000 + n}" if n % 3 else None,
            f"u-{n}" if n % 2 else None,
            zoho_id(n) if n % 10 else None,
            first,
            last,
            created,
            created,
        )

    def pick_contact(rng: random.Random) -> int:
        if rng.random() < 0.002:
            return int(1001 ** rng.random())  # 1..1000, log-uniform: a few long histories
        return rng.randint(1, contacts)

    return _ledger_build.LedgerPlan(
        events=events,
        contacts=contacts,
        seals=4,
        seed=seed,
        start=start,
        spacing=(now - timedelta(hours=1) - start) / events,
        contact_row=contact_row,
        pick_contact=pick_contact,
        policies=policy_specs(start, now, seed),
        cite_in_effect=True,
    )


def model_defaults(table: str, columns: str) -> tuple[list[str], tuple[Any, ...]]:
    """The NOT NULL columns of `table`'s model that `columns` leaves out, with their model
    defaults (Django sets defaults in Python, not in the database): a column added by a later
    migration is filled as the ORM would fill it, and the COPY keeps working."""
    from django.apps import apps
    from django.db.models import NOT_PROVIDED

    model = next(m for m in apps.get_models() if m._meta.db_table == table)
    named = {c.strip() for c in columns.split(",")}
    extra: list[str] = []
    values: list[Any] = []
    for field in model._meta.concrete_fields:
        if field.column in named or field.primary_key or field.null or field.default is NOT_PROVIDED:
            continue
        value = field.get_default()
        extra.append(field.column)
        values.append(json.dumps(value) if field.get_internal_type() == "JSONField" else value)
    return extra, tuple(values)


def copy_rows(table: str, columns: str, rows: Any) -> int:
    from django.db import connection

    extra, defaults = model_defaults(table, columns)
    columns = ", ".join([columns, *extra])
    count = 0
    with connection.connection.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row((*row, *defaults) if defaults else row)
            count += 1
    return count


def insert_select(table: str, columns: str, select_list: str, rest: str, params: dict[str, Any]) -> int:
    """INSERT INTO table (columns) SELECT select_list rest, the model's defaulted columns added
    (`params` are named: %(name)s; a literal % is written %%)."""
    from django.db import connection

    extra, defaults = model_defaults(table, columns)
    names = [f"_default{n}" for n in range(len(extra))]
    exprs = ", ".join([select_list, *(f"%({name})s" for name in names)])
    sql = f"INSERT INTO {table} ({', '.join([columns, *extra])}) SELECT {exprs} {rest}"
    with connection.cursor() as cur:
        cur.execute(sql, {**params, **dict(zip(names, defaults, strict=True))})
        return int(cur.rowcount)


def build_suppressions(rng: random.Random, contacts: int, now: datetime) -> int:
    chosen = sorted({1, *rng.sample(range(1, contacts + 1), max(contacts // 100, 1))})

    def rows() -> Any:
        for contact_id in chosen:
            roll = rng.random()
            kind, source, detail = (
                ("hard_bounce", "campaigns", "550 5.1.1 mailbox unavailable")
                if roll < 0.7
                else ("complaint", "campaigns", "marked as spam")
                if roll < 0.9
                else ("manual", "admin", "asked by phone not to be emailed")
            )
            created = now - timedelta(days=rng.uniform(0, 3 * 365))
            lifted = created + timedelta(days=rng.uniform(1, 60)) if rng.random() < 0.1 else None
            yield (
                contact_id,
                "email",
                kind,
                source,
                detail,
                json.dumps({"campaign": f"c-{rng.randint(1, 40)}"} if source == "campaigns" else {}),
                created,
                lifted,
                "address fixed by the customer" if lifted else "",
            )

    return copy_rows(
        "compliance_suppression",
        "contact_id, channel, kind, source, detail, evidence, created_at, lifted_at, lifted_reason",
        rows(),
    )


def projection(rng: random.Random, contact_id: int) -> tuple[dict, dict]:
    flags = [rng.random() < 0.6 for _ in range(5)]
    sent = {
        "id": zoho_id(contact_id),
        "Email_Opt_Out": not flags[0],
        "SMS_Opt_In": flags[1],
        "Profiling_Consent": flags[2],
        "Third_Party_Sharing_Consent": flags[3],
        "Data_Processing_Basis_Details": {
            "Contact_Through_Email": flags[0],
            "Contact_Through_Phone": flags[4],
        },
    }
    versions = {code: rng.randint(1, 4) for code in _ledger_build.PURPOSE_WEIGHTS}
    return sent, versions


def build_calls_and_pushes(
    rng: random.Random, calls: int, older_calls: int, contacts: int, now: datetime
) -> tuple[int, int]:
    """`older_calls` Zoho calls over the 24 days before the last 7, then `calls` over the last 7
    days (the health page's 30 days: the call log keeps every call); a SyncPush per record of
    each successful update."""
    weights = [op[4] for op in OPERATIONS]
    recent = timedelta(days=7)
    older = timedelta(days=OLDER_CALL_DAYS)
    total = older_calls + calls
    pushes: list[tuple] = []
    remaining = 5_000_000

    def start_of(call_id: int) -> datetime:
        if call_id <= older_calls:
            return now - recent - older + older * (call_id / (older_calls + 1))
        return now - recent + recent * ((call_id - older_calls) / (calls + 1))

    def call_rows() -> Any:
        nonlocal remaining
        for call_id in range(1, total + 1):
            service, operation, method, path, _w = rng.choices(OPERATIONS, weights)[0]
            started = start_of(call_id) + timedelta(microseconds=rng.randint(0, 9999))
            duration = int(rng.lognormvariate(5.3, 0.5))  # about 200 ms, a long tail
            roll = rng.random()
            records = 0
            if roll < 0.015:
                status, code, outcome, error, permanent = (
                    429,
                    "TOO_MANY_REQUESTS",
                    "error",
                    "rate limited",
                    False,
                )
            elif roll < 0.02:
                status, code, outcome, error, permanent = 503, "", "error", "HTTP 503", False
            elif roll < 0.035 and service == "crm":
                status, code, outcome, error, permanent = 400, "INVALID_DATA", "error", "invalid data", True
            else:
                status, code, outcome, error, permanent = (
                    200,
                    "SUCCESS" if service == "crm" else "",
                    "ok",
                    "",
                    None,
                )
                if operation == "crm.update":
                    records = min(100, 1 + int(rng.expovariate(1 / 2)))
                elif operation in ("crm.get", "crm.coql", "crm.search"):
                    records = rng.randint(1, 100)
            credits = 0
            if service == "crm" and status == 200:
                credits = max(1, math.ceil(records / 10)) if operation == "crm.update" else 1
                remaining -= credits
            yield (
                call_id,
                service,
                operation,
                method,
                path,
                started,
                started + timedelta(milliseconds=duration),
                duration,
                status,
                code,
                records,
                credits,
                remaining if service == "crm" and status == 200 else None,
                outcome,
                error,
                permanent,
            )
            if operation == "crm.update" and status == 200:
                pushes.append((call_id, started, records))

    n_calls = copy_rows(
        "sync_zohocall",
        "id, service, operation, method, path, started_at, finished_at, duration_ms, http_status, "
        "zoho_code, records, credits, credits_remaining, outcome, error, permanent",
        call_rows(),
    )
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT setval(pg_get_serial_sequence('sync_zohocall', 'id'), %s)", [total])

    def push_rows() -> Any:
        for call_id, started, records in pushes:
            for _ in range(records):
                contact_id = rng.randint(1, contacts)
                sent, versions = projection(rng, contact_id)
                due = started + timedelta(seconds=60)
                roll = rng.random()
                verification = (
                    "pending"
                    if due > now
                    else "verified"
                    if roll < 0.955
                    else "superseded"
                    if roll < 0.975
                    else "mismatch"
                    if roll < 0.995
                    else "rejected"
                )
                readback = {k: v for k, v in sent.items() if k != "id"} if verification != "pending" else {}
                yield (
                    contact_id,
                    sent["id"],
                    call_id,
                    json.dumps(sent),
                    json.dumps(versions),
                    json.dumps(
                        {
                            "code": "SUCCESS",
                            "status": "success",
                            "message": "record updated",
                            "details": {"id": sent["id"]},
                        }
                    ),
                    1,
                    started,
                    due,
                    verification,
                    due + timedelta(seconds=rng.uniform(0, 5)) if verification != "pending" else None,
                    json.dumps(readback),
                )

    n_pushes = copy_rows(
        "sync_syncpush",
        "contact_id, zoho_id, call_id, sent, ledger_versions, response, attempt, created_at, "
        "verify_due_at, verification, verified_at, readback",
        push_rows(),
    )
    return n_calls, n_pushes


def build_discrepancies(rng: random.Random, total: int, open_count: int, contacts: int, now: datetime) -> int:
    kinds = [k for k, _w, _r in KINDS]
    weights = [w for _k, w, _r in KINDS]
    record_level = {k for k, _w, r in KINDS if r}
    open_contacts = rng.sample(range(1, contacts + 1), open_count)

    def rows() -> Any:
        for n in range(total):
            is_open = n >= total - open_count  # the newest ids are the open ones
            contact_id = open_contacts[n - (total - open_count)] if is_open else rng.randint(1, contacts)
            kind = rng.choices(kinds, weights)[0]
            field = "" if kind in record_level else rng.choice(FIELDS)
            opened = (
                now - timedelta(days=rng.uniform(0, 30))
                if is_open
                else now - timedelta(days=365 * (1 - n / total) + rng.uniform(0, 1))
            )
            sent, _versions = projection(rng, contact_id)
            expected = rng.random() < 0.5
            email = f"person{contact_id}@example.com"
            evidence: dict[str, Any] = {
                "push": rng.randint(1, 1_000_000),
                "sent": sent,
                "zoho_answer": {"code": "SUCCESS", "status": "success", "details": {"id": sent["id"]}},
                "readback": {field or "id": not expected},
                "Modified_By": {"name": "Workflow Rule: reset consent", "id": "5725767000000412001"},
                "Modified_Time": (opened - timedelta(seconds=30)).isoformat(),
            }
            if kind == "duplicate":
                evidence = {"email": email, "candidates": [sent["id"], zoho_id(contact_id + 7_000_000)]}
            retries = rng.randint(0, 3)
            resolved = None if is_open else opened + timedelta(hours=rng.uniform(0.1, 72))
            yield (
                contact_id,
                "" if kind == "not_in_crm" else zoho_id(contact_id),
                field,
                kind,
                "open" if is_open else "resolved",
                json.dumps(expected if field else None),
                json.dumps(not expected if field else None),
                json.dumps(evidence),
                HINT.get(kind, "").format(field=field, zoho=zoho_id(contact_id), email=email),
                retries,
                opened + timedelta(minutes=2**retries) if is_open and retries < 3 else None,
                opened,
                resolved or opened + timedelta(minutes=retries),
                resolved,
                ""
                if is_open
                else "verified after retry"
                if rng.random() < 0.8
                else "resolved by ada-admin: fixed",
            )

    return copy_rows(
        "sync_discrepancy",
        "contact_id, zoho_id, crm_field, kind, status, expected, actual, evidence, hint, retries, "
        "next_retry_at, opened_at, updated_at, resolved_at, resolution",
        rows(),
    )


# The call log's days before the last 7 (the 30-day window of the health page), and the hours
# whose tallies beat stored back then (the trends' year; the call log of those days is history).
OLDER_CALL_DAYS = 24
CALL_HISTORY_DAYS = 365
LIST_KEY = "newsletter-de"
OTHER_OFFICERS = [f"officer-{n}" for n in range(2, 9)]


def policy_specs(start: datetime, now: datetime, seed: int) -> tuple[_ledger_build.PolicySpec, ...]:
    """A version every quarter from the ledger's start: the same notice of 40 paragraphs, each
    version rewording a few and sometimes adding one (the diff between two has a few hunks)."""
    rng = random.Random(seed + 3)
    words = [
        "we", "process", "your", "personal", "data", "controller", "purpose", "consent", "withdraw",
        "email", "phone", "sms", "profile", "partners", "retention", "months", "request", "access",
        "erase", "object", "complaint", "authority", "transfer", "processor", "safeguards",
        "marketing", "newsletter", "offers", "analytics", "cookies", "device", "address",
    ]  # fmt: skip

    def paragraph() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(30, 70))).capitalize() + "."

    paragraphs = [f"{n + 1}. {paragraph()}" for n in range(40)]
    specs = []
    day = start.date().replace(day=1)
    while day < (now - timedelta(days=45)).date():
        for _ in range(rng.randint(2, 5)):
            n = rng.randrange(len(paragraphs))
            paragraphs[n] = f"{n + 1}. {paragraph()}"
        if rng.random() < 0.3:
            paragraphs.append(f"{len(paragraphs) + 1}. {paragraph()}")
        specs.append((f"{day:%Y-%m}", day.isoformat(), "Privacy notice\n\n" + "\n\n".join(paragraphs)))
        month = day.month + 3
        day = day.replace(year=day.year + (month - 1) // 12, month=(month - 1) % 12 + 1)
    return tuple(specs)


def build_call_history(now: datetime) -> int:
    """The call tallies beat stored for each hour of the year before the call log's first day
    (`CallHour`, as `sync.tallies.callhour_tally` writes them): what the trends page reads."""
    total = sum(op[4] for op in OPERATIONS)
    first_logged = (now - timedelta(days=7 + OLDER_CALL_DAYS)).replace(minute=0, second=0, microsecond=0)
    ops = ", ".join(
        f"('{service}', '{operation}', {weight / total})" for service, operation, _m, _p, weight in OPERATIONS
    )
    return insert_select(
        "sync_callhour",
        "hour, service, operation, calls, errors, throttled, credits, ms_sum, timed",
        "hour, o.service, o.operation, c.calls, "
        "CASE WHEN o.service = 'crm' THEN (c.calls * (0.02 + 0.03 * random()))::int "
        "ELSE (c.calls * (0.02 + 0.01 * random()))::int END, (c.calls * 0.015 * random())::int, "
        "CASE WHEN o.service = 'crm' THEN (c.calls * 0.4)::int ELSE 0 END, c.calls * 220, c.calls",
        f"FROM generate_series(%(first)s::timestamptz, %(last)s::timestamptz, interval '1 hour') AS hour "
        f"CROSS JOIN (VALUES {ops}) AS o(service, operation, share) "
        "CROSS JOIN LATERAL (SELECT GREATEST(0, round(1500 * o.share * (0.6 + 0.8 * random())))::int "
        "AS calls) AS c ON CONFLICT DO NOTHING",
        {
            "first": first_logged - timedelta(days=CALL_HISTORY_DAYS),
            # (Up to the call log's first hour, the one beat's 31 days leave out.)
            "last": first_logged,
        },
    )


def build_crm_links(now: datetime) -> int:
    """The sync's link of every contact: linked to its CRM record, or not in CRM (one in ten)."""
    return insert_select(
        "sync_crmlink",
        "contact_id, state, candidates, checked_at, last_verified_at, matched_by, matched_value",
        "id, CASE WHEN zoho_id IS NULL THEN 'not_in_crm' ELSE 'linked' END, "
        "CASE WHEN zoho_id IS NULL THEN '[]'::jsonb ELSE jsonb_build_array(zoho_id) END, "
        "created_at + interval '5 seconds', CASE WHEN zoho_id IS NULL THEN NULL ELSE %(now)s::timestamptz END, "
        "CASE WHEN zoho_id IS NULL THEN '' ELSE 'email' END, CASE WHEN zoho_id IS NULL THEN '' ELSE email END",
        "FROM compliance_contact ORDER BY id",
        {"now": now},
    )


def build_campaigns_observations(now: datetime) -> int:
    """What the Campaigns pull saw: unsubscribes from the list (one contact in 40) and the hard
    bounces of the suppressions."""
    unsubscribed = insert_select(
        "sync_campaignsobservation",
        "list_key, campaign_key, email, status, first_seen_at, raw",
        "%(list)s, '', email, 'unsub', created_at + (%(now)s::timestamptz - created_at) * ((id * 7919) %% 1000) / 1000.0, "
        "'{}'::jsonb",
        "FROM compliance_contact WHERE id %% 40 = 7 AND email IS NOT NULL ORDER BY id",
        {"list": LIST_KEY, "now": now},
    )
    bounced = insert_select(
        "sync_campaignsobservation",
        "list_key, campaign_key, email, status, first_seen_at, raw",
        "%(list)s, s.evidence->>'campaign', c.email, 'hard_bounce', s.created_at, '{}'::jsonb",
        "FROM compliance_suppression s JOIN compliance_contact c ON c.id = s.contact_id "
        "WHERE s.kind = 'hard_bounce' AND c.email IS NOT NULL ON CONFLICT DO NOTHING",
        {"list": LIST_KEY},
    )
    return unsubscribed + bounced


def build_withdrawal_pushes(now: datetime) -> int:
    """The verified push that carried each withdrawal of the clock's 90 days to CRM, minutes after
    it was recorded (one in 50 hours later), as the sync writes and its read-back verifies them.
    Left without one (their clocks stay open, as in the seeds' story): the phone withdrawals of the
    last 3 days and the email ones of the last day (Zoho refuses those fields), those of the last
    10 minutes (not verified yet), and one in 3,000 (stuck: overdue by now)."""
    return insert_select(
        "sync_syncpush",
        "contact_id, zoho_id, call_id, sent, ledger_versions, response, attempt, created_at, "
        "verify_due_at, verification, verified_at, readback",
        "e.contact_id, c.zoho_id, NULL, jsonb_build_object('id', c.zoho_id), "
        "jsonb_build_object(p.code, e.version), "
        "jsonb_build_object('code', 'SUCCESS', 'status', 'success', 'details', jsonb_build_object('id', c.zoho_id)), "
        "1, e.recorded_at + interval '5 seconds', e.recorded_at + interval '65 seconds', 'verified', "
        "e.recorded_at + CASE WHEN e.id %% 50 = 0 THEN interval '1 hour' * (1 + (e.id %% 47)) "
        "ELSE interval '1 second' * (70 + (e.id * 7919) %% 240) END, '{}'::jsonb",
        "FROM compliance_consentevent e JOIN compliance_purpose p ON p.id = e.purpose_id "
        "JOIN compliance_contact c ON c.id = e.contact_id "
        "WHERE e.recorded_at >= %(since)s AND e.recorded_at < %(settled)s "
        "AND e.status IN ('opted_out', 'expired') AND e.previous_status IN ('opted_in', 'pending') "
        "AND c.zoho_id IS NOT NULL AND e.id %% 3000 <> 17 "
        "AND NOT (p.code = 'phone_marketing' AND e.recorded_at >= %(phone)s) "
        "AND NOT (p.code = 'email_marketing' AND e.recorded_at >= %(email)s) ORDER BY e.id",
        {
            "since": now - timedelta(days=91),
            "settled": now - timedelta(minutes=10),
            "phone": now - timedelta(days=3),
            "email": now - timedelta(days=1),
        },
    )


def build_access_log(count: int, contacts: int, now: datetime, users: dict[str, int]) -> int:
    """`count` access-log rows over the year before now, as the pages write them: history views
    (half), searches, evidence views, exports and report downloads, by the officers and the admin;
    one contact per row (a search's: the ones it found, up to 3)."""
    names = list(users)
    ids = [users[n] for n in names]
    made = insert_select(
        "compliance_accesslog",
        "created_at, user_id, username, ip, kind, path, detail, query_hash, contact_count",
        "%(now)s::timestamptz - interval '1 second' * (31536000.0 * (%(count)s - g) / %(count)s), "
        "(%(ids)s::bigint[])[1 + g %% %(n)s::int], (%(names)s::text[])[1 + g %% %(n)s::int], "
        "('10.0.' || (g %% 7) || '.' || (g %% 200 + 1))::inet, k.kind, "
        "CASE k.kind WHEN 'search' THEN '/contacts/' WHEN 'export' THEN '/sync/discrepancies/' "
        "WHEN 'report_download' THEN '/reports/' ELSE '/contacts/' || (1 + (g::bigint * 7919) %% %(contacts)s) || '/' END, "
        "CASE k.kind WHEN 'export' THEN 'discrepancies CSV, ' || (g %% 900 + 1) || ' rows' "
        "WHEN 'report_download' THEN 'period report' ELSE '' END, "
        "CASE k.kind WHEN 'search' THEN md5(g::text) || md5((g + 1)::text) ELSE '' END, "
        "CASE k.kind WHEN 'search' THEN 1 + g %% 3 WHEN 'report_download' THEN 0 ELSE 1 END",
        "FROM generate_series(1, %(count)s::int) AS g CROSS JOIN LATERAL (SELECT CASE "
        "WHEN g %% 100 < 50 THEN 'history_view' WHEN g %% 100 < 85 THEN 'search' "
        "WHEN g %% 100 < 94 THEN 'evidence_view' WHEN g %% 100 < 99 THEN 'export' "
        "ELSE 'report_download' END AS kind) AS k ORDER BY g",
        {"now": now, "count": count, "ids": ids, "names": names, "n": len(names), "contacts": contacts},
    )
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO compliance_accesslogcontact (entry_id, contact_id) "
            "SELECT a.id, 1 + ((a.id + n) * 7919) %% %(contacts)s FROM compliance_accesslog a "
            "CROSS JOIN generate_series(0, 2) AS n WHERE n < a.contact_count ORDER BY a.id",
            {"contacts": contacts},
        )
    return made


def build_verify_runs(now: datetime, events: int) -> None:
    """The nightly verify runs of the last 30 nights (their records), then tonight's, for real:
    `ledger_verify_run`, what beat's ``workbench.verify_ledger`` runs, over the whole ledger."""
    from compliance.models import VerifyRun
    from compliance.verify_runs import ledger_verify_run

    for night in range(30, 0, -1) if not VerifyRun.objects.exists() else ():
        started = now.replace(hour=2, minute=15, second=0) - timedelta(days=night)
        VerifyRun.objects.create(
            started_at=started, finished_at=started + timedelta(seconds=55), ok=True,
            events_checked=events * (1000 - night) // 1000, chains_checked=0, seals_checked=4,
        )  # fmt: skip
    started = time.perf_counter()
    run = ledger_verify_run()
    print(
        f"  verify run (beat's nightly check, real): ok={run.ok}, {run.events_checked} events in "
        f"{time.perf_counter() - started:.0f}s {run.problem[:200]}",
        flush=True,
    )


def run_beat(now: datetime) -> None:
    """What beat does for the pages, by its own services: the opt-out clock, the tallies, the
    nightly verify run; then VACUUM ANALYZE. (`--finish` runs this alone on a built database.)"""
    from django.db import connection

    from compliance.models import ConsentDay, ConsentDayMark, ConsentEvent, OptInCount

    run_optout_clock(now)
    if ConsentDayMark.objects.filter(last_event_id__gt=0).exists() and not OptInCount.objects.exists():
        # Tallied by code older than the opt-in counts (a build that ran while they came): again.
        print("  consent tallies without opt-in counts: counting again", flush=True)
        with connection.cursor() as cursor:
            cursor.execute(
                f"TRUNCATE {ConsentDay._meta.db_table}, compliance_consentcount, {OptInCount._meta.db_table}"
            )
        ConsentDayMark.objects.update(last_event_id=0)
    beat_tallies()
    build_verify_runs(now, ConsentEvent.objects.count())
    connection.close()
    _common.psql("VACUUM ANALYZE", DB)


def run_optout_clock(now: datetime) -> None:
    """Beat's opt-out clock (`optout_clock_run`) until it has started every clock of the backfill."""
    from sync.tasks.optout_clock import optout_clock_run

    started = time.perf_counter()
    totals = {"started": 0, "effective": 0, "alerted": 0}
    while True:
        done = optout_clock_run(now=now)
        for key, value in done.items():
            totals[key] += value
        if not done["started"]:
            break
    print(f"  opt-out clock runs: {totals} in {time.perf_counter() - started:.0f}s", flush=True)


def build_the_rest(rng: random.Random, events: int, contacts: int, now: datetime) -> None:
    """Alerts, reconciliation runs, outbox rows, the users (an officer, an admin, an auditor, and
    the other officers whose reads fill the access log)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection

    from compliance.roles import Role
    from sync.models import Alert, ReconciliationRun

    with connection.cursor() as cur:
        cur.execute(
            "SELECT id, opened_at FROM sync_discrepancy WHERE kind <> 'duplicate' ORDER BY id DESC LIMIT 40"
        )
        exhausted = cur.fetchall()
    alerts = [
        ("retries_exhausted", d_id, f"Discrepancy {d_id} failed after 3 retries.", opened)
        for d_id, opened in exhausted
    ]
    alerts += [
        (
            "threshold",
            None,
            f"{100 + n * 37} discrepancies are open (threshold 10).",
            now - timedelta(days=6 * n),
        )
        for n in range(15)
    ]
    alerts += [
        ("auth", None, "Zoho refuses our credentials: invalid_client.", now - timedelta(days=17 * n + 3))
        for n in range(5)
    ]
    alerts.sort(key=lambda alert: alert[3])
    unacknowledged = len(alerts) - 7  # the newest 7 wait for acknowledgement
    # Through the ORM (a few rows; new columns get their defaults), then dated: created_at is auto_now_add.
    for n, (kind, d_id, message, at) in enumerate(alerts):
        alert = Alert.objects.create(
            kind=kind, discrepancy_id=d_id, message=message, emailed_to=["compliance@example.com"]
        )
        acknowledged = n < unacknowledged
        Alert.objects.filter(pk=alert.pk).update(
            created_at=at,
            acknowledged_at=at + timedelta(hours=2) if acknowledged else None,
            acknowledged_by=OFFICER if acknowledged else "",
        )
    for day in range(1, 31):
        run = ReconciliationRun.objects.create(
            method="bulk",
            records_read=contacts * 9 // 10,
            contacts_compared=contacts,
            opened=rng.randint(0, 40),
            resolved=rng.randint(0, 40),
        )
        started = now.replace(hour=3, minute=0) - timedelta(days=day)
        ReconciliationRun.objects.filter(pk=run.pk).update(
            started_at=started, finished_at=started + timedelta(minutes=9)
        )
    first = max(events - 200_000, 0) + 1
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO compliance_outboxentry (contact_id, purpose_id, event_id, priority, created_at, "
            "claimed_at, claimed_by, attempts, processed_at) "
            "SELECT contact_id, purpose_id, id, CASE status WHEN 'opted_out' THEN 0 WHEN 'opted_in' THEN 1 "
            "ELSE 2 END, recorded_at, "
            "CASE WHEN id > %(pending)s THEN NULL ELSE recorded_at + interval '1 second' END, "
            "CASE WHEN id > %(pending)s THEN '' ELSE 'bench' END, "
            "CASE WHEN id > %(pending)s THEN 0 ELSE 1 END, "
            "CASE WHEN id > %(pending)s THEN NULL ELSE recorded_at + interval '2 seconds' END "
            "FROM compliance_consentevent WHERE id >= %(first)s ORDER BY id",
            {"pending": events - 120, "first": first},
        )
    people = [(OFFICER, Role.OFFICER, False), (ADMIN, Role.ADMIN, True), (AUDITOR, Role.AUDITOR, False)]
    people += [(name, Role.OFFICER, False) for name in OTHER_OFFICERS]
    for username, role, staff in people:
        user = get_user_model().objects.create_user(
            username=username,
            password=PASSWORD,
            first_name=username.split("-")[0].capitalize(),
            is_staff=staff,
        )
        user.groups.add(Group.objects.get(name=role))


def build(
    events: int,
    contacts: int,
    calls: int,
    older_calls: int,
    discrepancies: int,
    open_count: int,
    access_log: int,
    seed: int,
) -> None:
    t0 = time.perf_counter()
    _common.recreate_database(DB)
    Path(_common.bench_env(DB)["LEDGER_SEAL_LOG"]).unlink(missing_ok=True)
    _common.django_setup(DB, CACHE_URL=CACHE_URL)
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.utils import timezone

    def done(what: str) -> None:
        print(f"  {what} ({time.perf_counter() - t0:.0f}s)", flush=True)

    now = timezone.now().replace(microsecond=0)
    built = _ledger_build.ledger_build(ledger_plan(events, contacts, seed, now))
    rng = random.Random(seed + 2)
    done(f"suppressions: {build_suppressions(rng, contacts, now)}")
    n_calls, n_pushes = build_calls_and_pushes(rng, calls, older_calls, contacts, now)
    done(f"zoho calls: {n_calls}, sync pushes: {n_pushes}")
    done(f"call hours before the call log (a year): {build_call_history(now)}")
    n = build_discrepancies(rng, discrepancies, open_count, contacts, now)
    done(f"discrepancies: {n} ({open_count} open)")
    done(f"CRM links: {build_crm_links(now)}")
    done(f"Campaigns observations: {build_campaigns_observations(now)}")
    build_the_rest(rng, built.events, contacts, now)
    users = dict(get_user_model().objects.values_list("username", "id"))
    users.pop(AUDITOR)
    done(f"access log: {build_access_log(access_log, contacts, now, users)} entries")
    done(f"verified pushes of the clock's withdrawals: {build_withdrawal_pushes(now)}")
    connection.close()
    _common.psql("ANALYZE", DB)
    run_beat(now)
    print(
        f"built {built.events} events, {built.chains} chains, {contacts} contacts in "
        f"{time.perf_counter() - t0:.0f}s",
        flush=True,
    )


# -- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    name: str
    user: str
    path: str


def describe_database() -> None:
    sizes = _common.psql(
        "SELECT pg_size_pretty(pg_database_size(current_database())) || ' total; ' || string_agg("
        "relname || ' ' || n_live_tup || ' rows ' || pg_size_pretty(pg_total_relation_size(relid)), '; ' "
        "ORDER BY pg_total_relation_size(relid) DESC) FROM pg_stat_user_tables "
        "WHERE pg_total_relation_size(relid) > 50 * 1024 * 1024",
        DB,
    )
    print(f"database {DB}: {sizes}")


def pages_to_measure() -> list[Page]:
    """The pages, with a long and a typical history, and search terms taken from the data."""
    from django.db.models import Sum

    from compliance.models import AccessLog, AccessLogContact, ConsentState, Contact, PolicyVersion
    from sync.bulk import discrepancy_groups
    from sync.models import OPEN_CLOCK, Alert, Discrepancy, SyncPush, WithdrawalClock, ZohoCall

    long_row = (
        ConsentState.objects.filter(contact_id__lte=1000)
        .values("contact_id")
        .annotate(n=Sum("version"))
        .order_by("-n")
        .first()
    )
    assert long_row is not None, "no ledger: build first"
    rng = random.Random(7)
    typical = None
    while typical is None:
        contact_id = rng.randint(1000, Contact.objects.order_by("-id").values_list("id", flat=True)[0])
        n = ConsentState.objects.filter(contact_id=contact_id).aggregate(n=Sum("version"))["n"] or 0
        if n == 5:
            typical = Contact.objects.get(pk=contact_id)
    phone = Contact.objects.filter(pk__gt=typical.pk, phone__isnull=False).order_by("pk").first()
    assert phone is not None and phone.phone
    spaced_phone = f"{phone.phone[:3]} {phone.phone[3:6]} {phone.phone[6:]}"
    app_user = Contact.objects.filter(pk__gt=typical.pk, app_user_id__isnull=False).order_by("pk").first()
    assert app_user is not None and app_user.app_user_id
    detail = (
        Alert.objects.filter(discrepancy__status="open")
        .order_by("-id")
        .values_list("discrepancy_id", flat=True)
        .first()
        or Discrepancy.objects.order_by("-id").values_list("id", flat=True)[0]
    )
    calls_24h = ZohoCall.objects.filter(started_at__gte=datetime.now(UTC) - timedelta(hours=24)).count()
    # A contact with Zoho proof to show: pushes (the newest read first) and an open discrepancy.
    proven = (
        Discrepancy.objects.filter(status="open", kind="overwritten")
        .filter(contact_id__in=SyncPush.objects.values("contact_id"))
        .order_by("id")
        .values_list("contact_id", flat=True)
        .first()
    )
    assert proven is not None, "no open discrepancy of a pushed contact: build again"
    pushes_of = SyncPush.objects.filter(contact_id=proven).count()
    policies = list(PolicyVersion.objects.order_by("-effective_at").values_list("id", "label")[:2])
    read_by = AccessLogContact.objects.order_by("-id").values_list("contact_id", flat=True).first()
    group = next(iter(discrepancy_groups()), None)
    assert group is not None, "no open discrepancies: build again"
    today = datetime.now(UTC).date()
    print(
        f"contacts: long history {long_row['contact_id']} ({long_row['n']} events), typical {typical.pk} "
        f"(5 events), with Zoho proof {proven} ({pushes_of} pushes); Zoho calls in the last 24 h: {calls_24h}; "
        f"{PolicyVersion.objects.count()} policy versions; {AccessLog.objects.count()} access-log entries; "
        f"{WithdrawalClock.objects.filter(OPEN_CLOCK).count()} open withdrawal clocks of "
        f"{WithdrawalClock.objects.count()}"
    )
    return [
        Page("overview (home): officer", OFFICER, "/"),
        Page("overview (home): auditor", AUDITOR, "/"),
        Page("overview (home): admin", ADMIN, "/"),
        Page("search: email", OFFICER, "/contacts/?" + urlencode({"q": typical.email})),
        Page("search: phone", OFFICER, "/contacts/?" + urlencode({"q": spaced_phone})),
        Page("search: app user id", OFFICER, "/contacts/?" + urlencode({"q": app_user.app_user_id})),
        Page("api look-up: email", API_READER, "/api/v1/contacts?" + urlencode({"email": typical.email})),
        Page("api look-up: phone", API_READER, "/api/v1/contacts?" + urlencode({"phone": spaced_phone})),
        Page(
            "api look-up: app user id",
            API_READER,
            "/api/v1/contacts?" + urlencode({"app_user_id": app_user.app_user_id}),
        ),
        Page(
            "search: partial name", OFFICER, "/contacts/?" + urlencode({"q": typical.last_name[1:6].lower()})
        ),
        Page(
            "search: first and last name",
            OFFICER,
            "/contacts/?" + urlencode({"q": f"{typical.first_name} {typical.last_name}"}),
        ),
        Page(f"history: long ({long_row['n']} events)", OFFICER, f"/contacts/{long_row['contact_id']}/"),
        Page("history: typical (5 events)", OFFICER, f"/contacts/{typical.pk}/"),
        Page("discrepancies: default (open)", OFFICER, "/sync/discrepancies/"),
        Page("discrepancies: kind, any status", OFFICER, "/sync/discrepancies/?status=&kind=overwritten"),
        Page("discrepancies: page 50", OFFICER, "/sync/discrepancies/?page=50"),
        Page("discrepancy detail", ADMIN, f"/sync/discrepancies/{detail}/"),
        Page("sync health", ADMIN, "/sync/health/"),
        Page("sync health: 7 days", ADMIN, "/sync/health/?window=7d"),
        Page("sync health: 30 days", ADMIN, "/sync/health/?window=30d"),
        Page("trends: 12 months", OFFICER, "/trends/"),
        Page("trends: a purpose and a source", OFFICER, "/trends/?purpose=sms_marketing&source=mobile_app"),
        Page(
            "trends: a date range (90 days)",
            OFFICER,
            "/trends/?" + urlencode({"since": today - timedelta(days=90), "until": today}),
        ),
        Page("trends: CSV of a table", OFFICER, "/trends/?_export=csv&chart=changes"),
        Page(f"contact: Zoho proof ({pushes_of} pushes)", OFFICER, f"/contacts/{proven}/"),
        Page("policies", OFFICER, "/policies/"),
        Page("policy detail", OFFICER, f"/policies/{policies[0][0]}/"),
        Page(
            "policy diff",
            OFFICER,
            "/policies/diff/?" + urlencode({"old": policies[1][1], "new": policies[0][1]}),
        ),
        Page("re-permission (the newest version)", ADMIN, f"/policies/{policies[0][0]}/repermission/"),
        Page(
            "re-permission: one purpose, no legacy",
            OFFICER,
            f"/policies/{policies[0][0]}/repermission/?purpose=sms_marketing&legacy=0",
        ),
        Page("opt-out clock", OFFICER, "/sync/opt-out-clock/"),
        Page("discrepancy groups", OFFICER, "/sync/discrepancies/groups/"),
        Page(
            "discrepancy group (largest)",
            ADMIN,
            "/sync/discrepancies/group/?"
            + urlencode({"kind": group.kind, "field": group.crm_field, "cause": group.cause}),
        ),
        Page("access log", OFFICER, "/access-log/"),
        Page("access log: a contact", OFFICER, f"/access-log/?contact={read_by}"),
        Page("alerts", OFFICER, "/sync/alerts/"),
        Page("Zoho doctor (last run, no call)", ADMIN, "/sync/doctor/"),
        Page(
            "export: discrepancies CSV (a kind)", OFFICER, "/sync/discrepancies/?kind=overwritten&_export=csv"
        ),
        Page(
            "export: access log CSV (a kind)",
            OFFICER,
            f"/access-log/?kind=export&since={today - timedelta(days=7)}&_export=csv",
        ),
        Page("export: opt-out clock CSV", OFFICER, "/sync/opt-out-clock/?_export=csv"),
        Page("export: policies CSV", OFFICER, "/policies/?_export=csv"),
    ]


_sessions = itertools.count()
RUN = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def signed_in(base: str, username: str) -> Any:
    import httpx

    if username == API_READER:
        return httpx.Client(base_url=base, timeout=120, headers=api_reader_headers())
    from django.contrib.auth import get_user_model
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from compliance.logins import second_factor_required

    user = get_user_model().objects.get(username=username)
    # Admins pass a second factor. A TOTP code is accepted once per device and 30 s: each
    # session its own confirmed device, so that several sign in within the same 30 s.
    device = None
    if second_factor_required(user):
        device = TOTPDevice.objects.get_or_create(
            user=user, name=f"bench-{next(_sessions)}", defaults={"confirmed": True}
        )[0]
    client = httpx.Client(base_url=base, timeout=120)
    form = client.get("/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, "no CSRF token on the login page"
    response = client.post(
        "/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        headers={"Referer": f"{base}/login/"},
    )
    assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
    if device is not None:
        second_factor(client, base, device)
    return client


def api_reader_headers() -> dict[str, str]:
    """The Authorization header of a new API client that may read contacts (contacts:read)."""
    from compliance.models import ApiClient
    from compliance.services import api_client_create

    _client, key = api_client_create(
        name=f"{API_READER_PREFIX}{RUN}-{next(_sessions)}",
        sources=(),
        scopes=(ApiClient.Scope.CONTACTS_READ,),
    )
    return {"Authorization": f"Bearer {key}"}


def api_readers_retired() -> None:
    """The API clients of earlier runs revoked (a key is shown once: each run makes its own; the
    access log keeps naming the old ones)."""
    from compliance.models import ApiClient
    from compliance.services import api_client_revoke

    for client in ApiClient.objects.filter(name__startswith=API_READER_PREFIX, is_active=True):
        api_client_revoke(client=client)


def second_factor(client: Any, base: str, device: Any) -> None:
    """Pass the second factor with this device's code now."""
    from django_otp.oath import TOTP

    page = client.get("/login/verify/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "no CSRF token on the second-factor page"
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    response = client.post(
        "/login/verify/",
        data={
            "otp_token": f"{totp.token():0{device.digits}d}",
            "otp_device": device.persistent_id,
            "csrfmiddlewaretoken": token.group(1),
        },
        headers={"Referer": f"{base}/login/verify/"},
    )
    assert response.status_code == 302, f"second factor of {device.user} failed: {response.status_code}"


def timed_get(client: Any, path: str) -> tuple[float, int, str]:
    started = time.perf_counter()
    response = client.get(path)
    return time.perf_counter() - started, response.status_code, response.text


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return (
        f"p50 {1000 * statistics.median(ordered):6.1f} ms  p95 {1000 * p95:6.1f} ms  "
        f"max {1000 * ordered[-1]:6.1f} ms"
    )


def what_it_shows(text: str) -> str:
    if text.startswith("["):  # the API's list of contacts found
        return f" ({len(json.loads(text))} found)"
    found = re.search(r"(\d+) contacts? match", text) or re.search(r"newest first, (\d+) event", text)
    return f" ({found.group(0)})" if found else ""


def concurrently(clients: list[Any], path: str, requests: int) -> tuple[list[float], list[int], float]:
    """Each client (own thread) warms up once, then all send `requests` requests, starting together."""
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(clients))

    def work(client: Any) -> None:
        timed_get(client, path)
        barrier.wait()
        for _ in range(requests):
            latency, status, _t = timed_get(client, path)
            with lock:
                latencies.append(latency)
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=work, args=(client,)) for client in clients]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures, time.perf_counter() - started


def measure(pages: list[Page], base: str, requests: int, warmup: int) -> None:
    clients = {user: signed_in(base, user) for user in USERS}
    print(f"\nsequential, one client: {warmup} warm-up then {requests} timed requests per page")
    print(f"load average before: {_common.load_average()}")
    for page in pages:
        client = clients[page.user]
        for _ in range(warmup):
            _s, status, text = timed_get(client, page.path)
            assert status == 200, f"{page.path}: HTTP {status}"
        latencies = []
        for _ in range(requests):
            latency, status, _t = timed_get(client, page.path)
            assert status == 200, f"{page.path}: HTTP {status}"
            latencies.append(latency)
        print(f"  {page.name:36} {summary(latencies)}{what_it_shows(text)}", flush=True)

    print(
        f"\n{CONCURRENT_CLIENTS} concurrent clients (own sessions), {requests} requests each per page, "
        "all starting together"
    )
    print(f"load average before: {_common.load_average()}")
    pool = {user: [signed_in(base, user) for _ in range(CONCURRENT_CLIENTS)] for user in USERS}
    for page in pages:
        latencies, failures, wall = concurrently(pool[page.user], page.path, requests)
        failed = f", FAILED: {failures}" if failures else ""
        print(
            f"  {page.name:36} {summary(latencies)}  ({len(latencies) / wall:.0f} pages/s){failed}",
            flush=True,
        )
    print(f"load average after: {_common.load_average()}")


def beat_tallies() -> None:
    """What beat keeps up to date for the pages: the consent tallies per day and the current
    opt-ins per policy version (the overview, the trends, the policies pages), and the Zoho
    calls per hour and per day (sync health, the overview's error rates, the trends), as the
    tasks ``workbench.consent_day_tally`` and ``sync.callhour_tally`` do. After a build the
    first run counts the whole ledger; later runs only what is new."""
    from compliance.tallies import consent_day_tally
    from sync.tallies import callday_tally, callhour_tally

    started = time.perf_counter()
    events = consent_day_tally()
    counted = time.perf_counter()
    hours = callhour_tally()
    days = callday_tally()
    print(
        f"beat's tallies: {events} events counted in {counted - started:.1f}s, "
        f"{hours} call hours and {days} call days stored in {time.perf_counter() - counted:.1f}s",
        flush=True,
    )


class ClockBeat(threading.Thread):
    """Beat's opt-out clock while the pages are measured: `optout_clock_run` each minute, as
    config/settings.py schedules it (the clock page shows the figures of the last run)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopped = threading.Event()
        self.runs: list[float] = []

    def run(self) -> None:
        from django.db import connection

        from sync.tasks.optout_clock import optout_clock_run

        while True:
            started = time.perf_counter()
            optout_clock_run()
            self.runs.append(time.perf_counter() - started)
            if self.stopped.wait(60):
                break
        connection.close()


def serve_and_measure(requests: int, warmup: int) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
    beat_tallies()
    api_readers_retired()
    pages = pages_to_measure()
    env = _common.bench_env(DB, CACHE_URL=CACHE_URL)
    beat = ClockBeat()
    beat.start()
    try:
        with _common.gunicorn(env, port=PORT, workers=2, ready_path="/login/", timeout_s=120) as base:
            measure(pages, base, requests, warmup)
    finally:
        beat.stopped.set()
        beat.join()
    if beat.runs:
        print(
            f"beat's opt-out clock ran {len(beat.runs)} times meanwhile, "
            f"{statistics.median(beat.runs):.2f}s median a run",
            flush=True,
        )


def in_process_client(username: str) -> Any:
    """Django's test client signed in as `username`, past the second factor as django-otp marks it
    for whoever owes one (a confirmed device of their own, or one made here for a role that
    requires it): for rendering pages in-process (`--queries`, bench/page_profile.py)."""
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from compliance.logins import second_factor_required

    if username == API_READER:
        return Client(headers=api_reader_headers())
    user = get_user_model().objects.get(username=username)
    client = Client()
    client.force_login(user)
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None and second_factor_required(user):
        device = TOTPDevice.objects.create(user=user, name="bench-queries", confirmed=True)
    if device is not None:
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
    return client


def show_queries(explain_ms: float) -> None:
    """Each page once, in-process: its queries with their times; EXPLAIN ANALYZE of the slow ones."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for page in pages_to_measure():
        client = in_process_client(page.user)
        client.get(page.path)  # warm
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(page.path)
            took = time.perf_counter() - started
        sql_ms = sum(float(q["time"]) for q in captured.captured_queries) * 1000
        print(
            f"\n{page.name} {page.path}: HTTP {response.status_code}, {took * 1000:.0f} ms in-process, "
            f"{len(captured.captured_queries)} queries, {sql_ms:.0f} ms in SQL"
        )
        for query in captured.captured_queries:
            ms = float(query["time"]) * 1000
            print(f"  {ms:7.1f} ms  {query['sql'][:220]}")
            if ms >= explain_ms and query["sql"].lstrip().upper().startswith("SELECT"):
                with connection.cursor() as cursor:
                    cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query["sql"])
                    for (line,) in cursor.fetchall():
                        print(f"      {line}")


def main() -> None:
    global DB
    parser = _ledger_build.ledger_arguments(__doc__, database=DB, events=10_000_000, contacts_per=5)
    parser.add_argument("--calls", type=int, default=1_000_000, help="Zoho calls over the last 7 days")
    parser.add_argument(
        "--older-calls", type=int, default=800_000, help=f"Zoho calls over the {OLDER_CALL_DAYS} days before"
    )
    parser.add_argument("--access-log", type=int, default=1_000_000, help="access-log entries over a year")
    parser.add_argument("--discrepancies", type=int, default=50_000)
    parser.add_argument("--open", type=int, default=3_000, help="open discrepancies among them")
    parser.add_argument("--requests", type=int, default=50, help="timed requests per page (per client)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--queries", action="store_true", help="show each page's queries instead of serving")
    parser.add_argument("--build-only", action="store_true", help="build the database, measure nothing")
    parser.add_argument(
        "--finish",
        action="store_true",
        help="on a built database: run beat's steps again (clock, tallies, verify)",
    )
    parser.add_argument(
        "--explain-ms", type=float, default=20, help="with --queries: EXPLAIN ANALYZE above this"
    )
    args = parser.parse_args()
    DB = args.database
    print("machine:")
    _common.print_machine()
    if not args.skip_build and not args.finish:  # (--finish works on the database built)
        contacts = args.contacts or max(args.events // 5, 100)
        build(
            args.events,
            contacts,
            args.calls,
            args.older_calls,
            args.discrepancies,
            min(args.open, contacts // 2),
            args.access_log,
            args.seed,
        )
    if args.finish:
        _common.django_setup(DB, CACHE_URL=CACHE_URL)
        from django.utils import timezone

        run_beat(timezone.now())
    describe_database()
    if args.build_only or args.finish:
        return
    _common.django_setup(DB, CACHE_URL=CACHE_URL)
    if args.queries:
        beat_tallies()
        show_queries(args.explain_ms)
    else:
        serve_and_measure(args.requests, args.warmup)


if __name__ == "__main__":
    os.chdir(_common.ROOT)
    main()
