"""ONE token mint when many workers ask at once: threads, and real separate processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from sync.zoho import NullCallLog, ZohoClient
from tests.sync.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_REFRESH_TOKEN, Sim, make_client

WORKERS = 12


def run_together(clients: list[ZohoClient]) -> list[Any]:
    """Every client makes one CRM call, all released at the same moment."""
    barrier = threading.Barrier(len(clients))
    results: list[Any] = [None] * len(clients)

    def work(index: int, client: ZohoClient) -> None:
        barrier.wait()
        try:
            results[index] = client.crm.current_user().id
        except Exception as exc:  # reported below
            results[index] = exc

    threads = [threading.Thread(target=work, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_threads_of_one_client_mint_once(sim: Sim, zoho_nolog: ZohoClient) -> None:
    results = run_together([zoho_nolog] * WORKERS)

    assert all(isinstance(r, str) for r in results), results
    assert sim.mints() == 1


def _locmem(_: Path) -> Any:
    return LocMemCache(f"zoho-threads-{uuid.uuid4().hex}", {})


def _file(tmp_path: Path) -> Any:
    return FileBasedCache(str(tmp_path / "cache"), {})


CACHES: dict[str, Callable[[Path], Any]] = {"locmem": _locmem, "file": _file}


@pytest.mark.parametrize("kind", list(CACHES))
def test_separate_clients_sharing_a_cache_mint_once(sim: Sim, tmp_path: Path, kind: str) -> None:
    cache = CACHES[kind](tmp_path)
    prefix = f"zoho-threads-{uuid.uuid4().hex[:8]}"
    clients = [
        make_client(sim, cache=cache, call_log=NullCallLog(), cache_prefix=prefix) for _ in range(WORKERS)
    ]

    results = run_together(clients)

    assert all(isinstance(r, str) for r in results), results
    assert sim.mints() == 1


def test_separate_clients_sharing_redis_mint_once(sim: Sim, redis_url: str) -> None:
    cache = RedisCache(redis_url, {})
    prefix = f"zoho-threads-{uuid.uuid4().hex[:8]}"
    clients = [
        make_client(sim, cache=cache, call_log=NullCallLog(), cache_prefix=prefix) for _ in range(WORKERS)
    ]

    try:
        results = run_together(clients)
    finally:
        cache.delete_many([clients[0].tokens.key, clients[0].tokens.lock_key])

    assert all(isinstance(r, str) for r in results), results
    assert sim.mints() == 1


def _worker_env(sim: Sim, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZOHO_", "CACHE_URL"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ZOHO_ACCOUNTS_URL": sim.url,
            "ZOHO_CAMPAIGNS_URL": sim.url,
            "ZOHO_CLIENT_ID": SIM_CLIENT_ID,
            "ZOHO_CLIENT_SECRET": SIM_CLIENT_SECRET,
            "ZOHO_REFRESH_TOKEN": SIM_REFRESH_TOKEN,
            "ZOHO_TIMEOUT_S": "10",
            **extra,
        }
    )
    return env


def run_processes(sim: Sim, tmp_path: Path, env_extra: dict[str, str], count: int = 6) -> list[str]:
    prefix = f"zoho-procs-{uuid.uuid4().hex[:8]}"
    go_file = tmp_path / "go"
    env = _worker_env(sim, env_extra)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.sync.token_worker", prefix, str(go_file)],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:  # every worker has Django set up before any starts
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
        go_file.touch()
        outputs = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outputs.append(out.strip())
        return outputs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def test_separate_processes_sharing_redis_mint_once(sim: Sim, tmp_path: Path, redis_url: str) -> None:
    outputs = run_processes(sim, tmp_path, {"CACHE_URL": redis_url})

    assert all(o.startswith("user ") for o in outputs), outputs
    assert sim.mints() == 1


def test_separate_processes_sharing_the_file_cache_mint_once(sim: Sim, tmp_path: Path) -> None:
    outputs = run_processes(sim, tmp_path, {"CONSENT_DESK_VAR_DIR": str(tmp_path / "var")})

    assert all(o.startswith("user ") for o in outputs), outputs
    assert sim.mints() == 1
