"""Builds a large, valid consent ledger fast, for the bench scripts (verify_ledger.py, pages.py).

Fast but honest: rows are bulk-copied (COPY) with hashes computed by
`compliance.chain.event_hash` over exactly the values the database returns, in the hash version
the write path uses (3: each contact has its secret, the IP address, user agent and personal
evidence of an event and the identifiers and names of an identity event sit in the side tables,
and the chained row holds their keyed commitment, `compliance.personal.commitment`);
chains follow the write path's rules (version + 1, previous status, previous
hash, double opt-in: pending then opted in with its evidence); ConsentState
holds each chain's head; `ledger_seal()` seals the ledger in several steps
(the newest events stay unsealed). The ledger's triggers allow INSERT and COPY.

Call `ledger_build(plan)` after `_common.recreate_database` and `_common.django_setup`.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

PURPOSE_WEIGHTS = {
    "email_marketing": 3,
    "sms_marketing": 3,
    "phone_marketing": 1,
    "profiling": 2,
    "third_party_sharing": 1,
}
USER_AGENTS = ["ShopApp/5.2 iOS", "ShopApp/5.1 Android 14", "Mozilla/5.0 (Windows NT 10.0) Firefox/128.0", ""]
CONTACT_COLUMNS = "email, phone, app_user_id, zoho_id, first_name, last_name, created_at, updated_at"

# (email, phone, app_user_id, zoho_id, first_name, last_name, created_at, updated_at) of contact n.
ContactRow = Callable[[int, datetime], tuple[Any, ...]]
# (label, effective date "YYYY-MM-DD", text) of each policy version to publish, oldest first.
PolicySpec = tuple[str, str, str]
DEFAULT_POLICIES: tuple[PolicySpec, ...] = (
    ("2025-01", "2025-01-01", "Privacy notice 2025-01."),
    ("2026-03", "2026-03-01", "Privacy notice 2026-03."),
)


def plain_contact(n: int, now: datetime) -> tuple[Any, ...]:
    """Every contact has an email; two in three a phone, half an app user id; no CRM id."""
    return (
        f"person{n}@example.com",
        f"+4915{110000000 + n}" if n % 3 else None,
        f"u-{n}" if n % 2 else None,
        None,
        "Ana" if n % 2 else "Ben",
        f"Person{n}",
        now,
        now,
    )


def ledger_arguments(
    doc: str | None, *, database: str, events: int, contacts_per: int
) -> argparse.ArgumentParser:
    """A parser holding the options of every script that builds a ledger; the script adds its own."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=events)
    parser.add_argument("--contacts", type=int, default=None, help=f"default: events / {contacts_per}")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--skip-build", action="store_true", help="measure the database already built")
    parser.add_argument("--database", default=database, help=f"a bench* database (default {database})")
    return parser


@dataclass(frozen=True)
class LedgerPlan:
    events: int
    contacts: int
    seals: int = 4
    seed: int = 2026
    # Event n (from 1) happened at start + n * spacing (plus up to a second).
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    spacing: timedelta = timedelta(seconds=20)
    contact_row: ContactRow = plain_contact
    # Which contact the next event is about; None: every contact alike (rng.randint(1, contacts)).
    pick_contact: Callable[[random.Random], int] | None = None
    # The policy versions published. With the default two, an opt-in cites the newer one four
    # times in five (whenever it occurred); with `cite_in_effect`, the version in effect when it
    # occurred (the one before it one time in five), as an app that shows the current notice does.
    policies: tuple[PolicySpec, ...] = DEFAULT_POLICIES
    cite_in_effect: bool = False


@dataclass(frozen=True)
class LedgerBuilt:
    events: int
    chains: int
    contacts: int
    seals: int
    seconds: float


def ledger_build(plan: LedgerPlan) -> LedgerBuilt:
    t0 = time.perf_counter()
    from django.db import connection
    from django.utils import timezone

    from compliance import chain, personal, services
    from compliance.models import IDENTITY_HASH_VERSION, Purpose

    rng = random.Random(plan.seed)
    policies = [
        services.policy_version_publish(label=label, effective_at=day, text=text)
        for label, day, text in plan.policies
    ]
    # Index of the version in effect at each version's start (as datetimes, for the events).
    effective = [datetime.fromisoformat(day).replace(tzinfo=UTC) for _l, day, _t in plan.policies]
    client, _key = services.api_client_create(
        name="bench-mobile-app", sources=["mobile_app", "web_portal", "email_link"]
    )
    purposes = {p.code: p for p in Purpose.objects.all()}
    codes = list(PURPOSE_WEIGHTS)
    weights = [PURPOSE_WEIGHTS[c] for c in codes]
    contacts = plan.contacts
    pick = plan.pick_contact or (lambda r: r.randint(1, contacts))
    connection.ensure_connection()  # autocommit: every COPY commits on its own
    raw = connection.connection

    # Contacts: ids 1..contacts, each with its secret and its first identity event (version 1
    # of its chain, of the current identity hash version: its identifiers and names apart, committed to).
    now = timezone.now()
    secrets: list[bytes] = [b""]  # index: contact id
    with raw.cursor() as cur:
        identity_rows = []
        identity_personal_rows = []
        with cur.copy(
            f"COPY compliance_contact (id, {CONTACT_COLUMNS}, identity_version, secret) FROM STDIN"
        ) as copy:
            for n in range(1, contacts + 1):
                row = plan.contact_row(n, now)
                secret = rng.randbytes(personal.SECRET_BYTES)
                secrets.append(secret)
                copy.write_row((n, *row, 1, secret))
                email, phone, app_user_id, zoho_id, first_name, last_name = row[:6]
                plain = personal.identity_personal_values(
                    dict(
                        email=email,
                        phone=phone,
                        app_user_id=app_user_id,
                        first_name=first_name,
                        last_name=last_name,
                    )
                )
                personal_hash = personal.identity_commitment(secret, plain, version=IDENTITY_HASH_VERSION)
                values = (
                    n,
                    1,
                    "created",
                    None,
                    None,
                    None,
                    zoho_id,
                    "",
                    "",
                    None,
                    "import",
                    None,
                    "bench",
                    "",
                    "",
                    now,
                )
                identity_hash = chain.identity_event_hash(
                    chain.GENESIS_HASH, (IDENTITY_HASH_VERSION, *values, personal_hash)
                )
                identity_rows.append(
                    (n, *values, IDENTITY_HASH_VERSION, personal_hash, chain.GENESIS_HASH, identity_hash)
                )
                identity_personal_rows.append(
                    (n, email, phone, app_user_id, first_name or "", last_name or "", None)
                )
        with cur.copy(
            f"COPY compliance_identityevent (id, {', '.join(chain.IDENTITY_HASHED_COLUMNS)}, prev_hash, hash) "
            "FROM STDIN"
        ) as copy:
            for identity_row in identity_rows:
                copy.write_row(identity_row)
        with cur.copy(
            "COPY compliance_identitypersonaldata (identity_event_id, email, phone, app_user_id, first_name, "
            "last_name, ip_address) FROM STDIN"
        ) as copy:
            for personal_row in identity_personal_rows:
                copy.write_row(personal_row)
        cur.execute("SELECT setval(pg_get_serial_sequence('compliance_contact', 'id'), %s)", [contacts])
        cur.execute("SELECT setval(pg_get_serial_sequence('compliance_identityevent', 'id'), %s)", [contacts])
    print(f"  contacts: {contacts} in {time.perf_counter() - t0:.1f}s", flush=True)

    # (contact, purpose) -> (version, status, hash, event_id, occurred_at, frequency, purpose, policy id)
    heads: dict[tuple[int, int], tuple] = {}
    events = plan.events
    part_size = -(-events // (plan.seals + 1))
    event_id = 0
    hash_fn = chain.event_hash
    actor = f"api:{client.name}"
    for part in range(plan.seals + 1):
        with (
            raw.cursor() as cur,
            cur.copy(
                "COPY compliance_consentevent (id, contact_id, purpose_id, version, previous_status, status, "
                "frequency, source, ip_address, user_agent, policy_version_id, occurred_at, recorded_at, "
                "actor, evidence, reason, idempotency_key, request_digest, prev_hash, hash, api_client_id, "
                "hash_version, personal_hash) FROM STDIN"
            ) as copy,
        ):
            personal_rows = []
            for _ in range(min(part_size, events - event_id)):
                event_id += 1
                contact_id = pick(rng)
                code = rng.choices(codes, weights)[0]
                purpose = purposes[code]
                key = (contact_id, purpose.id)
                head = heads.get(key)
                version, previous_status, prev_hash = (
                    (head[0], head[1], head[2]) if head else (0, "", chain.GENESIS_HASH)
                )
                evidence: dict = {}
                frequency = ""
                policy_id = None
                source = rng.choice(("mobile_app", "web_portal"))
                if plan.cite_in_effect:
                    moment = plan.start + plan.spacing * event_id
                    current = max(0, bisect.bisect_right(effective, moment) - 1)
                    cited = (current, max(0, current - 1))
                else:
                    cited = (1, 0)
                if previous_status in ("", "opted_out") and purpose.double_opt_in_required:
                    status = "pending"
                    policy_id = policies[cited[0]].id
                elif previous_status in ("", "opted_out", "pending"):
                    status = "opted_in"
                    policy_id = policies[cited[rng.random() >= 0.8]].id
                    if purpose.channel in ("email", "sms"):
                        frequency = rng.choice(("weekly", "monthly"))
                    if purpose.double_opt_in_required:
                        confirmed = plan.start + timedelta(seconds=event_id)
                        evidence = {"double_opt_in_confirmed_at": confirmed.isoformat()}
                else:
                    status = "opted_out"
                    if purpose.channel == "email" and rng.random() < 0.5:
                        source = "email_link"
                        evidence = {"campaign": f"c-{rng.randint(1, 40)}"}
                occurred_at = (
                    plan.start + plan.spacing * event_id + timedelta(microseconds=rng.randint(0, 999999))
                )
                recorded_at = occurred_at + timedelta(
                    seconds=rng.randint(1, 5), microseconds=rng.randint(0, 999999)
                )
                # As the write path stores it (normalise_ip) and PostgreSQL returns it.
                ip = (
                    f"198.51.100.{event_id % 250 + 1}"
                    if event_id % 4
                    else f"2001:db8::{event_id % 65535 + 1:x}"
                )
                idempotency_key = f"bench-{event_id}"
                kept, personal_evidence = personal.evidence_split(evidence)
                plain = personal.event_personal_values(
                    ip_address=ip, user_agent=rng.choice(USER_AGENTS), personal_evidence=personal_evidence
                )
                personal_hash = personal.commitment(secrets[contact_id], plain, version=chain.HASH_VERSION)
                values = (
                    chain.HASH_VERSION,
                    contact_id,
                    purpose.id,
                    version + 1,
                    previous_status,
                    status,
                    frequency,
                    source,
                    None,
                    "",
                    policy_id,
                    occurred_at,
                    recorded_at,
                    actor,
                    kept,
                    "",
                    idempotency_key,
                    personal_hash,
                )
                event_hash = hash_fn(prev_hash, values)
                copy.write_row(
                    (
                        event_id,
                        *values[1:14],
                        json.dumps(kept),
                        "",
                        idempotency_key,
                        hashlib.sha256(idempotency_key.encode()).hexdigest(),
                        prev_hash,
                        event_hash,
                        client.id,
                        chain.HASH_VERSION,
                        personal_hash,
                    )
                )
                if plain:
                    personal_rows.append((event_id, json.dumps(plain)))
                heads[key] = (
                    version + 1, status, event_hash, event_id, occurred_at, frequency, purpose, policy_id
                )  # fmt: skip
        with raw.cursor() as cur:
            with cur.copy("COPY compliance_eventpersonaldata (event_id, values) FROM STDIN") as copy:
                for personal_row in personal_rows:
                    copy.write_row(personal_row)
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('compliance_consentevent', 'id'), %s)", [event_id]
            )
        print(f"  events: {event_id} in {time.perf_counter() - t0:.1f}s", flush=True)
        if part < plan.seals:
            seal = services.ledger_seal()
            assert seal is not None
            print(
                f"  seal {seal.sequence}: {seal.event_count} events up to id {seal.last_event_id}", flush=True
            )

    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY compliance_consentstate (contact_id, purpose_id, status, frequency, event_id, occurred_at, "
            "version, head_hash, refresh_due_at, updated_at, policy_version_id) FROM STDIN"
        ) as copy,
    ):
        for (contact_id, purpose_id), head in heads.items():
            version, status, head_hash, eid, occ, freq, purpose, policy_id = head
            refresh = purpose.refresh_due_at(occ) if status == "opted_in" else None
            # The current event's policy version, as `advance_state` keeps it.
            copy.write_row(
                (contact_id, purpose_id, status, freq, eid, occ, version, head_hash, refresh, now, policy_id)
            )
    seconds = time.perf_counter() - t0
    print(f"  states: {len(heads)} chain heads in {seconds:.1f}s", flush=True)
    return LedgerBuilt(
        events=event_id, chains=len(heads), contacts=contacts, seals=plan.seals, seconds=seconds
    )
