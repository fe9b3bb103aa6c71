"""Ingest throughput on PostgreSQL: in-process services, then the HTTP API under gunicorn.

    .venv/bin/python bench/ingest.py                    # everything, default sizes (a few minutes)
    .venv/bin/python bench/ingest.py --workers 2 4      # gunicorn worker counts to try
    .venv/bin/python bench/ingest.py --profile          # also cProfile one in-process batch
    .venv/bin/python bench/ingest.py --skip-http        # the in-process figures only
    .venv/bin/python bench/ingest.py --skip-http --gc   # also the garbage collector's share of a batch

Database bench_ingest (or --database bench_…) is dropped and recreated at the start.
Data is mixed: many contacts (email, phone, app user id), every purpose, opt-ins naming
a policy version (email marketing with its double opt-in, run by the app itself: pending with
send_confirmation false, then opted_in with evidence), opt-outs from the app, the portal and
email unsubscribe links.

The HTTP load generator is a separate process (`--drive`) with client threads
using httpx over loopback; gunicorn, PostgreSQL and the generator all share the
machine's cores. Every phase sends a fixed number of events and stops by itself.
Each phase prints the load average before it (other people's work on the machine moves
every figure). A rate counts only the events the server recorded (created or replayed);
requests that failed (a 500, gunicorn's 30 s worker timeout) are listed, not counted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DB = "bench_ingest"  # --database
CACHE_URL = "redis://127.0.0.1:6379/9"
THROTTLE = "100000000/min"
# No broker or worker runs here: the push a commit queues (sync.kick, at most once a second
# per process) would go to the default SQLite broker, which is not what production pays.
EXTRA_ENV = {"CACHE_URL": CACHE_URL, "API_THROTTLE_RATE": THROTTLE, "SYNC_PUSH_ON_COMMIT": "false"}
PURPOSES = ["email_marketing", "sms_marketing", "phone_marketing", "profiling", "third_party_sharing"]
USER_AGENTS = ["ShopApp/5.2 iOS", "ShopApp/5.1 Android 14", "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"]


def make_events(count: int, *, prefix: str, contacts: int, seed: int) -> list[dict]:
    """Request bodies as the app and the portal send them (see tests/compliance/conftest.py event_body)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for n in range(count):
        c = rng.randint(1, contacts)
        purpose = rng.choice(PURPOSES)
        contact = {"email": f"person{c}@example.com", "first_name": "Ana", "last_name": f"Person{c}"}
        if c % 3:
            contact["phone"] = f"+49151{c:08d}"
        if c % 2:
            contact["app_user_id"] = f"u-{c}"
        body: dict = {
            "contact": contact,
            "purpose": purpose,
            "source": rng.choice(("mobile_app", "web_portal")),
            "ip_address": f"198.51.100.{c % 250 + 1}" if c % 5 else f"2001:db8::{c:x}",
            "user_agent": rng.choice(USER_AGENTS),
            "occurred_at": (now - timedelta(minutes=rng.randint(1, 600), microseconds=n)).isoformat(),
            "idempotency_key": f"{prefix}-{n}",
        }
        roll = rng.random()
        if roll < 0.55:
            body["status"] = "opted_in"
            body["policy_version"] = "2026-03" if rng.random() < 0.8 else "2025-01"
            if purpose in ("email_marketing", "sms_marketing"):
                body["frequency"] = rng.choice(("weekly", "monthly"))
            if purpose == "email_marketing":
                body["evidence"] = {"double_opt_in_confirmed_at": body["occurred_at"]}
        elif roll < 0.65 and purpose == "email_marketing":
            body["status"] = "pending"
            body["policy_version"] = "2026-03"
            # This app runs its own double opt-in (its opt-ins above carry the confirmation):
            # Consent Desk sends no confirmation mail (bench/lifecycle measures those).
            body["send_confirmation"] = False
        else:
            body["status"] = "opted_out"
            if purpose == "email_marketing" and rng.random() < 0.5:
                body["source"] = "email_link"
                body["evidence"] = {"campaign": f"c-{rng.randint(1, 40)}"}
        events.append(body)
    return events


def setup_database() -> str:
    _common.recreate_database(DB)
    _common.django_setup(DB, **EXTRA_ENV)
    from compliance import services

    services.policy_version_publish(
        label="2025-01", effective_at="2025-01-01", text="Privacy notice 2025-01."
    )
    services.policy_version_publish(
        label="2026-03", effective_at="2026-03-01", text="Privacy notice 2026-03."
    )
    _client, key = services.api_client_create(
        name="bench-mobile-app", sources=["mobile_app", "web_portal", "email_link"]
    )
    return key


def to_domain(body: dict):
    from compliance.api.serializers import ConsentEventInputSerializer

    serializer = ConsentEventInputSerializer(data=body)
    serializer.is_valid(raise_exception=True)
    return serializer.to_domain()


def in_process(single: int, batch: int, contacts: int, profile: bool) -> None:
    from django.db import connection

    from compliance import services
    from compliance.models import ApiClient

    client = ApiClient.objects.get(name="bench-mobile-app")
    items = [to_domain(b) for b in make_events(single, prefix="inproc-single", contacts=contacts, seed=1)]
    connection.ensure_connection()
    print(f"load average before in-process consent_ingest: {_common.load_average()}")
    started = time.perf_counter()
    failed = 0
    for identity, decision in items:
        try:
            services.consent_ingest(identity=identity, decision=decision, api_client=client)
        except services.ConsentRejected:
            failed += 1
    took = time.perf_counter() - started
    print(
        f"in-process consent_ingest: {single} events in {took:.2f}s = {single / took:.0f} events/s ({failed} rejected)"
    )

    items = [to_domain(b) for b in make_events(batch, prefix="inproc-batch", contacts=contacts, seed=2)]
    print(f"load average before in-process consent_ingest_batch: {_common.load_average()}")
    started = time.perf_counter()
    outcomes = []
    for start in range(0, batch, 1000):
        outcomes += services.consent_ingest_batch(items=items[start : start + 1000], api_client=client)
    took = time.perf_counter() - started
    failed = sum(not isinstance(o, services.RecordResult) for o in outcomes)
    print(
        f"in-process consent_ingest_batch (1,000 per call): {batch} events in {took:.2f}s = "
        f"{batch / took:.0f} events/s ({failed} failed)"
    )
    if profile:
        items = [to_domain(b) for b in make_events(1000, prefix="inproc-profile", contacts=contacts, seed=3)]
        queries = 0

        def count(execute, sql, params, many, context):
            nonlocal queries
            queries += 1
            return execute(sql, params, many, context)

        profiler = cProfile.Profile()
        with connection.execute_wrapper(count):
            profiler.enable()
            services.consent_ingest_batch(items=items, api_client=client)
            profiler.disable()
        print(f"one consent_ingest_batch of 1,000 events: {queries} queries")
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        print("cProfile of one consent_ingest_batch of 1,000 events (cumulative):")
        print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:6000])
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM compliance_consentevent")
            print(f"events in database: {cursor.fetchone()[0]}")


# --- the load generator (a separate process) ---------------------------------------------


def drive(url: str, key: str, payload_file: str, threads: int) -> None:
    import httpx

    bodies = json.loads(Path(payload_file).read_text())
    payloads = [json.dumps(b).encode() for b in bodies]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    lock = threading.Lock()
    next_index = iter(range(len(payloads)))
    latencies: list[float] = []
    statuses: dict[str, int] = {}

    def work() -> None:
        with httpx.Client(headers=headers, timeout=120) as client:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                t = time.perf_counter()
                response = client.post(url, content=payloads[index])
                elapsed = time.perf_counter() - t
                if response.status_code == 200 and "created" in response.text[:40]:
                    body = response.json()
                    counts = {f"item {k}": body[k] for k in ("created", "replayed", "failed")}
                else:
                    counts = {f"HTTP {response.status_code}": 1}
                    if response.status_code in (200, 201):
                        counts["recorded"] = 1
                if "item created" in counts:
                    counts["recorded"] = counts["item created"] + counts["item replayed"]
                with lock:
                    latencies.append(elapsed)
                    for name, n in counts.items():
                        statuses[name] = statuses.get(name, 0) + n

    pool = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - started
    latencies.sort()
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "wall_s": wall,
                "p50_ms": 1000 * statistics.median(latencies),
                "p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))],
                "statuses": statuses,
            }
        )
    )


def http_phase(key: str, workers: int, single: int, batches: int, contacts: int, threads: int) -> None:
    port = 8700 + workers
    env = _common.bench_env(DB, **EXTRA_ENV)
    gunicorn = [
        str(Path(_common.PYTHON).parent / "gunicorn"),
        "config.wsgi",
        "-w",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
    ]
    print(
        f"server: DATABASE_URL={env['DATABASE_URL']} DEBUG=false "
        + " ".join(f"{name}={value}" for name, value in EXTRA_ENV.items())
        + " "
        + " ".join(gunicorn[1:])
    )
    server = subprocess.Popen(gunicorn, cwd=_common.ROOT, env=env)
    try:
        import httpx

        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/consent-events", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        phases = [
            (
                "single",
                "/api/v1/consent-events",
                make_events(single, prefix=f"http{workers}-single", contacts=contacts, seed=10 + workers),
                single,
                threads,
            ),
        ]
        batch_bodies = [
            {
                "events": make_events(
                    1000, prefix=f"http{workers}-batch{n}", contacts=contacts, seed=100 * workers + n
                )
            }
            for n in range(batches)
        ]
        phases.append(
            ("batch", "/api/v1/consent-events/batch", batch_bodies, batches * 1000, max(2, min(threads, 3)))
        )
        for name, path, bodies, events, n_threads in phases:
            payload = _common.WORK_DIR / f"ingest-{name}.json"
            payload.write_text(json.dumps(bodies))
            cmd = [
                _common.PYTHON,
                __file__,
                "--drive",
                f"http://127.0.0.1:{port}{path}",
                key,
                str(payload),
                str(n_threads),
            ]
            print(f"load average before HTTP {name}, -w {workers}: {_common.load_average()}", flush=True)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            statuses = result["statuses"]
            recorded = statuses.pop("recorded", 0)
            rate = recorded / result["wall_s"]
            print(
                f"HTTP {name}: gunicorn -w {workers}, {n_threads} client threads: {events} events sent in "
                f"{result['requests']} requests, {recorded} recorded in {result['wall_s']:.2f}s = "
                f"{rate:.0f} events/s; latency p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms; "
                f"{statuses}",
                flush=True,
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def gc_share(contacts: int, batches: int = 4) -> None:
    """The garbage collector's time in in-process batches of 1,000, one as they come, the next with
    everything alive frozen (gc.freeze(), as config/wsgi.py does once the project is loaded)."""
    import gc

    from compliance import services
    from compliance.models import ApiClient

    client = ApiClient.objects.get(name="bench-mobile-app")
    spent = {"s": 0.0, "n": 0, "since": 0.0}

    def clock(phase: str, info: dict) -> None:
        if phase == "start":
            spent["since"] = time.perf_counter()
        else:
            spent["s"] += time.perf_counter() - spent["since"]
            spent["n"] += 1

    gc.callbacks.append(clock)
    try:
        # Alternating, each batch with people of its own (the database grows as they go).
        for n in range(2 * batches):
            frozen = n % 2 == 1
            if frozen:
                gc.collect()
                gc.freeze()
            else:
                gc.unfreeze()
            items = [
                to_domain(b) for b in make_events(1000, prefix=f"gc-{n}", contacts=contacts, seed=10 + n)
            ]
            spent.update(s=0.0, n=0)
            started = time.perf_counter()
            services.consent_ingest_batch(items=items, api_client=client)
            took = time.perf_counter() - started
            print(
                f"batch of 1,000{' (frozen: ' + str(gc.get_freeze_count()) + ' objects)' if frozen else ''}: "
                f"{took * 1000:.0f} ms, of which collecting {spent['s'] * 1000:.0f} ms in {spent['n']} collections",
                flush=True,
            )
    finally:
        gc.callbacks.remove(clock)
        gc.unfreeze()


def main() -> None:
    global DB
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--drive", nargs=4, metavar=("URL", "KEY", "PAYLOADS", "THREADS"), help=argparse.SUPPRESS
    )
    parser.add_argument("--contacts", type=int, default=20000)
    parser.add_argument("--inproc-single", type=int, default=2000)
    parser.add_argument("--inproc-batch", type=int, default=5000)
    parser.add_argument("--http-single", type=int, default=3000)
    parser.add_argument("--http-batches", type=int, default=12, help="batches of 1,000 events")
    parser.add_argument("--threads", type=int, default=8, help="client threads for single requests")
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--skip-inproc", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument(
        "--gc", action="store_true", help="time the collector in batches, then with what loading made frozen"
    )
    parser.add_argument(
        "--database", default="bench_ingest", help="a bench_* database, dropped and recreated"
    )
    args = parser.parse_args()
    if args.drive:
        url, key, payloads, threads = args.drive
        drive(url, key, payloads, int(threads))
        return
    DB = args.database
    print("machine:")
    _common.print_machine()
    key = setup_database()
    if not args.skip_inproc:
        in_process(args.inproc_single, args.inproc_batch, args.contacts, args.profile)
    if args.gc:
        gc_share(args.contacts)
    for workers in [] if args.skip_http else args.workers:
        http_phase(key, workers, args.http_single, args.http_batches, args.contacts, args.threads)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT contact_id) FROM compliance_consentevent")
        events, contacts = cursor.fetchone()
    print(f"database now holds {events} events for {contacts} contacts")


if __name__ == "__main__":
    os.chdir(_common.ROOT)
    main()
