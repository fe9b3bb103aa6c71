"""What keeping Campaigns' per-method limits costs a call: `CampaignsLimits.before_call` and
`after_call` (one method, one 5-minute window) on the shared caches the product uses.

    .venv/bin/python bench/campaigns_limits.py                 # Redis at CACHE_URL (or db 15), the file cache
    .venv/bin/python bench/campaigns_limits.py --calls 5000

Each call counts in its bucket, sums the window's buckets (one MGET on Redis) and clears the
method's pause level: what the transport adds before and after every Campaigns call. The limit is
set above the calls made, so none is refused.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    _common.django_setup("postgres")  # no query is made; the settings want a database

    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.redis import RedisCache

    from sync.zoho.campaigns_limits import CampaignsLimits, Window

    _common.print_machine()
    redis_url = os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/15")
    with tempfile.TemporaryDirectory() as directory:
        caches = {"redis": RedisCache(redis_url, {}), "file cache": FileBasedCache(directory, {})}
        for name, cache in caches.items():
            limits = CampaignsLimits(
                cache,
                f"bench-{uuid.uuid4().hex[:8]}",
                limits={"listunsubscribe": (Window(args.calls * 2, 300, 15),)},
            )
            times = []
            for _ in range(args.calls):
                start = time.perf_counter()
                limits.before_call("listunsubscribe")
                limits.after_call("listunsubscribe", refused=False)
                times.append(time.perf_counter() - start)
            times.sort()
            print(
                f"{name}: {args.calls} calls, median {statistics.median(times) * 1e3:.3f} ms, "
                f"p95 {times[int(len(times) * 0.95)] * 1e3:.3f} ms a call",
                flush=True,
            )


if __name__ == "__main__":
    main()
