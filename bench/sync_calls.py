"""Zoho calls and credits per 1,000 consent changes, push and verify together, against zohosim.

    .venv/bin/python bench/sync_calls.py                 # 10,000 changes over 5,000 contacts, 2 waves
    .venv/bin/python bench/sync_calls.py --waves 1       # every change recorded before the first push
    .venv/bin/python bench/sync_calls.py --workers 2     # the real flow: commits kick real workers
    .venv/bin/python bench/sync_calls.py --unlinked      # contacts known only by email: linking counts too

With ``--unlinked`` the changes name contacts by email only (no Zoho id): the push links them
to their CRM records in bulk (`sync.linking`) and the figure counts linking, push and verify.

With ``--workers N`` nothing is called in-process: the changes are recorded as they would
arrive (``consent_ingest_batch``, 100 a call, each commit kicking a push through `sync.kick`),
N ``celery worker`` processes on Redis (db 3, cache db 4 of 127.0.0.1:6379; or ``--broker-url``
and ``--cache-url``, or ``BENCH_SYNC_BROKER_URL`` and ``BENCH_SYNC_CACHE_URL``) push and read back on their own
(each pushed batch queues its read-back; no beat runs), and the script waits until every
contact's latest push is verified. Figures: calls and credits per 1,000 changes, and the
time from the first change recorded to the last push verified.

The ledger lives in PostgreSQL (database bench_sync, dropped and recreated). zohosim
runs as a LiveServer (real HTTP on loopback) holding one CRM record per contact.
The changes are recorded through the ledger's write path (`consent_ingest_batch`,
not timed) in ``--waves`` waves; after each wave the push and the verify run
*in-process* (the services the Celery tasks call: `outbox_claim` +
`outbox_batch_push` until the outbox is empty, then `pushes_verify_due` with the
verify delay at 0), one process, no workers. Calls and credits are counted from
the `ZohoCall` log and checked against zohosim's own call log.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DB = os.environ.get("BENCH_SYNC_DB", "bench_sync")  # (bench* only: see _common)
PURPOSES = ["email_marketing", "sms_marketing", "phone_marketing", "profiling", "third_party_sharing"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=5_000)
    parser.add_argument("--waves", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="run real Celery workers (the real flow)")
    parser.add_argument("--verify-delay", type=int, default=0, help="with --workers: CONSENT_VERIFY_DELAY_S")
    parser.add_argument("--deadline-s", type=float, default=600)
    parser.add_argument("--broker-url", default=BROKER, help="with --workers: the Redis broker (emptied)")
    parser.add_argument(
        "--cache-url", default=CACHE, help="with --workers: the workers' Redis cache (emptied)"
    )
    parser.add_argument(
        "--unlinked", action="store_true", help="contacts known only by email: no Zoho id, linked by the sync"
    )
    args = parser.parse_args()
    if args.workers:
        with_workers(args)
        return

    _common.recreate_database(DB)
    _common.django_setup(DB, CONSENT_VERIFY_DELAY_S="0", RECONCILE_BULK_POLL_S="1")

    from django.conf import settings
    from django.db.models import Sum

    from compliance import services
    from sync import quota
    from sync.models import SyncPush, ZohoCall
    from sync.outbox import outbox_claim
    from sync.push import outbox_batch_push
    from sync.verify import pushes_verify_due
    from sync.zoho import ZohoClient, ZohoConfig

    settings.CONSENT_VERIFY_DELAY_S = 0
    policy = services.policy_version_publish(label="bench", effective_at="2026-01-01", text="bench")
    sim, record_ids = sim_holding(args.contacts)
    try:
        prefix = f"bench-sync-{time.time_ns()}"
        zoho = ZohoClient(
            ZohoConfig(
                client_id="zohosim-client",
                client_secret="zohosim-secret",
                refresh_token="zohosim-refresh-token",
                accounts_url=sim.url,
                campaigns_url=sim.url,
                timeout_s=30.0,
                cache_prefix=prefix,
            ),
            gate=quota.gate(prefix),  # the quota, as `ZohoClient.from_settings` hands it
        )
        changes = _changes(args, record_ids, policy.label)
        per_wave = -(-len(changes) // args.waves)
        sync_seconds = 0.0
        for wave in range(args.waves):
            chunk = changes[wave * per_wave : (wave + 1) * per_wave]
            started = time.monotonic()
            services.consent_ingest_batch(items=chunk, api_client=None)
            print(
                f"wave {wave + 1}: {len(chunk)} changes recorded in {time.monotonic() - started:.1f} s",
                flush=True,
            )
            started = time.monotonic()
            while claim := outbox_claim(worker="bench"):
                outbox_batch_push(claim=claim, zoho=zoho)
            verify = pushes_verify_due(zoho=zoho)
            elapsed = time.monotonic() - started
            sync_seconds += elapsed
            print(
                f"wave {wave + 1}: pushed and verified in {elapsed:.1f} s "
                f"({verify.verified} verified, {verify.mismatched} mismatched, {verify.superseded} superseded)",
                flush=True,
            )
        crm = ZohoCall.objects.filter(service="crm")
        calls = crm.count()
        credits = crm.aggregate(total=Sum("credits"))["total"] or 0
        by_op = dict(
            (op, crm.filter(operation=op).count())
            for op in crm.values_list("operation", flat=True).distinct()
        )
        sim_calls = sum(1 for c in sim.state.calls if str(c.get("op", "")).startswith("crm."))
        pending = SyncPush.objects.exclude(verification__in=["verified", "superseded"]).count()
        per_k = 1000 / args.changes
        print()
        linked = "known only by email, linked by the sync" if args.unlinked else "linked by Zoho id"
        print(f"changes: {args.changes} over {args.contacts} contacts ({linked}) in {args.waves} wave(s)")
        print(f"CRM calls: {calls} ({by_op}); zohosim counted {sim_calls}")
        print(f"credits: {credits}")
        print(
            f"calls per 1,000 changes: {calls * per_k:.1f}; credits per 1,000 changes: {credits * per_k:.1f}"
        )
        print(f"push + verify wall clock, all waves: {sync_seconds:.1f} s; pushes not verified: {pending}")
        _common.print_machine()
    finally:
        sim.stop()


BROKER = os.environ.get("BENCH_SYNC_BROKER_URL", "redis://127.0.0.1:6379/3")
CACHE = os.environ.get("BENCH_SYNC_CACHE_URL", "redis://127.0.0.1:6379/4")


def _changes(args: argparse.Namespace, record_ids: list[str], policy_label: str) -> list[tuple[Any, Any]]:
    import random

    from django.utils import timezone

    from compliance import services

    rnd = random.Random(1)
    now = timezone.now()
    out = []
    for n in range(args.changes):
        i = n % args.contacts
        purpose = rnd.choice(PURPOSES)
        status = rnd.choice(["opted_in", "opted_out"])
        out.append(
            (
                services.ContactIdentity(
                    email=f"c{i}@bench.example", zoho_id=None if args.unlinked else record_ids[i]
                ),
                services.ConsentDecision(
                    purpose=purpose,
                    status=status,
                    source="mobile_app",
                    occurred_at=now - timedelta(seconds=args.changes - n),
                    idempotency_key=f"bench-{n}",
                    policy_version=policy_label if status == "opted_in" else None,
                    evidence={"double_opt_in_confirmed_at": now.isoformat()}
                    if purpose == "email_marketing"
                    else {},
                ),
            )
        )
    return out


def with_workers(args: argparse.Namespace) -> None:
    import redis

    for url in (args.broker_url, args.cache_url):
        redis.Redis.from_url(url).flushdb()
    _common.recreate_database(DB)
    sim_process = subprocess.Popen(
        [_common.PYTHON, __file__, "--serve", str(args.contacts)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sim_process.stdout is not None and sim_process.stdin is not None
    sim_info = json.loads(sim_process.stdout.readline())
    zoho_env = {
        "ZOHO_ACCOUNTS_URL": sim_info["url"],
        "ZOHO_CAMPAIGNS_URL": sim_info["url"],
        "ZOHO_CLIENT_ID": "zohosim-client",
        "ZOHO_CLIENT_SECRET": "zohosim-secret",
        "ZOHO_REFRESH_TOKEN": "zohosim-refresh-token",
        "CELERY_BROKER_URL": args.broker_url,
        "CACHE_URL": args.cache_url,
        "CONSENT_VERIFY_DELAY_S": str(args.verify_delay),
        "ZOHO_RATE_LIMIT_PER_S": "50",
        "LOG_LEVEL": "WARNING",
    }
    _common.django_setup(DB, **zoho_env)
    from django.db import connection
    from django.db.models import Count, Sum

    from compliance import services
    from compliance.models import OutboxEntry
    from sync.models import SyncPush, ZohoCall

    env = _common.bench_env(DB, **zoho_env, DATABASE_CONN_MAX_AGE="0")
    logs = _common.WORK_DIR / "sync_calls_workers"
    logs.mkdir(parents=True, exist_ok=True)
    workers = [
        subprocess.Popen(
            [_common.PYTHON, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-n", f"bench{i}@%h",
             "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=_common.ROOT, env=env, stdout=(logs / f"worker-{i}.log").open("wb"), stderr=subprocess.STDOUT,
        )
        for i in range(args.workers)
    ]  # fmt: skip
    try:
        policy = services.policy_version_publish(label="bench", effective_at="2026-01-01", text="bench")
        changes = _changes(args, sim_info["record_ids"], policy.label)
        started = time.monotonic()
        for start in range(0, len(changes), 100):
            services.consent_ingest_batch(items=changes[start : start + 100], api_client=None)
        recorded = time.monotonic() - started
        print(
            f"{len(changes)} changes recorded in {recorded:.1f} s ({len(changes) / recorded:.0f}/s)",
            flush=True,
        )

        def all_verified() -> bool:
            connection.close()
            if OutboxEntry.objects.filter(processed_at__isnull=True).exists():
                return False
            latest: dict[int, str] = {}
            for contact_id, verification in SyncPush.objects.order_by("id").values_list(
                "contact_id", "verification"
            ):
                latest[contact_id] = verification
            return bool(latest) and set(latest.values()) == {"verified"}

        deadline = time.monotonic() + args.deadline_s
        while not all_verified():
            if time.monotonic() > deadline:
                raise SystemExit(f"not all verified after {args.deadline_s} s; worker logs in {logs}")
            time.sleep(0.5)
        total = time.monotonic() - started
        crm = ZohoCall.objects.filter(service="crm")
        calls = crm.count()
        credits = crm.aggregate(total=Sum("credits"))["total"] or 0
        by_op = {
            op: crm.filter(operation=op).count() for op in crm.values_list("operation", flat=True).distinct()
        }
        outcomes = dict(SyncPush.objects.values_list("verification").annotate(n=Count("id")))
        per_k = 1000 / args.changes
        print()
        print(
            f"changes: {args.changes} over {args.contacts} contacts; {args.workers} workers; verify delay {args.verify_delay} s"
        )
        print(f"CRM calls: {calls} ({by_op}); credits {credits}; pushes {outcomes}")
        print(
            f"calls per 1,000 changes: {calls * per_k:.1f}; credits per 1,000 changes: {credits * per_k:.1f}"
        )
        print(
            f"first change recorded -> every push verified: {total:.1f} s (recording took {recorded:.1f} s)"
        )
        _common.print_machine()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        sim_process.stdin.close()
        sim_process.wait(timeout=30)


def sim_holding(contacts: int) -> tuple[Any, list[str]]:
    """A running zohosim holding one "no consent" CRM record per contact, and the records' ids."""
    from zohosim import LiveServer, SimConfig

    sim = LiveServer(config=SimConfig(edition="ultimate", users=100))
    sim.start()
    record_ids = [
        sim.state.add_contact(
            Last_Name=f"C{i}",
            Email=f"c{i}@bench.example",
            Email_Opt_Out=True,
            SMS_Opt_In=False,
            Profiling_Consent=False,
            Third_Party_Sharing_Consent=False,
        )
        for i in range(contacts)
    ]
    return sim, record_ids


def serve(contacts: int) -> None:
    """Child process: zohosim holding one "no consent" record per contact, until stdin closes."""
    sys.path.insert(0, str(_common.ROOT))
    sim, record_ids = sim_holding(contacts)
    print(json.dumps({"url": sim.url, "record_ids": record_ids}), flush=True)
    sys.stdin.read()
    sim.stop()


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    else:
        main()
