"""verify_ledger's chain workers (PostgreSQL, a large ledger): each, in a forked process, checks
the chains of its share of the contacts (contact_id modulo the number of workers) on the one
snapshot the parent exported, with their personal data kept apart and their current states, and
answers the first broken point it found (`compliance.verification` merges the answers into the
single pass's verdict). Also the words of a broken chain, which both passes say alike.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from compliance import canonical, chain
from compliance.models import ConsentEvent, ConsentState
from compliance.personal_verification import (
    ShareCommitments,
    event_personal_sql,
    judge_event_rows,
    share_secrets,
)


def version_gap(event_id: int, key: tuple[int, int], version: int, head_version: int) -> str:
    return (
        f"event {event_id} (contact {key[0]}, purpose {key[1]}) has version {version} after version "
        f"{head_version}: an event is missing or was moved"
    )


def unchained(event_id: int) -> str:
    return f"event {event_id} does not chain to the event before it in its chain"


def altered(event_id: int) -> str:
    return f"event {event_id} was altered (its hash does not match its content)"


def missing_states(count: int) -> str:
    return f"{count} chains have events but no current state"


def chain_worker(snapshot: str, modulus: int, remainder: int, chunk_size: int, answer: Any) -> None:
    """In a forked process: check the chains of the contacts with contact_id % modulus == remainder."""
    # Short-lived and cycle-free: collecting would only walk the growing map of chain heads.
    gc.disable()
    in_worker(answer, lambda raw: _check_chain_rows(raw, modulus, remainder, chunk_size), snapshot)


def in_worker(answer: Any, work: Callable[[Any], dict[str, Any]], snapshot: str) -> None:
    """In a forked process: `work` on a connection of its own in the parent's snapshot; its
    answer (or the error) sent back through `answer`."""
    try:
        with snapshot_connection(snapshot) as raw:
            result = work(raw)
    except BaseException as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    answer.send(result)
    answer.close()


@contextmanager
def snapshot_connection(snapshot: str) -> Iterator[Any]:
    """A connection of our own, read-only in the exported `snapshot`, configured as Django
    configures its own (the inherited one belongs to the parent and is never touched here). Its
    rows come in binary, where timestamps are loaded by psycopg in the session's time zone, set
    here to Django's, so isoformat() gives what the single pass gets."""
    from psycopg import IsolationLevel, sql

    raw = connection.Database.connect(**connection.get_connection_params())  # type: ignore[attr-defined]
    try:
        raw.execute(connection.ops.set_time_zone_sql(), [connection.timezone_name])
        raw.execute(canonical.DATESTYLE_SQL)  # hash version 3's instants
        # Compiling the hash's expression (JIT) costs more CPU than it saves on a share of a
        # million-event ledger (measured: 0.4 s of a worker's 3.8 s in PostgreSQL, 1M events);
        # the workers are the parallelism, not PostgreSQL's own.
        raw.execute("SET jit = off")
        raw.execute("SET max_parallel_workers_per_gather = 0")
        raw.commit()
        raw.isolation_level = IsolationLevel.REPEATABLE_READ
        raw.read_only = True
        raw.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        yield raw
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
                hash_version,
            ) in rows:
                if committed is not None and not matches(contact_id, text, committed, hash_version):
                    undecided.append(event_id)
                key = contact_id << bits | purpose_id
                head_version, head_hash = get_head(key, genesis)
                if version != head_version + 1:
                    problem = (
                        event_id,
                        version_gap(event_id, (contact_id, purpose_id), version, head_version),
                    )
                    break
                if prev_hash != head_hash:
                    problem = (event_id, unchained(event_id))
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
                return (row[0], altered(row[0]))
            if chain.event_hash(row[2], content) != row[1]:
                return (row[0], altered(row[0]))
    return None
