"""Benchmark: masking an erased person's address and number in the Zoho call log.

    .venv/bin/python bench/calls_mask.py [--calls 1800000] [--runs 5] [--skip-build]

Builds `bench_calls_mask`: N Zoho call rows (a month of the pages bench's sync: 1,800,000), one in
20 with an address in its path (a Campaigns list action names the address) and one in 50 with a
number in its error. Then times `sync.masking.calls_mask` for one person's email address and phone
number, as an erasure's on-commit receiver calls it, and `erased_calls_mask` (the daily sweep) with
no erased person, each `--runs` times (their median and best, and the load average before).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import django_setup, load_average, print_machine, psql, recreate_database

DATABASE = "bench_calls_mask"


def build(calls: int) -> None:
    recreate_database(DATABASE)
    psql(
        "INSERT INTO sync_zohocall (service, operation, method, path, started_at, finished_at,"
        " duration_ms, http_status, zoho_code, records, credits, outcome, error, permanent)"
        " SELECT CASE WHEN n % 20 = 0 THEN 'campaigns' ELSE 'crm' END, 'update', 'POST',"
        " CASE WHEN n % 20 = 0 THEN '/api/v1.1/json/listunsubscribe/person' || n || '%40example.com'"
        " ELSE '/crm/v8/Contacts' END,"
        " now() - (n || ' seconds')::interval, now() - (n || ' seconds')::interval, 120, 200, '', 100, 1,"
        " 'ok', CASE WHEN n % 50 = 0 THEN 'INVALID_DATA: +4915' || lpad(n::text, 8, '0') ELSE '' END, NULL"
        f" FROM generate_series(1, {calls}) AS n",
        DATABASE,
    )
    psql("VACUUM ANALYZE sync_zohocall", DATABASE)


def timed(label: str, runs: int, work) -> None:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        load = load_average()
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
        print(f"  {label}: {times[-1]:.2f} s (load before {load})", flush=True)
    print(
        f"{label}: median {statistics.median(times):.2f} s, best {min(times):.2f} s over {runs} runs",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1_800_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-build", action="store_true")
    args = parser.parse_args()
    print_machine()
    if not args.skip_build:
        started = time.perf_counter()
        build(args.calls)
        print(f"built {args.calls} calls in {time.perf_counter() - started:.1f} s", flush=True)
    django_setup(DATABASE)
    from sync.masking import calls_mask, erased_calls_mask

    # Someone in the log: their address in a path, their number in an error.
    values = ["person40@example.com", "+491500000050"]
    timed("calls_mask, one person's address and number", args.runs, lambda: calls_mask(values=values))
    timed("erased_calls_mask (daily sweep), nobody erased", args.runs, erased_calls_mask)


if __name__ == "__main__":
    main()
