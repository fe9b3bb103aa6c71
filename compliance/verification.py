"""Check the ledger against its own hashes, its seals, its current states and the seal log.

One pass over the events in id order. Each event must follow its chain's
previous event (version + 1, previous hash) and hash to what it stores; each
seal must chain to the previous seal and cover exactly the events in its range;
each chain's head must be what the current-state row says; each seal copied out
of the database must still be in it. Each contact's identity events must chain the
same way (per contact), and the newest must hold what the contact row holds.

On PostgreSQL, a large ledger verified outside any transaction is checked by
worker processes, each taking the chains of the contacts whose id falls in its
share (contact_id modulo the number of workers), all reading the one snapshot
that this process exports; the seals' digests are computed by the database in
that snapshot meanwhile. The verdict is the one the single pass would give: the
first broken point in id order wins.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import connection, transaction

from compliance import chain
from compliance.identity_verification import Broken as _Broken
from compliance.identity_verification import verify_identity as _verify_identity
from compliance.models import ConsentEvent, ConsentState, Seal
from compliance.personal_verification import (
    EventPersonalRows,
    ShareCommitments,
    event_personal_sql,
    judge_event_rows,
    share_secrets,
    verify_identity_personal,
)
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
                _verify_identity(counters, chunk_size)
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
                raise _Broken(_version_gap(event_id, key, version, head_version))
            if prev_hash != head_hash:
                raise _Broken(_unchained(event_id))
            try:
                content = event_values(values)
            except ValueError:
                raise _Broken(_altered(event_id)) from None
            if event_hash(prev_hash, content) != stored_hash:
                raise _Broken(_altered(event_id))
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


def _version_gap(event_id: int, key: tuple[int, int], version: int, head_version: int) -> str:
    return (
        f"event {event_id} (contact {key[0]}, purpose {key[1]}) has version {version} after version "
        f"{head_version}: an event is missing or was moved"
    )


def _unchained(event_id: int) -> str:
    return f"event {event_id} does not chain to the event before it in its chain"


def _altered(event_id: int) -> str:
    return f"event {event_id} was altered (its hash does not match its content)"


def _missing_states(count: int) -> str:
    return f"{count} chains have events but no current state"


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
        raise _Broken(_missing_states(len(heads) - seen))


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


def _verify_in_parallel(counters: dict[str, int], chunk_size: int, workers: int) -> None:
    """The single pass's checks and verdict, with the chains split across worker processes.

    Runs inside the caller's REPEATABLE READ transaction, whose snapshot the
    workers import, so all of them see exactly the same ledger.
    """
    seals = list(Seal.objects.order_by("sequence"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_export_snapshot()")
        (snapshot,) = cursor.fetchone()
    context = multiprocessing.get_context("fork")
    pipes, processes = [], []
    for remainder in range(workers):
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(
            target=_chain_worker, args=(snapshot, workers, remainder, chunk_size, sender), daemon=True
        )
        process.start()
        sender.close()
        pipes.append(receiver)
        processes.append(process)
    try:
        # Meanwhile, each seal's share of the events: what the single pass would have
        # counted and digested when it closed the seal; and the identity chains.
        coverage = _seal_coverage(seals)
        # (Counted apart: a verdict that breaks before them counts none, as the single pass.)
        identity_counters = {"identity_events": 0}
        identity_problem: _Broken | None = None
        try:
            _verify_identity(identity_counters, chunk_size)
            verify_identity_personal(chunk_size)
        except _Broken as broken:
            identity_problem = broken
        results = []
        for remainder, receiver in enumerate(pipes):
            try:
                result = receiver.recv()
            except EOFError:
                raise RuntimeError(f"verify_ledger worker {remainder} died without an answer") from None
            if "error" in result:
                raise RuntimeError(f"verify_ledger worker {remainder} failed: {result['error']}")
            results.append(result)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()

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
        raise _Broken(_missing_states(chains - seen))
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
    table = ConsentEvent._meta.db_table
    rows_sql = ", ".join(["(%s::bigint, %s::bigint, %s::int)"] * len(bounds))
    params = [value for index, (_sequence, low, high) in enumerate(bounds) for value in (low, high, index)]
    with connection.cursor() as cursor:
        # Sorting a seal's hashes for the digest needs memory, not temporary files.
        cursor.execute("SET LOCAL work_mem = '512MB'")
        # Seal by seal (LATERAL): a range of the primary key each, its rows already in id order,
        # rather than all of them joined, then sorted by seal and again by id.
        query = (
            "SELECT b.position, s.covered, s.first_id, s.digest"  # noqa: S608 - placeholders and _meta names
            f" FROM (VALUES {rows_sql}) AS b(low, high, position) CROSS JOIN LATERAL"
            " (SELECT count(e.id) AS covered, min(e.id) AS first_id,"
            " sha256(convert_to(coalesce(string_agg(e.hash, '' ORDER BY e.id), ''), 'UTF8')) AS digest"
            f" FROM {table} e WHERE e.id > b.low AND e.id <= b.high) AS s"
            " ORDER BY b.position"
        )
        cursor.execute(query, params)
        found = cursor.fetchall()
        cursor.execute("RESET work_mem")
    return [
        (high, covered, first_id, bytes(digest).hex())
        for (_sequence, _low, high), (_position, covered, first_id, digest) in zip(bounds, found, strict=True)
    ]


def _events_up_to(event_id: int, *, inclusive: bool) -> int:
    with connection.cursor() as cursor:
        operator = "<=" if inclusive else "<"
        cursor.execute(
            f"SELECT count(*) FROM {ConsentEvent._meta.db_table} WHERE id {operator} %s",  # noqa: S608
            [event_id],
        )
        (count,) = cursor.fetchone()
    return int(count)


def _chain_worker(snapshot: str, modulus: int, remainder: int, chunk_size: int, answer: Any) -> None:
    """In a forked process: check the chains of the contacts with contact_id % modulus == remainder."""
    # Short-lived and cycle-free: collecting would only walk the growing map of chain heads.
    gc.disable()
    try:
        result = _check_chain_share(snapshot, modulus, remainder, chunk_size)
    except BaseException as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    answer.send(result)
    answer.close()


def _check_chain_share(snapshot: str, modulus: int, remainder: int, chunk_size: int) -> dict[str, Any]:
    from psycopg import IsolationLevel, sql

    # A connection of our own, configured as Django configures its own (the
    # inherited one belongs to the parent and is never touched here). Its rows come
    # in binary, where timestamps are loaded by psycopg in the session's time zone,
    # set here to Django's, so isoformat() gives what the single pass gets.
    raw = connection.Database.connect(**connection.get_connection_params())  # type: ignore[attr-defined]
    try:
        raw.execute(connection.ops.set_time_zone_sql(), [connection.timezone_name])
        # Compiling the hash's expression (JIT) costs more CPU than it saves on a share of a
        # million-event ledger (measured: 0.4 s of a worker's 3.8 s in PostgreSQL, 1M events).
        raw.execute("SET jit = off")
        raw.commit()
        raw.isolation_level = IsolationLevel.REPEATABLE_READ
        raw.read_only = True
        raw.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        return _check_chain_rows(raw, modulus, remainder, chunk_size)
    finally:
        raw.close()


def _check_chain_rows(raw: Any, modulus: int, remainder: int, chunk_size: int) -> dict[str, Any]:
    # PostgreSQL hashes each row as it reads it (chain.event_hash_sql), in C, on the
    # snapshot's own values: a row whose hash it confirms needs nothing more here. A row it
    # does not confirm (tampered, or evidence it writes differently) is judged by
    # chain.event_hash, so "altered" is only ever said by the reference.
    in_db = chain.event_hash_sql() if connection.timezone_name == "UTC" else None
    table = ConsentEvent._meta.db_table
    # Keyed by one int (see _PURPOSE_BITS), not a tuple of two. At a million events these heads,
    # with the state rows fetched whole and mapped again, took about 170 MiB in each of two
    # workers; the state rows are now streamed past the heads (_check_state_rows).
    heads: dict[int, tuple[int, str]] = {}
    get_head = heads.get
    bits = _PURPOSE_BITS
    genesis = (0, chain.GENESIS_HASH)
    checked = 0
    problem: tuple[int, str] | None = None
    unconfirmed: list[int] = []  # ids, in id order, that chain.event_hash has yet to judge
    # The personal data kept apart, in the same pass: a side row whose HMAC the fast path does not
    # confirm is judged by personal.commitment (personal_verification.judge_event_rows).
    commitments = ShareCommitments(share_secrets(raw, modulus, remainder))
    matches = commitments.matches
    undecided: list[int] = []
    personal_join, personal_columns = event_personal_sql("e")
    with raw.cursor(name=f"verify_ledger_{remainder}", binary=True) as cursor:
        confirmed = f"({in_db}) = e.hash" if in_db else "false"
        # The planner takes the share (contact_id % n = r) for a few thousand rows, and so would
        # look each side row up by its index, once per event; both in id order, a merge join reads
        # them side by side for less (measured: 0.2 s of CPU in each of two workers, 1M events).
        raw.execute("SET LOCAL enable_nestloop = off")
        cursor.execute(
            f"SELECT e.id, e.hash, e.prev_hash, e.contact_id, e.purpose_id, e.version, {confirmed}, "  # noqa: S608
            f"{personal_columns} FROM {table} e {personal_join} WHERE e.contact_id %% %s = %s ORDER BY e.id",
            [modulus, remainder],
        )
        raw.execute("RESET enable_nestloop")
        while problem is None:
            rows = cursor.fetchmany(chunk_size)
            if not rows:
                break
            for (
                event_id,
                stored_hash,
                prev_hash,
                contact_id,
                purpose_id,
                version,
                ok,
                committed,
                text,
            ) in rows:
                if committed is not None and not matches(contact_id, text, committed):
                    undecided.append(event_id)
                key = contact_id << bits | purpose_id
                head_version, head_hash = get_head(key, genesis)
                if version != head_version + 1:
                    problem = (
                        event_id,
                        _version_gap(event_id, (contact_id, purpose_id), version, head_version),
                    )
                    break
                if prev_hash != head_hash:
                    problem = (event_id, _unchained(event_id))
                    break
                if not ok:
                    unconfirmed.append(event_id)
                heads[key] = (version, stored_hash)
            checked += len(rows) if problem is None else 0
            if len(unconfirmed) >= chunk_size:
                problem = _judge_events(raw, unconfirmed)
                unconfirmed = []
    if unconfirmed:
        # All before the chain problem found, if any: an altered one among them comes first.
        problem = _judge_events(raw, unconfirmed) or problem
    # The single pass checks an event's chain and hash before its personal data: a tie goes to
    # the chain.
    personal_problem = judge_event_rows(raw, undecided) if undecided else None
    if personal_problem is not None and (problem is None or personal_problem[0] < problem[0]):
        problem = personal_problem
    if problem is not None:
        checked = -1  # the parent counts the events before the failure itself
    result: dict[str, Any] = {
        "events": checked,
        "chains": len(heads),
        "event_problem": problem,
        "states_seen": 0,
        "state_problem": None,
    }
    if problem is None:
        result["states_seen"], result["state_problem"] = _check_state_rows(
            raw, heads, modulus, remainder, chunk_size
        )
    return result


# A chain's key in the workers' map of heads: contact_id << 31 | purpose_id (purpose ids are int4).
_PURPOSE_BITS = 31


def _check_state_rows(
    raw: Any, heads: dict[int, tuple[int, str]], modulus: int, remainder: int, chunk_size: int
) -> tuple[int, str | None]:
    """The share's state rows, streamed (never all held at once, nor copied into a second map),
    each against its chain's head: how many were seen, and the first that differs, with the
    single pass's message for it."""
    state_table = ConsentState._meta.db_table
    seen = 0
    with raw.cursor(name=f"verify_ledger_states_{remainder}", binary=True) as cursor:
        cursor.execute(
            f"SELECT contact_id, purpose_id, version, head_hash FROM {state_table} "  # noqa: S608
            "WHERE version > 0 AND contact_id %% %s = %s",
            [modulus, remainder],
        )
        for rows in iter(lambda: cursor.fetchmany(chunk_size), []):
            for contact_id, purpose_id, version, head_hash in rows:
                seen += 1
                head = heads.get(contact_id << _PURPOSE_BITS | purpose_id)
                if head is None:
                    return seen, f"contact {contact_id}, purpose {purpose_id}: all {version} events are gone"
                if head != (version, head_hash):
                    return seen, (
                        f"contact {contact_id}, purpose {purpose_id}: the chain ends at version {head[0]} "
                        f"but version {version} was recorded: its newest events were deleted or altered"
                    )
    return seen, None


def _judge_events(raw: Any, ids: list[int]) -> tuple[int, str] | None:
    """chain.event_hash over the events `ids` (in id order, each already found to follow its
    chain): the first one whose stored hash it does not give, if any."""
    names = ("id", "hash", "prev_hash", *chain.EVENT_HASHED_COLUMNS)
    # The values the single pass gets from Django: the two columns Django reads as text
    # asked for as their text output, jsonb turned into Python by the field itself.
    as_text = {"ip_address": "inet_out({})::text", "evidence": "{}::text"}
    columns = ", ".join(
        as_text.get(name, "{}").format(ConsentEvent._meta.get_field(name).column)  # type: ignore[union-attr]
        for name in names
    )
    evidence_at = chain.EVENT_HASHED_COLUMNS.index("evidence")
    from_db: Any = ConsentEvent._meta.get_field("evidence").from_db_value
    # Named, as binary results need a server-side cursor (Django's connections make client-side ones).
    with raw.cursor(name="verify_ledger_judge", binary=True) as cursor:
        cursor.execute(
            f"SELECT {columns} FROM {ConsentEvent._meta.db_table} WHERE id = ANY(%s) ORDER BY id",  # noqa: S608
            [ids],
        )
        for row in cursor:
            values = list(row[3:])
            values[evidence_at] = from_db(values[evidence_at], None, connection)
            try:
                content = chain.event_values(tuple(values))
            except ValueError:
                return (row[0], _altered(row[0]))
            if chain.event_hash(row[2], content) != row[1]:
                return (row[0], _altered(row[0]))
    return None
