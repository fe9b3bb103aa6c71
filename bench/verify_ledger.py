"""`manage.py verify_ledger` over a large ledger on PostgreSQL: wall clock and peak RSS.

    .venv/bin/python bench/verify_ledger.py                      # build 1,000,000 events, time 3 runs
    .venv/bin/python bench/verify_ledger.py --skip-build         # time again on the ledger already built
    .venv/bin/python bench/verify_ledger.py --events 50000 --tamper-check   # parallel == serial verdicts

The ledger is built fast but honestly: rows are bulk-copied with hashes computed
by `compliance.chain.event_hash` over exactly the values the database returns,
chains follow the write path's rules (version + 1, previous status, previous
hash), ConsentState holds each chain's head, and `ledger_seal()` seals it in
several steps (the newest events stay unsealed). Database: bench_verify (dropped
and recreated on every build).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DB = "bench_verify"
PURPOSE_WEIGHTS = {
    "email_marketing": 3,
    "sms_marketing": 3,
    "phone_marketing": 1,
    "profiling": 2,
    "third_party_sharing": 1,
}
USER_AGENTS = ["ShopApp/5.2 iOS", "ShopApp/5.1 Android 14", "Mozilla/5.0 (Windows NT 10.0) Firefox/128.0", ""]


def build(events: int, contacts: int, seals: int, seed: int) -> None:
    t0 = time.perf_counter()
    _common.recreate_database(DB)
    seal_log = Path(_common.bench_env(DB)["LEDGER_SEAL_LOG"])
    seal_log.unlink(missing_ok=True)
    _common.django_setup(DB)

    from django.db import connection
    from django.utils import timezone

    from compliance import chain, services
    from compliance.models import Purpose

    rng = random.Random(seed)
    policies = [
        services.policy_version_publish(label=label, effective_at=day, text=f"Privacy notice {label}.")
        for label, day in (("2025-01", "2025-01-01"), ("2026-03", "2026-03-01"))
    ]
    client, _key = services.api_client_create(
        name="bench-mobile-app", sources=["mobile_app", "web_portal", "email_link"]
    )
    purposes = {p.code: p for p in Purpose.objects.all()}
    codes = list(PURPOSE_WEIGHTS)
    weights = [PURPOSE_WEIGHTS[c] for c in codes]
    connection.ensure_connection()  # autocommit: every COPY commits on its own
    raw = connection.connection

    # Contacts: ids 1..contacts.
    now = timezone.now()
    with raw.cursor() as cur:
        with cur.copy(
            "COPY compliance_contact (id, email, phone, app_user_id, zoho_id, first_name, last_name, "
            "created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(1, contacts + 1):
                copy.write_row(
                    (
                        n,
                        f"person{n}@example.com",
                        f"+4915{110000000 + n}" if n % 3 else None,
                        f"u-{n}" if n % 2 else None,
                        None,
                        "Ana" if n % 2 else "Ben",
                        f"Person{n}",
                        now,
                        now,
                    )
                )
        cur.execute("SELECT setval(pg_get_serial_sequence('compliance_contact', 'id'), %s)", [contacts])
    print(f"  contacts: {contacts} in {time.perf_counter() - t0:.1f}s", flush=True)

    heads: dict[tuple[int, int], list] = {}  # (contact, purpose) -> [version, status, hash, event_id, occ]
    start = datetime(2025, 1, 1, tzinfo=UTC)
    part_size = -(-events // (seals + 1))
    event_id = 0
    hash_fn = chain.event_hash
    for part in range(seals + 1):
        rows = []
        for _ in range(min(part_size, events - event_id)):
            event_id += 1
            contact_id = rng.randint(1, contacts)
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
            if previous_status in ("", "opted_out") and purpose.double_opt_in_required:
                status = "pending"
                policy_id = policies[1].id
            elif previous_status in ("", "opted_out", "pending"):
                status = "opted_in"
                policy_id = policies[rng.random() < 0.8].id
                if purpose.channel in ("email", "sms"):
                    frequency = rng.choice(("weekly", "monthly"))
                if purpose.double_opt_in_required:
                    evidence = {
                        "double_opt_in_confirmed_at": (start + timedelta(seconds=event_id)).isoformat()
                    }
            else:
                status = "opted_out"
                if purpose.channel == "email" and rng.random() < 0.5:
                    source = "email_link"
                    evidence = {"campaign": f"c-{rng.randint(1, 40)}"}
            occurred_at = start + timedelta(seconds=event_id * 20, microseconds=rng.randint(0, 999999))
            recorded_at = occurred_at + timedelta(
                seconds=rng.randint(1, 5), microseconds=rng.randint(0, 999999)
            )
            # As the write path stores it (normalise_ip) and PostgreSQL returns it.
            ip = f"198.51.100.{event_id % 250 + 1}" if event_id % 4 else f"2001:db8::{event_id % 65535 + 1:x}"
            values = (
                contact_id,
                purpose.id,
                version + 1,
                previous_status,
                status,
                frequency,
                source,
                ip,
                rng.choice(USER_AGENTS),
                policy_id,
                occurred_at,
                recorded_at,
                f"api:{client.name}",
                evidence,
                "",
                f"bench-{event_id}",
            )
            digest = hashlib.sha256(values[15].encode()).hexdigest()
            event_hash = hash_fn(prev_hash, values)
            rows.append(
                (event_id, *values[:13], json.dumps(evidence), *values[14:], digest, prev_hash, event_hash)
            )
            heads[key] = [version + 1, status, event_hash, event_id, occurred_at, frequency, purpose]
        with raw.cursor() as cur:
            with cur.copy(
                "COPY compliance_consentevent (id, contact_id, purpose_id, version, previous_status, status, "
                "frequency, source, ip_address, user_agent, policy_version_id, occurred_at, recorded_at, "
                "actor, evidence, reason, idempotency_key, request_digest, prev_hash, hash, api_client_id) "
                "FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row((*row, client.id))
            cur.execute(
                "SELECT setval(pg_get_serial_sequence('compliance_consentevent', 'id'), %s)", [event_id]
            )
        print(f"  events: {event_id} in {time.perf_counter() - t0:.1f}s", flush=True)
        if part < seals:
            seal = services.ledger_seal()
            print(
                f"  seal {seal.sequence}: {seal.event_count} events up to id {seal.last_event_id}", flush=True
            )

    with (
        raw.cursor() as cur,
        cur.copy(
            "COPY compliance_consentstate (contact_id, purpose_id, status, frequency, event_id, occurred_at, "
            "version, head_hash, refresh_due_at, updated_at) FROM STDIN"
        ) as copy,
    ):
        for (contact_id, purpose_id), (
            version,
            status,
            head_hash,
            eid,
            occ,
            freq,
            purpose,
        ) in heads.items():
            refresh = (
                services.add_months(occ, purpose.validity_months)
                if status == "opted_in" and purpose.validity_months
                else None
            )
            copy.write_row((contact_id, purpose_id, status, freq, eid, occ, version, head_hash, refresh, now))
    connection.close()
    _common.psql("VACUUM ANALYZE", DB)
    print(
        f"built {events} events, {len(heads)} chains, {contacts} contacts, {seals} seals "
        f"in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )


class RssSampler(threading.Thread):
    """Peak RSS of a process and its children, summed, sampled every 20 ms from /proc."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_total = 0
        self.peak_single = 0
        self.done = threading.Event()

    def tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return pids

    def rss(self, pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.done.is_set():
            sizes = [self.rss(pid) for pid in self.tree()]
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_single = max([self.peak_single, *sizes])
            time.sleep(0.02)


# Runs verify_ledger with compliance.verification loaded from another file (to time a
# previous version of it against the same ledger).
SUBSTITUTE = """
import importlib.util, os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
spec = importlib.util.spec_from_file_location("compliance.verification", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules["compliance.verification"] = module
spec.loader.exec_module(module)
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", "verify_ledger"])
"""


def time_verify(runs: int, verification_file: str | None) -> None:
    env = _common.bench_env(DB)
    command = [_common.PYTHON, "manage.py", "verify_ledger"]
    if verification_file:
        command = [_common.PYTHON, "-c", SUBSTITUTE, verification_file]
    shown = command if not verification_file else [*command[:2], "<SUBSTITUTE>", verification_file]
    print(
        f"command: DATABASE_URL={env['DATABASE_URL']} LEDGER_SEAL_LOG={env['LEDGER_SEAL_LOG']} "
        + " ".join(shown)
    )
    walls = []
    for run in range(1, runs + 1):
        load = Path("/proc/loadavg").read_text().split()[:3]
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=_common.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        sampler = RssSampler(proc.pid)
        sampler.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        walls.append(wall)
        print(
            f"run {run}: {wall:.2f}s wall, peak RSS {sampler.peak_total / 2**20:.0f} MiB (process tree summed), "
            f"{sampler.peak_single / 2**20:.0f} MiB (largest process); exit {proc.returncode}; "
            f"load before {' '.join(load)}"
        )
        print(f"  output: {(out or err).strip()[-300:]}")
    print(
        f"median {statistics.median(walls):.2f}s, best {min(walls):.2f}s over {runs} runs (goal: at most 5 s)"
    )


def tamper_check() -> None:
    """The parallel verifier must give the serial verifier's verdict, word for word, on a tampered ledger."""
    _common.django_setup(DB)
    from django.db import connection

    from compliance import ledger_guard
    from compliance.models import ConsentEvent, Seal
    from compliance.verification import ledger_verify

    def compare(label: str) -> None:
        serial = ledger_verify(workers=1)
        parallel = ledger_verify(workers=2)
        same = serial == parallel
        print(f"  {'same' if same else 'DIFFERENT'}: {label}: {serial.summary()}")
        if not same:
            print(f"    parallel: {parallel.summary()}")
            raise SystemExit(1)

    def tamper(*statements: tuple[str, list]) -> None:
        ledger_guard.drop(connection)
        try:
            with connection.cursor() as cursor:
                for sql, params in statements:
                    cursor.execute(sql, params)
        finally:
            ledger_guard.install(connection)

    ids = list(ConsentEvent.objects.order_by("id").values_list("id", flat=True))
    seal = Seal.objects.order_by("sequence").first()
    compare("intact")
    # The cases accumulate, each breaking the ledger at an earlier point than the last,
    # so each verdict names the newest case (and the order of checks is exercised).
    tamper(("UPDATE compliance_consentstate SET version = version + 1 WHERE event_id = %s", [ids[-2]]))
    compare("a state row's version raised")
    last = ids[-1]
    tamper(("UPDATE compliance_consentevent SET reason = 'edited' WHERE id = %s", [last]))
    compare("newest event edited")
    mid = ids[len(ids) // 2 + 1]
    tamper(("UPDATE compliance_consentevent SET hash = repeat('f', 64) WHERE id = %s", [mid]))
    compare("hash of a sealed event replaced")
    in_seal = ids[seal.event_count // 2]
    tamper(
        ("UPDATE compliance_outboxentry SET event_id = NULL WHERE event_id = %s", [in_seal]),
        ("UPDATE compliance_consentstate SET event_id = NULL WHERE event_id = %s", [in_seal]),
        ("DELETE FROM compliance_consentevent WHERE id = %s", [in_seal]),
    )
    compare("an event in seal 1 deleted")
    tamper(("UPDATE compliance_seal SET events_digest = repeat('0', 64) WHERE sequence = 1", []))
    compare("seal 1 digest replaced")
    tamper(("UPDATE compliance_consentevent SET ip_address = '192.0.2.1/24' WHERE id = %s", [ids[3]]))
    compare("fourth event's address given a netmask")
    print("tamper check passed: the verdicts agree (database is now tampered; rebuild before timing)")


def main() -> None:
    global DB
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=None, help="default: events / 7")
    parser.add_argument(
        "--seals", type=int, default=4, help="seals made while building (the tail stays unsealed)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--database", default=DB, help=f"a bench* database (default {DB})")
    parser.add_argument("--tamper-check", action="store_true", help="compare serial and parallel verdicts")
    parser.add_argument(
        "--verification-file", help="time verify_ledger with compliance/verification.py taken from this file"
    )
    args = parser.parse_args()
    DB = args.database
    print("machine:")
    _common.print_machine()
    if not args.skip_build:
        build(args.events, args.contacts or max(args.events // 7, 10), args.seals, args.seed)
    if args.tamper_check:
        tamper_check()
    else:
        time_verify(args.runs, args.verification_file)


if __name__ == "__main__":
    main()
