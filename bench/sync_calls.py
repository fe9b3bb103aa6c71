"""Zoho calls and credits per 1,000 consent changes, push and verify together, against zohosim.

    .venv/bin/python bench/sync_calls.py                 # 10,000 changes over 5,000 contacts, 2 waves
    .venv/bin/python bench/sync_calls.py --waves 1       # every change recorded before the first push

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
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DB = "bench_sync"
PURPOSES = ["email_marketing", "sms_marketing", "phone_marketing", "profiling", "third_party_sharing"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--contacts", type=int, default=5_000)
    parser.add_argument("--waves", type=int, default=2)
    args = parser.parse_args()

    _common.recreate_database(DB)
    _common.django_setup(DB, CONSENT_VERIFY_DELAY_S="0")

    import random

    from django.conf import settings
    from django.db.models import Sum
    from django.utils import timezone

    from compliance import services
    from sync.models import SyncPush, ZohoCall
    from sync.outbox import outbox_claim
    from sync.push import outbox_batch_push
    from sync.verify import pushes_verify_due
    from sync.zoho import ZohoClient, ZohoConfig
    from zohosim import LiveServer, SimConfig

    settings.CONSENT_VERIFY_DELAY_S = 0
    rnd = random.Random(1)
    policy = services.policy_version_publish(label="bench", effective_at="2026-01-01", text="bench")
    sim = LiveServer(config=SimConfig(edition="ultimate", users=100))
    sim.start()
    try:
        record_ids = [
            sim.state.add_contact(
                Last_Name=f"C{i}",
                Email=f"c{i}@bench.example",
                Email_Opt_Out=True,
                SMS_Opt_In=False,
                Profiling_Consent=False,
                Third_Party_Sharing_Consent=False,
            )
            for i in range(args.contacts)
        ]
        zoho = ZohoClient(
            ZohoConfig(
                client_id="zohosim-client",
                client_secret="zohosim-secret",
                refresh_token="zohosim-refresh-token",
                accounts_url=sim.url,
                campaigns_url=sim.url,
                timeout_s=30.0,
                cache_prefix=f"bench-sync-{time.time_ns()}",
            )
        )
        now = timezone.now()
        changes = []
        for n in range(args.changes):
            i = n % args.contacts
            purpose = rnd.choice(PURPOSES)
            status = rnd.choice(["opted_in", "opted_out"])
            changes.append(
                (
                    services.ContactIdentity(email=f"c{i}@bench.example", zoho_id=record_ids[i]),
                    services.ConsentDecision(
                        purpose=purpose,
                        status=status,
                        source="mobile_app",
                        occurred_at=now - timedelta(seconds=args.changes - n),
                        idempotency_key=f"bench-{n}",
                        policy_version=policy.label if status == "opted_in" else None,
                        evidence={"double_opt_in_confirmed_at": now.isoformat()}
                        if purpose == "email_marketing"
                        else {},
                    ),
                )
            )
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
        print(f"changes: {args.changes} over {args.contacts} contacts in {args.waves} wave(s)")
        print(f"CRM calls: {calls} ({by_op}); zohosim counted {sim_calls}")
        print(f"credits: {credits}")
        print(
            f"calls per 1,000 changes: {calls * per_k:.1f}; credits per 1,000 changes: {credits * per_k:.1f}"
        )
        print(f"push + verify wall clock, all waves: {sync_seconds:.1f} s; pushes not verified: {pending}")
        _common.print_machine()
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
