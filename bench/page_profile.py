"""One page of the workbench rendered in-process (Django's test client, no HTTP) on a built bench
database: its time per request (min and median), and optionally where the time goes (cProfile).
For finding what a page spends, beside `bench/pages.py`'s figures under gunicorn.

    .venv/bin/python bench/page_profile.py /trends/                                   # the officer, 20 requests
    .venv/bin/python bench/page_profile.py /sync/health/?window=30d --user ada-admin --profile tottime

The opt-out clock's figures are refreshed first (beat's `optout_clock_run`), as `bench/pages.py`
does while it measures, so its page reads them instead of computing its own.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import _common
from pages import CACHE_URL, DB, OFFICER, in_process_client


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path")
    parser.add_argument("--user", default=OFFICER)
    parser.add_argument("--database", default=DB)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument(
        "--profile", metavar="SORT", help="cProfile the requests again, sorted so (tottime, cumulative)"
    )
    args = parser.parse_args()
    _common.django_setup(args.database, CACHE_URL=CACHE_URL)

    from sync.tasks.optout_clock import optout_clock_run

    optout_clock_run()
    client = in_process_client(args.user)
    response = client.get(args.path)  # warm
    assert response.status_code == 200, (
        f"{args.path}: HTTP {response.status_code} {response.get('Location', '')}"
    )
    took = []
    for _ in range(args.requests):
        started = time.perf_counter()
        client.get(args.path)
        took.append((time.perf_counter() - started) * 1000)
    print(f"{args.path} as {args.user}: min {min(took):.1f} ms, median {statistics.median(took):.1f} ms "
          f"over {args.requests} requests in-process")  # fmt: skip
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.requests):
            client.get(args.path)
        profile.disable()
        pstats.Stats(profile).sort_stats(args.profile).print_stats(35)


if __name__ == "__main__":
    main()
