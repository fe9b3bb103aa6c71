"""Shared by the bench scripts: a throwaway PostgreSQL database and a description of the machine.

The scripts create their own databases (`bench_*`) and drop them before a rebuild:
ledger rows are insert-only (the triggers refuse UPDATE, DELETE and TRUNCATE).
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PG = "postgres://postgres@127.0.0.1:5432"
FORBIDDEN = {"test", "test_test", "lead", "test_lead"}
WORK_DIR = ROOT / "var" / "bench"


def database_url(name: str) -> str:
    return f"{PG}/{name}"


def psql(sql: str, database: str = "postgres") -> str:
    out = subprocess.run(
        ["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", database_url(database), "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def recreate_database(name: str) -> None:
    """Drop and create `name`, then migrate it. Refuses the databases other people test in."""
    if name in FORBIDDEN or not name.startswith("bench"):
        raise SystemExit(f"refusing to recreate database {name!r}: bench databases are named bench*")
    psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{name}"')
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=bench_env(name),
        check=True,
    )


def bench_env(database: str, **extra: str) -> dict[str, str]:
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(database),
        "DEBUG": "false",
        # The settings refuse to start without one (DEBUG off); a bench's data is throwaway.
        "SECRET_KEY": os.environ.get("SECRET_KEY")
        or "bench-only-secret-key-for-throwaway-databases-0123456789",
        "CONSENT_DESK_VAR_DIR": str(WORK_DIR),
        "LEDGER_SEAL_LOG": str(WORK_DIR / f"{database}-seals.log"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.update(extra)
    return env


def django_setup(database: str, **extra: str) -> None:
    os.environ.update(bench_env(database, **extra))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str],
    *,
    port: int,
    workers: int,
    ready_path: str = "/",
    timeout_s: int = 30,
    threads: int = 1,
) -> Iterator[str]:
    """Serve the app under `gunicorn config.wsgi -w workers` (and `--threads threads`, gunicorn's
    gthread worker, when more than one) on 127.0.0.1:port; yields its base URL once it answers."""
    import httpx

    command = [
        str(Path(PYTHON).parent / "gunicorn"),
        "config.wsgi",
        "-w",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        str(timeout_s),
        "--log-level",
        "warning",
        *(["--threads", str(threads)] if threads > 1 else []),
    ]
    shown = " ".join(f"{k}={env[k]}" for k in ("DATABASE_URL", "DEBUG", "CACHE_URL") if k in env)
    print(f"server: {shown} {' '.join(command[1:])}", flush=True)
    (WORK_DIR / "static").mkdir(parents=True, exist_ok=True)  # STATIC_ROOT, or WhiteNoise warns
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                httpx.get(base + ready_path, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants, as /proc lists them (forked workers included)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return pids


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg gives them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> dict[str, str]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as exc:
            return f"unavailable ({exc})"

    free = run("free", "-h").splitlines()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    return {
        "nproc": run("nproc"),
        "cpu": cpu,
        "memory": free[1] if len(free) > 1 else "unknown",
        "load average (before)": Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__(),
        "postgresql": psql("SHOW server_version"),
        "python": platform.python_version(),
    }


def print_machine() -> None:
    for key, value in machine().items():
        print(f"  {key}: {value}")
