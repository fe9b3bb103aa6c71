"""The shared locks (sync/zoho/locks.py) on a real Redis and on real files: one holder at a time
across processes and threads, released only by their holder, gone when the holder is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import BaseCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from sync.zoho.locks import FALLBACK_DIR, FileLock, RedisLock, cache_lock

# A second process: takes the lock, says "held", waits for a line on stdin, releases, says "released".
HOLDER = """
import sys
import django
django.setup()
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache
from sync.zoho.locks import cache_lock

kind, location, name = sys.argv[1:4]
cache = RedisCache(location, {}) if kind == "redis" else FileBasedCache(location, {})
lock = cache_lock(cache, name, expire_s=60)
assert lock.acquire(blocking=False), "the lock was busy"
print("held", flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def redis_cache(redis_url: str) -> Iterator[RedisCache]:
    cache = RedisCache(redis_url, {})
    yield cache
    cache.close()


def _location(cache: BaseCache) -> str:
    if isinstance(cache, RedisCache):
        return str(cache._servers[0])  # type: ignore[attr-defined]
    return str(cache._dir)  # type: ignore[attr-defined]


@pytest.fixture(params=["redis", "file"])
def shared_cache(request: pytest.FixtureRequest, tmp_path: Path) -> BaseCache:
    """A cache that several processes share: Redis, or the file cache of one machine."""
    if request.param == "redis":
        return request.getfixturevalue("redis_cache")  # type: ignore[no-any-return]
    return FileBasedCache(str(tmp_path / "cache"), {})


def lock_name() -> str:
    return f"locks-test:{uuid.uuid4().hex[:8]}"


class Holder:
    """Another process holding the lock until told to let go."""

    def __init__(self, cache: BaseCache, name: str) -> None:
        kind = "redis" if isinstance(cache, RedisCache) else "file"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, _location(cache), name],
            cwd=settings.BASE_DIR,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.expect("held")

    def expect(self, word: str) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == word, self.proc.stderr.read() if self.proc.stderr and not line else line

    def tell(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def test_it_is_a_redis_lock_on_redis_and_a_file_lock_on_the_file_cache(
    redis_cache: RedisCache, tmp_path: Path
) -> None:
    on_redis = cache_lock(redis_cache, "locks-test:kind", expire_s=5)
    on_files = cache_lock(FileBasedCache(str(tmp_path / "cache"), {}), "zoho:token-lock:ab", expire_s=5)
    in_memory = cache_lock(LocMemCache("locks-test", {}), "zoho:token-lock:ab", expire_s=5)

    assert isinstance(on_redis, RedisLock)
    assert isinstance(on_files, FileLock) and on_files.path == str(
        tmp_path / "cache" / "zoho-token-lock-ab.lock"
    )
    assert isinstance(in_memory, FileLock) and in_memory.path.startswith(FALLBACK_DIR)


def test_a_lock_held_by_another_process_is_busy_until_that_process_lets_go(shared_cache: BaseCache) -> None:
    name = lock_name()
    holder = Holder(shared_cache, name)
    try:
        lock = cache_lock(shared_cache, name, expire_s=60)
        assert lock.acquire(blocking=False) is False

        holder.tell()
        holder.expect("released")

        assert lock.acquire(blocking=False) is True
        lock.release()
    finally:
        holder.close()


def test_a_file_lock_ends_with_its_holders_process(tmp_path: Path) -> None:
    cache = FileBasedCache(str(tmp_path / "cache"), {})
    name = lock_name()
    holder = Holder(cache, name)
    lock = cache_lock(cache, name, expire_s=60)
    assert lock.acquire(blocking=False) is False

    holder.proc.send_signal(signal.SIGKILL)  # no release: the kernel drops the flock
    holder.close()

    assert lock.acquire(blocking=False) is True
    lock.release()


def test_a_redis_lock_expires_when_its_holder_never_lets_go(redis_cache: RedisCache) -> None:
    name = lock_name()
    stuck = cache_lock(redis_cache, name, expire_s=0.3)
    assert stuck.acquire(blocking=False)
    key = redis_cache.make_and_validate_key(name)
    client = redis_cache._cache.get_client(key)  # type: ignore[attr-defined]
    assert 0 < client.pttl(key) <= 300

    waiting = cache_lock(redis_cache, name, expire_s=60)
    assert waiting.acquire(blocking=False) is False
    # Waits for the stuck holder's key to expire on the server.
    assert waiting.acquire(timeout_s=10) is True

    stuck.release()  # too late: the lock is someone else's now, and stays theirs
    assert cache_lock(redis_cache, name, expire_s=60).acquire(blocking=False) is False
    waiting.release()
    assert cache_lock(redis_cache, name, expire_s=60).acquire(blocking=False) is True
    client.delete(key)


def test_only_the_holder_releases_a_lock(shared_cache: BaseCache) -> None:
    name = lock_name()
    holder = cache_lock(shared_cache, name, expire_s=60)
    assert holder.acquire(blocking=False)

    cache_lock(shared_cache, name, expire_s=60).release()  # another process's object
    failures: list[BaseException] = []

    def release_elsewhere() -> None:
        try:
            holder.release()  # the same object, from another thread
        except BaseException as exc:  # reported below
            failures.append(exc)

    other_thread = threading.Thread(target=release_elsewhere)
    other_thread.start()
    other_thread.join()

    assert failures == []
    assert cache_lock(shared_cache, name, expire_s=60).acquire(blocking=False) is False
    holder.release()
    again = cache_lock(shared_cache, name, expire_s=60)
    assert again.acquire(blocking=False) is True
    again.release()


def _memory_cache(_: Path) -> BaseCache:
    return LocMemCache(f"locks-test-{uuid.uuid4().hex}", {})


def _file_cache(tmp_path: Path) -> BaseCache:
    return FileBasedCache(str(tmp_path / "cache"), {})


@pytest.mark.parametrize("kind", ["redis", "file", "memory"])
def test_threads_take_turns_so_no_update_is_lost(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    makers: dict[str, Callable[[Path], BaseCache]] = {"file": _file_cache, "memory": _memory_cache}
    cache: BaseCache = request.getfixturevalue("redis_cache") if kind == "redis" else makers[kind](tmp_path)
    name = lock_name()
    counter = f"{name}:counter"
    cache.set(counter, 0)
    inside: list[int] = []
    overlaps: list[int] = []
    threads_n, rounds = 4, 25
    start = threading.Barrier(threads_n)

    def work() -> None:
        lock = cache_lock(cache, name, expire_s=60)
        start.wait()
        for _ in range(rounds):
            with lock:
                inside.append(1)
                if len(inside) > 1:
                    overlaps.append(len(inside))
                value: Any = cache.get(counter)
                os.sched_yield()  # let another thread in, if the lock would
                cache.set(counter, value + 1)  # a read-modify-write the lock must protect
                inside.pop()

    workers = [threading.Thread(target=work) for _ in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert overlaps == []
    assert cache.get(counter) == threads_n * rounds
    cache.delete(counter)
