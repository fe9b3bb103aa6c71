"""`manage.py verify_ledger` over a large ledger on PostgreSQL: wall clock and peak RSS.

    .venv/bin/python bench/verify_ledger.py                      # build 1,000,000 events, time 3 runs
    .venv/bin/python bench/verify_ledger.py --skip-build         # time again on the ledger already built
    .venv/bin/python bench/verify_ledger.py --events 50000 --tamper-check   # parallel == serial verdicts

The ledger is built fast but honestly by `bench/_ledger_build.py`: rows are bulk-copied
with hashes computed by `compliance.chain.event_hash` over exactly the values the
database returns, chains follow the write path's rules (version + 1, previous status,
previous hash), ConsentState holds each chain's head, and `ledger_seal()` seals it in
several steps (the newest events stay unsealed). Events pick their contact uniformly.
Database: bench_verify (dropped and recreated on every build).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common
import _ledger_build

DB = "bench_verify"


def build(events: int, contacts: int, seals: int, seed: int) -> None:
    t0 = time.perf_counter()
    _common.recreate_database(DB)
    seal_log = Path(_common.bench_env(DB)["LEDGER_SEAL_LOG"])
    seal_log.unlink(missing_ok=True)
    _common.django_setup(DB)

    from django.db import connection

    built = _ledger_build.ledger_build(
        _ledger_build.LedgerPlan(events=events, contacts=contacts, seals=seals, seed=seed)
    )
    connection.close()
    _common.psql("VACUUM ANALYZE", DB)
    print(
        f"built {built.events} events, {built.chains} chains, {contacts} contacts, {seals} seals "
        f"in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )


class RssSampler(threading.Thread):
    """Peak RSS of a process and its children, summed, sampled every 20 ms from /proc; and the
    CPU time of the PostgreSQL backends serving the benchmark's database, every 100 ms."""

    def __init__(self, pid: int, database: str) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_total = 0
        self.peak_single = 0
        self.done = threading.Event()
        self.backend_tag = f" {database} ".encode()  # in a backend's title: "postgres: 15/main: user db host"
        self.backend_cpu: dict[int, float] = {}  # pid -> CPU seconds when last seen
        self.ticks = os.sysconf("SC_CLK_TCK")

    def sample_backends(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if self.backend_tag not in (entry / "cmdline").read_bytes():
                    continue
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            self.backend_cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / self.ticks

    def tree(self) -> list[int]:
        return _common.process_tree(self.pid)

    def rss(self, pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def run(self) -> None:
        rounds = 0
        while not self.done.is_set():
            sizes = [self.rss(pid) for pid in self.tree()]
            self.peak_total = max(self.peak_total, sum(sizes))
            self.peak_single = max([self.peak_single, *sizes])
            if rounds % 5 == 0:
                self.sample_backends()
            rounds += 1
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


# The project's own packages, compiled to bytecode before timing as an installation does (pip
# compiles what it installs; a deployment's image compiles the application): where Python may not
# write bytecode (PYTHONDONTWRITEBYTECODE, set on this machine), each start would otherwise compile
# them again, about 0.1 s of verify_ledger's single-threaded start.
PACKAGES = ("compliance", "sync", "config", "reports", "workbench", "zohosim", "manage.py")


def compile_project() -> None:
    command = [_common.PYTHON, "-m", "compileall", "-q", *PACKAGES]
    subprocess.run(command, cwd=_common.ROOT, check=True, stdout=subprocess.DEVNULL)
    print(f"bytecode: {' '.join(command[1:])} (as an installation does; --no-compile leaves it)")


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
        load = _common.load_average()
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=_common.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        sampler = RssSampler(proc.pid, DB)
        sampler.start()
        out, err = proc.communicate()
        wall = time.perf_counter() - started
        sampler.done.set()
        sampler.join()
        children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls.append(wall)
        # CPU time is what other people's load on the machine moves least: the verifier's
        # processes (it and its workers, reaped), and its database backends (sampled, so
        # short of their last 100 ms).
        python_cpu = sum(
            getattr(children_after, f) - getattr(children_before, f) for f in ("ru_utime", "ru_stime")
        )
        print(
            f"run {run}: {wall:.2f}s wall, peak RSS {sampler.peak_total / 2**20:.0f} MiB (process tree summed), "
            f"{sampler.peak_single / 2**20:.0f} MiB (largest process); CPU {python_cpu:.1f}s in the verifier's "
            f"processes + {sum(sampler.backend_cpu.values()):.1f}s in {len(sampler.backend_cpu)} PostgreSQL "
            f"backends; exit {proc.returncode}; load before {load}"
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
    parser = _ledger_build.ledger_arguments(__doc__, database=DB, events=1_000_000, contacts_per=7)
    parser.add_argument(
        "--seals", type=int, default=4, help="seals made while building (the tail stays unsealed)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tamper-check", action="store_true", help="compare serial and parallel verdicts")
    parser.add_argument(
        "--verification-file", help="time verify_ledger with compliance/verification.py taken from this file"
    )
    parser.add_argument(
        "--no-compile", action="store_true", help="time without compiling the project's bytecode first"
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
        if not args.no_compile:
            compile_project()
        time_verify(args.runs, args.verification_file)


if __name__ == "__main__":
    main()
