"""Check the ledger against its own hashes, its seals, its current states and the seal log.

One pass over the events in id order. Each event must follow its chain's
previous event (version + 1, previous hash) and hash to what it stores; each
seal must chain to the previous seal and cover exactly the events in its range;
each chain's head must be what the current-state row says; each seal copied out
of the database must still be in it. Each contact's identity events must chain the
same way (per contact), and the newest must hold what the contact row holds.

On PostgreSQL, a large ledger verified outside any transaction is checked by
worker processes, all reading the one snapshot that this process exports; the
seals' digests are computed by the database in that snapshot meanwhile. First
the database checks every event, commitment, link and state row itself, each
worker a range of event ids (`chain_fingerprint`); only where it cannot vouch
for all of them do workers read the rows, each taking the chains of the contacts
whose id falls in its share (contact_id modulo the number of workers), and name
the first broken point (`chain_workers`). The verdict is the one the single pass
would give: the first broken point in id order wins.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import multiprocessing
import os
import signal
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from compliance import chain, chain_fingerprint
from compliance.chain_workers import altered, chain_worker, missing_states, unchained, version_gap
from compliance.identity_verification import Broken as _Broken
from compliance.identity_verification import verify_identity as _verify_identity
from compliance.models import ConsentEvent, ConsentState, Seal
from compliance.personal_verification import EventPersonalRows, verify_identity_personal
from compliance.seal_log import seal_log_verify


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events_checked: int
    seals_checked: int
    chains_checked: int
    problem: str = ""
    identity_events_checked: int = 0

    def summary(self) -> str:
        counts = (
            f"{self.events_checked} events, {self.chains_checked} chains, {self.seals_checked} seals, "
            f"{self.identity_events_checked} identity events"
        )
        if self.ok:
            return f"ledger intact: {counts} verified"
        return f"LEDGER BROKEN: {self.problem} (checked {counts})"


def _event_rows(chunk_size: int) -> Iterator[tuple[Any, ...]]:
    columns = ("id", "hash", "prev_hash", *chain.EVENT_HASHED_COLUMNS)
    return ConsentEvent.objects.order_by("id").values_list(*columns).iterator(chunk_size=chunk_size)


# Below this many events one process is quicker than starting workers.
PARALLEL_MIN_EVENTS = 100_000
MAX_WORKERS = 4


def ledger_verify(
    *, seal_log: Path | None = None, chunk_size: int = 20000, workers: int | None = None
) -> Verdict:
    """Verify the whole ledger; the verdict names the first broken point.

    `workers`: processes checking the chains (PostgreSQL outside a transaction
    only, where other connections can share this one's snapshot); by default
    one per CPU core, up to MAX_WORKERS, once the ledger holds
    PARALLEL_MIN_EVENTS events.
    """
    counters = {"events": 0, "seals": 0, "chains": 0, "identity_events": 0}
    try:
        # One snapshot for the whole pass on PostgreSQL (REPEATABLE READ), so
        # writers carrying on meanwhile do not look like tampering.
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            shareable = connection.vendor == "postgresql" and outermost
            if shareable:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            if workers is None:
                workers = _default_workers() if shareable else 1
            if shareable and workers > 1:
                _verify_in_parallel(counters, chunk_size, workers)
            else:
                heads = _verify_events_and_seals(counters, chunk_size)
                _verify_states(heads)
                counters["chains"] = len(heads)
                if not _verify_identity(counters, chunk_size):
                    verify_identity_personal(chunk_size)
            if seal_log is not None:
                seal_log_verify(seal_log)
    except _Broken as broken:
        return Verdict(
            False,
            counters["events"],
            counters["seals"],
            counters["chains"],
            str(broken),
            counters["identity_events"],
        )
    return Verdict(
        True, counters["events"], counters["seals"], counters["chains"], "", counters["identity_events"]
    )


def _verify_events_and_seals(
    counters: dict[str, int], chunk_size: int
) -> dict[tuple[int, int], tuple[int, str]]:
    seals = list(Seal.objects.order_by("sequence"))
    seal_index = 0
    previous_seal_hash = chain.GENESIS_HASH
    digest = hashlib.sha256()
    covered = 0
    first_in_seal: int | None = None

    def close_seal(seal: Seal) -> None:
        nonlocal previous_seal_hash, digest, covered, first_in_seal
        _check_seal(
            seal, counters["seals"] + 1, previous_seal_hash, covered, first_in_seal, digest.hexdigest()
        )
        counters["seals"] += 1
        previous_seal_hash = seal.hash
        digest = hashlib.sha256()
        covered = 0
        first_in_seal = None

    heads: dict[tuple[int, int], tuple[int, str]] = {}
    event_hash = chain.event_hash
    event_values = chain.event_values
    genesis = (0, chain.GENESIS_HASH)
    personal_rows = EventPersonalRows(chunk_size)
    try:
        for row in _event_rows(chunk_size):
            event_id, stored_hash, prev_hash = row[0], row[1], row[2]
            values = row[3:]  # EVENT_HASHED_COLUMNS: contact_id, purpose_id and version lead
            while seal_index < len(seals) and event_id > seals[seal_index].last_event_id:
                close_seal(seals[seal_index])
                seal_index += 1
            key = (values[0], values[1])
            head_version, head_hash = heads.get(key, genesis)
            version = values[2]
            if version != head_version + 1:
                raise _Broken(version_gap(event_id, key, version, head_version))
            if prev_hash != head_hash:
                raise _Broken(unchained(event_id))
            try:
                content = event_values(values)
            except ValueError:
                raise _Broken(altered(event_id)) from None
            if event_hash(prev_hash, content) != stored_hash:
                raise _Broken(altered(event_id))
            personal_problem = personal_rows.problem(event_id, values)
            if personal_problem:
                raise _Broken(personal_problem)
            heads[key] = (version, stored_hash)
            counters["events"] += 1
            if seal_index < len(seals):
                if first_in_seal is None:
                    first_in_seal = event_id
                covered += 1
                digest.update(stored_hash.encode())
        while seal_index < len(seals):
            close_seal(seals[seal_index])
            seal_index += 1
    finally:
        # Closed inside the transaction that opened it (as _verify_states' cursor).
        personal_rows.close()
    return heads


def _check_seal(
    seal: Seal,
    expected_sequence: int,
    previous_seal_hash: str,
    covered: int,
    first_in_seal: int | None,
    digest: str,
) -> None:
    """One seal against the one before it and the events it covers (counted and digested by the caller)."""
    if seal.sequence != expected_sequence:
        raise _Broken(f"seal {expected_sequence} is missing (found seal {seal.sequence} in its place)")
    if seal.prev_hash != previous_seal_hash:
        raise _Broken(f"seal {seal.sequence} does not chain to seal {seal.sequence - 1}")
    recomputed = chain.seal_hash(
        sequence=seal.sequence,
        created_at=seal.created_at,
        first_event_id=seal.first_event_id,
        last_event_id=seal.last_event_id,
        event_count=seal.event_count,
        events_digest=seal.events_digest,
        prev_hash=seal.prev_hash,
    )
    if recomputed != seal.hash:
        raise _Broken(f"seal {seal.sequence} was altered (its hash does not match its content)")
    if covered != seal.event_count or first_in_seal != seal.first_event_id:
        raise _Broken(
            f"seal {seal.sequence} covers {seal.event_count} events from id {seal.first_event_id}, "
            f"but the ledger now holds {covered} from id {first_in_seal}: events were deleted or inserted"
        )
    if digest != seal.events_digest:
        raise _Broken(f"seal {seal.sequence}: the events it covers were altered or swapped")


def _verify_states(heads: dict[tuple[int, int], tuple[int, str]]) -> None:
    """The current-state rows remember each chain's head: a deleted tail shows here."""
    rows = ConsentState.objects.filter(version__gt=0).values_list(
        "contact_id", "purpose_id", "version", "head_hash"
    )
    states: Any = rows.iterator(chunk_size=20000)  # a generator: closed below
    try:
        seen = _check_states(heads, states)
    finally:
        # Close the server-side cursor now, inside the transaction that opened it,
        # not whenever a traceback that holds it is let go.
        states.close()
    if seen != len(heads):
        raise _Broken(missing_states(len(heads) - seen))


def _check_states(heads: dict[tuple[int, int], tuple[int, str]], rows: Iterable[tuple[Any, ...]]) -> int:
    """Each state row against its chain's head; returns how many rows were checked."""
    seen = 0
    for contact_id, purpose_id, version, head_hash in rows:
        seen += 1
        head = heads.get((contact_id, purpose_id))
        if head is None:
            raise _Broken(f"contact {contact_id}, purpose {purpose_id}: all {version} events are gone")
        if head != (version, head_hash):
            raise _Broken(
                f"contact {contact_id}, purpose {purpose_id}: the chain ends at version {head[0]} but "
                f"version {version} was recorded: its newest events were deleted or altered"
            )
    return seen


# --- Parallel verification (PostgreSQL) ------------------------------------------------------


def _default_workers() -> int:
    workers = min(MAX_WORKERS, len(os.sched_getaffinity(0)))
    if workers < 2:
        return 1
    with connection.cursor() as cursor:
        # The highest id is an upper bound on the count, read from the primary key alone.
        cursor.execute(f"SELECT max(id) FROM {ConsentEvent._meta.db_table}")  # noqa: S608
        (highest,) = cursor.fetchone()
    return workers if (highest or 0) >= PARALLEL_MIN_EVENTS else 1


class _WorkerGroup:
    """Forked processes, one per (target, args), each answering once through a pipe.

    Forked with `os.fork`, not `multiprocessing.Process`: a `multiprocessing` child first runs
    every hook registered with `multiprocessing.util.register_after_fork`, and kombu's (the
    Celery broker's connection pool, in a worker or any process that sent a task) closes the
    inherited broker connections, which on Redis can block for good reading a socket the parent
    owns. A worker touches nothing it inherits (it opens its own database connection) and leaves
    with `os._exit`, so nothing of the parent's is closed or flushed twice."""

    def __init__(self, work: Iterable[tuple[Any, tuple[Any, ...]]]) -> None:
        self.pipes: list[Any] = []
        self.pids: list[int] = []
        for target, args in work:
            receiver, sender = multiprocessing.Pipe(duplex=False)
            pid = os.fork()
            if pid == 0:  # the worker
                code = 1
                try:
                    receiver.close()
                    for earlier in self.pipes:
                        earlier.close()
                    target(*args, sender)
                    code = 0
                finally:
                    os._exit(code)
            sender.close()
            self.pipes.append(receiver)
            self.pids.append(pid)

    def answers(self) -> list[dict[str, Any]]:
        """Each one's answer, in order; {"error": ...} for one that died without answering."""
        answers = []
        for receiver in self.pipes:
            try:
                answers.append(receiver.recv())
            except EOFError:
                answers.append({"error": "died without an answer"})
        return answers

    def join(self, timeout_s: float = 5.0) -> None:
        """Wait for every worker to end (at most `timeout_s` in all), then kill those left."""
        deadline = time.monotonic() + timeout_s
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):  # reaped already
                while os.waitpid(pid, os.WNOHANG) == (0, 0):
                    if time.monotonic() > deadline:
                        os.kill(pid, signal.SIGKILL)
                        os.waitpid(pid, 0)
                        break
                    time.sleep(0.01)
        for receiver in self.pipes:
            receiver.close()


def _id_ranges(parts: int) -> list[tuple[int, int]]:
    """The events' ids cut into `parts` ranges (low, high], about as wide as each other."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT min(id), max(id) FROM {ConsentEvent._meta.db_table}")  # noqa: S608
        lowest, highest = cursor.fetchone()
    if lowest is None:
        return [(0, 0)] * parts
    start, width = lowest - 1, highest - lowest + 1
    bounds = [start + width * part // parts for part in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def _verify_in_parallel(counters: dict[str, int], chunk_size: int, workers: int) -> None:
    """The single pass's checks and verdict, with the chains split across worker processes.

    Runs inside the caller's REPEATABLE READ transaction, whose snapshot the
    workers import, so all of them see exactly the same ledger.
    """
    seals = list(Seal.objects.order_by("sequence"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cursor.fetchone()
        # This process's own aggregates (the seals' digests, the identity chains) each run once:
        # compiling them (JIT) costs more than it saves, as in the workers (chain_workers).
        cursor.execute("SET LOCAL jit = off")
    # First the database's quick check of every event, chain and state row, in parts by id
    # (compliance/chain_fingerprint.py); the chain workers read the rows only when it cannot vouch.
    quick = _WorkerGroup(
        (chain_fingerprint.fingerprint_worker, (snapshot, id_range, contacts))
        for id_range, contacts in zip(
            _id_ranges(workers), chain_fingerprint.contact_bounds(workers), strict=True
        )
    )
    groups = [quick]
    try:
        # Meanwhile, each seal's share of the events: what the single pass would have
        # counted and digested when it closed the seal; and the identity chains.
        coverage = _seal_coverage(seals)
        # (Counted apart: a verdict that breaks before them counts none, as the single pass.)
        identity_counters = {"identity_events": 0}
        identity_problem: _Broken | None = None
        try:
            if not _verify_identity(identity_counters, chunk_size):
                verify_identity_personal(chunk_size)
        except _Broken as broken:
            identity_problem = broken
        results = chain_fingerprint.vouched(quick.answers())
        if results is None:
            rows = _WorkerGroup(
                (chain_worker, (snapshot, workers, remainder, chunk_size)) for remainder in range(workers)
            )
            groups.append(rows)
            results = rows.answers()
            for remainder, result in enumerate(results):
                if "error" in result:
                    raise RuntimeError(f"verify_ledger worker {remainder} failed: {result['error']}")
    finally:
        for group in groups:
            group.join()

    # The first broken point in the single pass's order. An event fails at its id;
    # a seal is closed once every event up to its upper bound has been checked.
    event_problem = min((r["event_problem"] for r in results if r["event_problem"]), default=None)
    previous_seal_hash = chain.GENESIS_HASH
    for index, (seal, (high, covered, first_in_seal, digest)) in enumerate(zip(seals, coverage, strict=True)):
        if event_problem is not None and event_problem[0] <= high:
            break
        try:
            _check_seal(seal, index + 1, previous_seal_hash, covered, first_in_seal, digest)
        except _Broken:
            counters["events"] = _events_up_to(high, inclusive=True)
            counters["seals"] = index
            raise
        previous_seal_hash = seal.hash
    if event_problem is not None:
        event_id, problem = event_problem
        counters["events"] = _events_up_to(event_id, inclusive=False)
        counters["seals"] = sum(1 for high, *_ in coverage if high < event_id)
        raise _Broken(problem)
    counters["events"] = sum(r["events"] for r in results)
    counters["seals"] = len(seals)
    for result in results:
        if result["state_problem"]:
            raise _Broken(result["state_problem"])
    chains = sum(r["chains"] for r in results)
    seen = sum(r["states_seen"] for r in results)
    if seen != chains:
        raise _Broken(missing_states(chains - seen))
    counters["chains"] = chains
    counters["identity_events"] = identity_counters["identity_events"]
    if identity_problem is not None:
        raise identity_problem


def _seal_coverage(seals: list[Seal]) -> list[tuple[int, int, int | None, str]]:
    """Per seal: (upper bound, events covered, first id covered, SHA-256 of their hashes in id order).

    The single pass gives each event to the first seal not yet closed, and closes
    a seal at the first event past its last_event_id, so a seal covers the ids
    above every earlier seal's bound up to the highest bound so far.
    """
    bounds = []
    low = 0
    for seal in seals:
        high = max(low, seal.last_event_id)
        bounds.append((seal.sequence, low, high))
        low = high
    if not bounds:
        return []
    found = _seal_digests(bounds, ordered=False)
    # A digest that differs is taken again with the order asked of the aggregate itself, before
    # it counts as a broken seal.
    again = [
        bound
        for bound, (_covered, _first_id, digest), seal in zip(bounds, found, seals, strict=True)
        if digest != seal.events_digest
    ]
    redone = dict(zip(again, _seal_digests(again, ordered=True), strict=True)) if again else {}
    return [
        (high, *redone.get((sequence, low, high), row))
        for (sequence, low, high), row in zip(bounds, found, strict=True)
    ]


def _seal_digests(bounds: list[tuple[int, int, int]], *, ordered: bool) -> list[tuple[int, int | None, str]]:
    """Per (sequence, low, high): the events with low < id <= high counted, the first id, and
    SHA-256 of their hashes in id order. Unordered, the hashes are aggregated as the primary key's
    range gives them, in id order (what PostgreSQL does, but does not promise); ordered, the
    aggregate sorts them itself (twice the CPU: a sort of rows already in order)."""
    table = ConsentEvent._meta.db_table
    rows_sql = ", ".join(["(%s::bigint, %s::bigint, %s::int)"] * len(bounds))
    params = [value for index, (_sequence, low, high) in enumerate(bounds) for value in (low, high, index)]
    hashes = "string_agg(e.hash, '' ORDER BY e.id)" if ordered else "string_agg(e.hash, '')"
    in_range = f"SELECT e.id, e.hash FROM {table} e WHERE e.id > b.low AND e.id <= b.high"  # noqa: S608
    with connection.cursor() as cursor:
        # Sorting a seal's hashes for the digest needs memory, not temporary files.
        cursor.execute("SET LOCAL work_mem = '512MB'")
        # Seal by seal (LATERAL): a range of the primary key each, its rows already in id order,
        # rather than all of them joined, then sorted by seal and again by id.
        query = (
            "SELECT b.position, s.covered, s.first_id, s.digest"  # noqa: S608 - placeholders and _meta names
            f" FROM (VALUES {rows_sql}) AS b(low, high, position) CROSS JOIN LATERAL"
            " (SELECT count(e.id) AS covered, min(e.id) AS first_id,"
            f" sha256(convert_to(coalesce({hashes}, ''), 'UTF8')) AS digest"
            f" FROM ({in_range} ORDER BY e.id) e) AS s"
            " ORDER BY b.position"
        )
        cursor.execute(query, params)
        found = cursor.fetchall()
        cursor.execute("RESET work_mem")
    return [(covered, first_id, bytes(digest).hex()) for _position, covered, first_id, digest in found]


def _events_up_to(event_id: int, *, inclusive: bool) -> int:
    with connection.cursor() as cursor:
        operator = "<=" if inclusive else "<"
        cursor.execute(
            f"SELECT count(*) FROM {ConsentEvent._meta.db_table} WHERE id {operator} %s",  # noqa: S608
            [event_id],
        )
        (count,) = cursor.fetchone()
    return int(count)
