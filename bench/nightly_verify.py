"""The nightly ledger check as beat runs it: the `workbench.verify_ledger` task in a real Celery
prefork worker, over the ledger `bench/verify_ledger.py` built, against the same check in one
process (how such a worker ran it before its processes could fork the check's workers).

    .venv/bin/python bench/verify_ledger.py --runs 1    # build bench_verify first (once)
    .venv/bin/python bench/nightly_verify.py            # 3 runs of each

For each run of the task: the time from sending it to its `VerifyRun` row finished (the worker's
own start of the task included), and the row's own time (started_at to finished_at). The serial
check is `ledger_verify(workers=1)` in this process. Broker: Redis database 13 (emptied first).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

DB = "bench_verify"
BROKER = "redis://127.0.0.1:6379/13"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("machine:")
    _common.print_machine()
    if _common.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DB}'") != "1":
        raise SystemExit(f"no database {DB}: build it first with bench/verify_ledger.py")
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    env = _common.bench_env(DB, CELERY_BROKER_URL=BROKER, LOG_LEVEL="WARNING")
    _common.django_setup(DB, CELERY_BROKER_URL=BROKER)
    from celery import Celery

    from compliance.models import VerifyRun
    from compliance.verification import ledger_verify

    command = [
        _common.PYTHON, "-m", "celery", "-A", "config", "worker", "--pool", "prefork", "--concurrency", "1",
        "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    print("worker: " + " ".join(command[1:]))
    log = (_common.WORK_DIR / "nightly-verify-worker.log").open("wb")
    worker = subprocess.Popen(command, cwd=_common.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    sender = Celery("bench", broker=BROKER, set_as_current=False)
    try:
        deadline = time.monotonic() + 60
        while not sender.control.ping(timeout=1.0):
            if time.monotonic() > deadline:
                raise SystemExit("the worker did not come up (see var/bench/nightly-verify-worker.log)")
        in_worker, own = [], []
        for run in range(1, args.runs + 1):
            load = _common.load_average()
            latest = VerifyRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
            started = time.perf_counter()
            sender.send_task("workbench.verify_ledger")
            while True:
                row = VerifyRun.objects.filter(pk__gt=latest, finished_at__isnull=False).first()
                if row is not None:
                    break
                time.sleep(0.05)
            wall = time.perf_counter() - started
            assert row.started_at is not None and row.finished_at is not None
            took = (row.finished_at - row.started_at).total_seconds()
            in_worker.append(wall)
            own.append(took)
            print(
                f"task run {run}: {wall:.2f} s from send to verdict, {took:.2f} s the check itself; "
                f"ok={row.ok}, {row.events_checked} events; load before {load}"
            )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    serial = []
    for run in range(1, args.runs + 1):
        load = _common.load_average()
        started = time.perf_counter()
        verdict = ledger_verify(workers=1)
        serial.append(time.perf_counter() - started)
        print(f"serial run {run}: {serial[-1]:.2f} s; {verdict.summary()}; load before {load}")
    print(
        f"median: the task {statistics.median(in_worker):.2f} s from send to verdict "
        f"({statistics.median(own):.2f} s the check); one process {statistics.median(serial):.2f} s"
    )


if __name__ == "__main__":
    main()
