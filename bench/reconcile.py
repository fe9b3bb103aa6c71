"""Benchmark: reconciliation of N contacts held in zohosim against a PostgreSQL ledger.

    .venv/bin/python bench/reconcile.py --contacts 100000 --contacts 1000000 [--method coql|bulk|both]

What it builds (figures in docs/benchmarks.md):

* **zohosim**, in its own process (so its memory is not counted): N generated contacts whose
  consent fields agree with the ledger, except one in 1,000 with ``Profiling_Consent`` set in
  CRM by a user (drift) and one in 1,000 opted in to SMS on both sides; one in 10,000 is deleted
  (the ledger still links to it: ``record_missing``).
* **the ledger** (database ``bench_reconcile``, rebuilt per size): N contacts with email and
  Zoho id (``bulk_create``); one in 1,000 has an ``sms_marketing`` opt-in recorded through
  the ledger's write path; the rest hold no consent (their projection: every field "no").
  Then ``ANALYZE``, as autovacuum would do soon after such a load.
* Then ``reconcile()`` runs in a fresh process per method, and the script prints one line per run:
  ``seconds`` (wall), ``cpu_s`` (that process), ``postgres_cpu_s`` (its database backend),
  ``peak_rss_mb`` (``ru_maxrss`` of that process, Django and the client included), the run's
  counts, ``sim_wait_s`` (the sum of zohosim's own time answering the run's calls: time the run
  waited on the stand-in for Zoho, whose server time we do not control), ``sim_cpu_s`` (the sim
  process's CPU meanwhile, including Bulk Read files it builds while the run compares) and the
  load average before the run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PYTHON, ROOT, bench_env, load_average, print_machine, recreate_database

DATABASE = "bench_reconcile"
SAMPLE = 1000  # one contact in SAMPLE is opted in to SMS; one (offset by half) drifts
DELETED = 10_000  # one CRM record in DELETED is gone from CRM (the ledger still links to it)


def serve(contacts: int) -> None:
    """Child process: build the sim's state and serve it until stdin closes."""
    from zohosim import LiveServer, SimConfig, seed

    state = seed.generate(
        contacts=contacts,
        lists=0,
        campaigns=0,
        opt_out_ratio=0.0,
        details_ratio=0.0,
        seed=1,
        config=SimConfig(credits_limit=5_000_000, bulk_read_polls_to_complete=0),
    )
    store = state.modules["Contacts"]
    # Records that agree share one field dict (never written in the bench, so never mutated).
    agreed = {
        "SMS_Opt_In": False,
        "Profiling_Consent": False,
        "Third_Party_Sharing_Consent": False,
        "Data_Processing_Basis_Details": {"Contact_Through_Email": False, "Contact_Through_Phone": False},
    }
    for i, rid in enumerate(store.ids):
        record = store.records[rid]
        record.Email_Opt_Out = True
        if i % SAMPLE == 0:
            record.extra = {**agreed, "SMS_Opt_In": True}
        elif i % SAMPLE == SAMPLE // 2:
            record.extra = {**agreed, "Profiling_Consent": True}
        else:
            record.extra = agreed
    for rid in store.ids[7::DELETED]:
        state.delete_record("Contacts", rid)
    with LiveServer(state=state) as sim:
        print(json.dumps({"url": sim.url, "ids_first": str(store.ids[0])}), flush=True)
        sys.stdin.read()


def build_ledger(contacts: int, first_id: int) -> None:
    """Child process: N contacts, a sample with an SMS opt-in through the write path."""
    import django

    django.setup()
    from datetime import UTC, datetime

    from compliance import services
    from compliance.models import Contact

    started = time.monotonic()
    batch = 20_000
    for start in range(0, contacts, batch):
        Contact.objects.bulk_create(
            [
                Contact(email=f"contact{i}@example.com", zoho_id=str(first_id + i * 1000))
                for i in range(start, min(contacts, start + batch))
            ]
        )
    services.policy_version_publish(label="bench", effective_at="2026-01-01", text="bench notice")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(0, contacts, SAMPLE):
        services.consent_ingest(
            identity=services.ContactIdentity(email=f"contact{i}@example.com"),
            decision=services.ConsentDecision(
                purpose="sms_marketing",
                status="opted_in",
                source="mobile_app",
                occurred_at=when,
                idempotency_key=f"bench-{i}",
                policy_version="bench",
            ),
        )
    # After a bulk load, as autovacuum would soon: the planner needs the tables' statistics.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(
        f"  ledger: {contacts:,} contacts, {contacts // SAMPLE:,} SMS opt-ins, {time.monotonic() - started:.1f} s"
    )


def run(method: str) -> None:
    """Child process: one reconciliation, timed, with this process's peak memory."""
    import django

    django.setup()
    from django.db import connection

    from sync.reconcile import reconcile

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu, pg_cpu = usage.ru_utime + usage.ru_stime, _cpu_s(backend)
    started = time.perf_counter()
    result = reconcile(method=method)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024
    print(
        json.dumps(
            {
                "method": method,
                "seconds": round(seconds, 2),
                "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu, 2),
                "postgres_cpu_s": round(_cpu_s(backend) - pg_cpu, 2),
                "peak_rss_mb": round(peak_mb, 1),
                "records_read": result.records_read,
                "compared": result.contacts_compared,
                "opened": result.opened,
                "resolved": result.resolved,
                "missing": result.missing,
            }
        ),
        flush=True,
    )


def _sim_calls(url: str, since: int = 0) -> list[dict[str, Any]]:
    """zohosim's log of the calls it answered (each with its server-side duration)."""
    import httpx

    return list(httpx.get(f"{url}/_sim/calls", params={"since": since}, timeout=60).json()["calls"])


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, action="append")
    parser.add_argument("--method", choices=["coql", "bulk", "both"], default="both")
    parser.add_argument("--profile", action="store_true", help="cProfile the reconciliation (top 25)")
    args = parser.parse_args()
    print("machine:")
    print_machine()
    for contacts in args.contacts or [100_000, 1_000_000]:
        print(f"\n== {contacts:,} contacts")
        sim = subprocess.Popen(
            [PYTHON, __file__, "--serve", str(contacts)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert sim.stdout is not None
        info = json.loads(sim.stdout.readline())
        try:
            recreate_database(DATABASE)
            env = bench_env(
                DATABASE,
                ZOHO_ACCOUNTS_URL=info["url"],
                ZOHO_CAMPAIGNS_URL=info["url"],
                ZOHO_CLIENT_ID="zohosim-client",
                ZOHO_CLIENT_SECRET="zohosim-secret",
                ZOHO_REFRESH_TOKEN="zohosim-refresh-token",
                EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
                LOG_LEVEL="WARNING",
            )
            subprocess.run(
                [PYTHON, __file__, "--ledger", str(contacts), info["ids_first"]],
                env=env,
                check=True,
                cwd=ROOT,
            )
            methods = ["coql", "bulk"] if args.method == "both" else [args.method]
            for method in methods:
                cmd = [PYTHON, __file__, "--run", method]
                if args.profile:
                    cmd = [PYTHON, "-m", "cProfile", "-s", "cumulative", __file__, "--run", method]
                since = max((c["seq"] for c in _sim_calls(info["url"])), default=0)
                sim_cpu = _cpu_s(sim.pid)
                load = load_average()
                out = subprocess.run(
                    cmd, env=env, check=True, cwd=ROOT, capture_output=True, text=True
                ).stdout
                lines = out.splitlines()
                result = json.loads(next(line for line in lines if line.startswith("{")))
                calls = _sim_calls(info["url"], since)
                result["sim_wait_s"] = round(sum(c["duration_ms"] for c in calls) / 1000, 2)
                result["sim_calls"] = len(calls)
                result["sim_cpu_s"] = round(_cpu_s(sim.pid) - sim_cpu, 2)
                result["load_before"] = load
                print("  " + json.dumps(result), flush=True)
                if args.profile:
                    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
                    print("\n".join(lines[start : start + 26]))
        finally:
            assert sim.stdin is not None
            sim.stdin.close()
            sim.wait(timeout=60)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]))
    elif len(sys.argv) > 3 and sys.argv[1] == "--ledger":
        os.chdir(ROOT)
        build_ledger(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 2 and sys.argv[1] == "--run":
        run(sys.argv[2])
    else:
        main()
