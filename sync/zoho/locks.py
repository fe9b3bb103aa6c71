"""Locks shared by every process that shares one Django cache.

* **Redis cache** (production, ``CACHE_URL``): redis-py's `redis.lock.Lock` on
  the cache's own server, so one lock holds across machines. Its key expires
  after ``expire_s``: a holder that dies leaves no lock behind. Release is one
  Lua script that deletes the key only while it still holds the holder's token,
  so a holder whose lock expired (and was taken by another) cannot release the
  new holder's lock.
* **Any other cache** (the file cache of the embedded demo, the local-memory
  cache of tests and scripts): `filelock` (``flock``) on a file in the file
  cache's directory, or in the system temporary directory. The kernel drops it
  when its holder's process ends, so it needs no expiry; a file on one machine
  is enough because these caches are not shared beyond one machine.

Threads of one process exclude each other as separate processes do: redis-py
keeps the token per thread, `filelock` keeps a separate descriptor per thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Protocol

import filelock
import redis
import redis.lock
from django.core.cache import BaseCache
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger("sync.zoho.locks")

# Where the lock files of caches that have no directory of their own go.
FALLBACK_DIR = os.path.join(tempfile.gettempdir(), "consent-desk-locks")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class SharedLock(Protocol):
    """A lock one holder at a time, whichever process or thread it is in."""

    def acquire(self, *, blocking: bool = True, timeout_s: float | None = None) -> bool:
        """Take the lock; False when it is busy (``blocking=False``) or ``timeout_s`` passed."""
        ...

    def release(self) -> None:
        """Give the lock back; does nothing when this holder does not hold it."""
        ...

    def __enter__(self) -> SharedLock: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _Context:
    """``with lock:`` waits for the lock and releases it at the end of the block."""

    def acquire(self, *, blocking: bool = True, timeout_s: float | None = None) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SharedLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class RedisLock(_Context):
    """`redis.lock.Lock`: expires ``expire_s`` after it was taken unless released before."""

    def __init__(self, client: redis.Redis, name: str, *, expire_s: float) -> None:
        self.name = name
        self._lock = redis.lock.Lock(client, name, timeout=expire_s, sleep=0.05)

    def acquire(self, *, blocking: bool = True, timeout_s: float | None = None) -> bool:
        return bool(self._lock.acquire(blocking=blocking, blocking_timeout=timeout_s))

    def release(self) -> None:
        # The token is per thread (and unset in a thread that never took the lock).
        if getattr(self._lock.local, "token", None) is None:
            return  # not taken by this holder: nothing to give back
        try:
            self._lock.release()
        except redis.exceptions.LockNotOwnedError:
            # Held too long: it expired and may be someone else's now, which stays untouched.
            logger.warning("lock %s expired before its holder released it", self.name)


class FileLock(_Context):
    """`filelock.FileLock` (``flock``): released by the kernel when its process ends."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._lock = filelock.FileLock(path)

    def acquire(self, *, blocking: bool = True, timeout_s: float | None = None) -> bool:
        try:
            self._lock.acquire(blocking=blocking, timeout=-1 if timeout_s is None else timeout_s)
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        # filelock counts re-entries per thread; a thread that holds nothing releases nothing.
        if self._lock.is_locked:
            self._lock.release()


def lock_directory(cache: BaseCache) -> str:
    """Where `cache_lock` puts the lock files of a cache that is not Redis."""
    if isinstance(cache, FileBasedCache):
        directory: str = cache._dir  # type: ignore[attr-defined]  # FileBasedCache keeps its path here
        return directory
    return FALLBACK_DIR


def cache_lock(cache: BaseCache, name: str, *, expire_s: float) -> SharedLock:
    """A lock named ``name`` shared by every user of ``cache``: see the module docstring.

    ``expire_s``: how long a Redis lock outlives a holder that never releases it
    (a file lock ends with its holder's process instead).
    """
    if isinstance(cache, RedisCache):
        key = cache.make_and_validate_key(name)
        client: redis.Redis = cache._cache.get_client(key, write=True)  # type: ignore[attr-defined]  # the cache's own pool
        return RedisLock(client, key, expire_s=expire_s)
    return FileLock(os.path.join(lock_directory(cache), _UNSAFE.sub("-", name) + ".lock"))


class SharedSemaphore:
    """At most ``limit`` holders at once across every process sharing ``cache``: ``limit``
    `cache_lock` slots, of which a holder takes any free one. On Redis each slot expires
    after ``expire_s`` (a holder that died frees it); a file slot ends with its process.
    Threads and processes alike; a thread never takes a second slot it already holds
    (file locks are re-entrant within a thread)."""

    def __init__(self, cache: BaseCache, name: str, *, limit: int, expire_s: float) -> None:
        if limit < 1:
            raise ValueError("a semaphore needs at least one slot")
        self.name = name
        self.limit = limit
        self._slots = [cache_lock(cache, f"{name}:slot:{i}", expire_s=expire_s) for i in range(limit)]
        self._local = threading.local()

    def _held(self) -> set[int]:
        held: set[int] | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = set()
        return held

    def acquire(self, *, timeout_s: float, poll_s: float = 0.02) -> SharedSlot | None:
        """A slot, or None when none came free within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        start = (os.getpid() + threading.get_ident()) % self.limit  # spread first tries across slots
        held = self._held()
        while True:
            for i in range(self.limit):
                index = (start + i) % self.limit
                if index not in held and self._slots[index].acquire(blocking=False):
                    held.add(index)
                    return SharedSlot(self, index)
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll_s)

    def _release(self, index: int) -> None:
        self._held().discard(index)
        self._slots[index].release()


class SharedSlot:
    """One slot of a `SharedSemaphore`, held by the thread that took it until `release`."""

    def __init__(self, semaphore: SharedSemaphore, index: int) -> None:
        self.semaphore = semaphore
        self.index = index
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.semaphore._release(self.index)


class SharedCounters:
    """Counters and escalating pauses in a shared cache, for every process that shares it. Redis
    and the local-memory cache add and increment atomically themselves; the file cache of the
    embedded demo does not, so there every change takes a `cache_lock` named ``name``."""

    def __init__(self, cache: BaseCache, name: str) -> None:
        self.cache = cache
        # (A file lock never expires: the kernel drops it when its holder's process ends.)
        self._lock = cache_lock(cache, name, expire_s=60.0) if isinstance(cache, FileBasedCache) else None

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        if self._lock is None:
            yield
            return
        with self._lock:
            yield

    def incr(self, key: str, *, ttl: int) -> int:
        """Add one to ``key`` (made with ``ttl`` seconds to live when it is not there); its new value."""
        with self.atomic():
            if self.cache.add(key, 1, timeout=ttl):
                return 1
            try:
                return int(self.cache.incr(key))
            except ValueError:  # expired between add and incr
                self.cache.set(key, 1, timeout=ttl)
                return 1

    def decr(self, key: str) -> None:
        """Take one back from ``key``; nothing when it has expired meanwhile."""
        with contextlib.suppress(ValueError), self.atomic():
            self.cache.decr(key)

    def pause(self, *, level_key: str, until_key: str, first_s: float, max_s: float, now: float) -> float:
        """Start or lengthen a pause that doubles each time it is started again (``first_s``, twice
        that, … up to ``max_s``) until ``level_key`` is deleted: ``until_key`` holds its end, never
        moved earlier. Returns its length in seconds."""
        level = self.incr(level_key, ttl=int(max_s * 4) + 1)
        length = float(min(max_s, first_s * 2 ** (level - 1)))
        until = now + length
        with self.atomic():
            current = self.cache.get(until_key)
            if current is None or float(current) < until:
                self.cache.set(until_key, until, timeout=int(length) + 2)
        return length
