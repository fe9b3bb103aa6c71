"""Check the ledger against its own hashes, its seals, its current states and the seal log.

One pass over the events in id order. Each event must follow its chain's
previous event (version + 1, previous hash) and hash to what it stores; each
seal must chain to the previous seal and cover exactly the events in its range;
each chain's head must be what the current-state row says; each seal copied out
of the database must still be in it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.db import connection, transaction

from compliance import chain
from compliance.models import ConsentEvent, ConsentState, Seal


@dataclass(frozen=True)
class Verdict:
    ok: bool
    events_checked: int
    seals_checked: int
    chains_checked: int
    problem: str = ""

    def summary(self) -> str:
        counts = f"{self.events_checked} events, {self.chains_checked} chains, {self.seals_checked} seals"
        if self.ok:
            return f"ledger intact: {counts} verified"
        return f"LEDGER BROKEN: {self.problem} (checked {counts})"


class _Broken(Exception):
    pass


def _event_rows(chunk_size: int) -> Iterator[tuple]:
    columns = ("id", "hash", "prev_hash", *chain.EVENT_HASHED_FIELDS)
    return ConsentEvent.objects.order_by("id").values_list(*columns).iterator(chunk_size=chunk_size)


def _read_seal_log(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            raise _Broken(f"seal log {path} line {number} is unreadable")
        entries.append((int(parts[0]), parts[1]))
    return entries


def ledger_verify(*, seal_log: Path | None = None, chunk_size: int = 20000) -> Verdict:
    """Verify the whole ledger; the verdict names the first broken point."""
    counters = {"events": 0, "seals": 0, "chains": 0}
    try:
        # One snapshot for the whole pass on PostgreSQL (REPEATABLE READ), so
        # writers carrying on meanwhile do not look like tampering.
        outermost = not connection.in_atomic_block
        with transaction.atomic():
            if connection.vendor == "postgresql" and outermost:
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            heads = _verify_events_and_seals(counters, chunk_size)
            _verify_states(heads)
            counters["chains"] = len(heads)
            if seal_log is not None:
                _verify_seal_log(seal_log)
    except _Broken as broken:
        return Verdict(False, counters["events"], counters["seals"], counters["chains"], str(broken))
    return Verdict(True, counters["events"], counters["seals"], counters["chains"])


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
        expected_sequence = counters["seals"] + 1
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
        if digest.hexdigest() != seal.events_digest:
            raise _Broken(f"seal {seal.sequence}: the events it covers were altered or swapped")
        counters["seals"] += 1
        previous_seal_hash = seal.hash
        digest = hashlib.sha256()
        covered = 0
        first_in_seal = None

    heads: dict[tuple[int, int], tuple[int, str]] = {}
    event_hash = chain.event_hash
    genesis = (0, chain.GENESIS_HASH)
    for row in _event_rows(chunk_size):
        event_id, stored_hash, prev_hash = row[0], row[1], row[2]
        values = row[3:]
        while seal_index < len(seals) and event_id > seals[seal_index].last_event_id:
            close_seal(seals[seal_index])
            seal_index += 1
        key = (values[0], values[1])
        head_version, head_hash = heads.get(key, genesis)
        version = values[2]
        if version != head_version + 1:
            raise _Broken(
                f"event {event_id} (contact {key[0]}, purpose {key[1]}) has version {version} after version "
                f"{head_version}: an event is missing or was moved"
            )
        if prev_hash != head_hash:
            raise _Broken(f"event {event_id} does not chain to the event before it in its chain")
        if event_hash(prev_hash, values) != stored_hash:
            raise _Broken(f"event {event_id} was altered (its hash does not match its content)")
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
    return heads


def _verify_states(heads: dict[tuple[int, int], tuple[int, str]]) -> None:
    """The current-state rows remember each chain's head: a deleted tail shows here."""
    rows = ConsentState.objects.filter(version__gt=0).values_list(
        "contact_id", "purpose_id", "version", "head_hash"
    )
    seen = 0
    for contact_id, purpose_id, version, head_hash in rows.iterator(chunk_size=20000):
        seen += 1
        head = heads.get((contact_id, purpose_id))
        if head is None:
            raise _Broken(f"contact {contact_id}, purpose {purpose_id}: all {version} events are gone")
        if head != (version, head_hash):
            raise _Broken(
                f"contact {contact_id}, purpose {purpose_id}: the chain ends at version {head[0]} but "
                f"version {version} was recorded: its newest events were deleted or altered"
            )
    if seen != len(heads):
        raise _Broken(f"{len(heads) - seen} chains have events but no current state")


def _verify_seal_log(path: Path) -> None:
    stored = dict(Seal.objects.values_list("sequence", "hash"))
    for sequence, logged_hash in _read_seal_log(path):
        if sequence not in stored:
            raise _Broken(f"seal {sequence} is in the seal log {path} but no longer in the database")
        if stored[sequence] != logged_hash:
            raise _Broken(f"seal {sequence} differs from its copy in the seal log {path}")
