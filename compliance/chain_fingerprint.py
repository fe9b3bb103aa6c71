"""verify_ledger's quick check of a large ledger (PostgreSQL): the whole ledger checked inside
the database by worker processes, each running two aggregates over its part, with no row sent
to Python; where the parts together cannot vouch for every row, the chain workers' pass over the
rows (`chain_workers`) finds the first broken point and says what broke.

Each event's hash and its personal data's commitment are recomputed by the database as it reads
the row (`chain.event_hash_sql`; HMAC-SHA256 from two `sha256()` calls, the contact's key padded
once per contact). The links are checked without sorting the chains, so any part of the events
can be checked anywhere. Every event offers a place to its successor at (chain, version + 1, its
hash); every event after the first of its chain points back at (chain, version, previous hash),
and the first holds the genesis hash; every chain's state row points at its head (chain,
version + 1, head hash). When the pointers and the places are the same multiset and no two state
rows share a chain, the chains are whole, gapless and end at their state rows: each event's hash
covers its chain and version, so a place is taken by one pointer at most; the versions rise by
one along the links; so from each first event the links run without a gap to the one state row
of its chain, and every event lies on such a run. The two multisets are compared by the sums of
a keyed 64-bit digest of their members (truncated SHA-256 under a key drawn for this run, which
whoever changed the rows could not know): two different multisets give the same sum with odds
of about 2^-63.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

from django.db import connection

from compliance import chain
from compliance.chain_workers import in_worker
from compliance.hmac_sql import hmac_hex_sql, padded_key_sql
from compliance.link_digest import link_digest_sql
from compliance.models import ConsentEvent, ConsentState, Contact, EventPersonalData
from compliance.personal_verification import side_text_sql


def fingerprint_worker(
    snapshot: str, events: tuple[int, int], states: tuple[int, int], key: bytes, answer: Any
) -> None:
    """In a forked process: fingerprint_part of the events with low < id <= high (`events`) and of
    the state rows with contact_id % modulus == remainder (`states`)."""
    gc.disable()
    in_worker(answer, lambda raw: fingerprint_part(raw, events=events, states=states, key=key), snapshot)


def fingerprint_part(
    raw: Any, *, events: tuple[int, int], states: tuple[int, int], key: bytes
) -> dict[str, Any]:
    """One part's counts and sums; `raw` in the verifier's snapshot, time zone UTC, DateStyle ISO."""
    in_db = chain.event_hash_sql()
    if in_db is None or connection.timezone_name != "UTC":
        return {"unsure": True}
    low, high = events
    modulus, remainder = states
    params = {"key": key, "low": low, "high": high, "modulus": modulus, "remainder": remainder}
    # The contacts' padded keys held in memory for the join (142,857 contacts: 27 MB).
    raw.execute("SET LOCAL work_mem = '64MB'")
    count, unconfirmed, uncommitted, links = raw.execute(_events_sql(in_db), params).fetchone()
    state_rows, distinct_states, heads = raw.execute(_states_sql(), params).fetchone()
    raw.execute("RESET work_mem")
    return {
        "events": count,
        "unsure": bool(unconfirmed or uncommitted) or state_rows != distinct_states,
        "links": int(links),
        "states": state_rows,
        "heads": int(heads),
    }


def vouched(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The parts, as the chain workers' answers, when together they vouch for every event and
    chain; else None (a part that failed or was unsure, links that do not balance)."""
    parts = list(parts)
    if any("error" in part or part["unsure"] for part in parts):
        return None
    if sum(part["links"] + part["heads"] for part in parts) != 0:
        return None
    return [
        {
            "events": part["events"],
            "chains": part["states"],
            "event_problem": None,
            "states_seen": part["states"],
            "state_problem": None,
        }
        for part in parts
    ]


def _events_sql(in_db: str) -> str:
    events = ConsentEvent._meta.db_table
    side = EventPersonalData._meta.db_table
    contacts = Contact._meta.db_table
    hmac = hmac_hex_sql("pad.inner_key", "pad.outer_key", f"convert_to({side_text_sql('e')}, 'UTF8')")
    pointer = link_digest_sql("e.contact_id", "e.purpose_id", "e.version", "e.prev_hash")
    place = link_digest_sql("e.contact_id", "e.purpose_id", "e.version + 1", "e.hash")
    # The keys padded once per contact (OFFSET 0: else PostgreSQL would pad them again for each
    # event), hashed; the side rows of the same range of ids read beside the events, in id order.
    return (
        "SELECT count(*),"  # noqa: S608 - _meta names and fixed SQL only
        f" count(*) FILTER (WHERE ({in_db}) IS DISTINCT FROM e.hash"
        f" OR (e.version = 1 AND e.prev_hash <> '{chain.GENESIS_HASH}')),"
        f" count(*) FILTER (WHERE side.event_id IS NOT NULL AND {hmac} IS DISTINCT FROM e.personal_hash),"
        f" coalesce(sum({pointer}) FILTER (WHERE e.version > 1), 0) - coalesce(sum({place}), 0)"
        f" FROM {events} e LEFT JOIN {side} side ON side.event_id = e.id"
        " AND side.event_id > %(low)s AND side.event_id <= %(high)s"
        f" LEFT JOIN (SELECT c.id, {padded_key_sql('c.secret', '36')} AS inner_key,"
        f" {padded_key_sql('c.secret', '5c')} AS outer_key"
        f" FROM {contacts} c WHERE c.secret IS NOT NULL OFFSET 0) pad ON pad.id = e.contact_id"
        " WHERE e.id > %(low)s AND e.id <= %(high)s"
    )


def _states_sql() -> str:
    states = ConsentState._meta.db_table
    head = link_digest_sql("contact_id", "purpose_id", "version + 1", "head_hash")
    # Two rows for one chain share a key (contact_id << 31 | purpose_id): ids past 2^32 and 2^31
    # could make two chains share one too, which only makes the check unsure.
    return (
        "SELECT count(*), count(DISTINCT contact_id << 31 | purpose_id),"  # noqa: S608 - _meta names only
        f" coalesce(sum({head}), 0)"
        f" FROM {states} WHERE version > 0 AND contact_id %% %(modulus)s = %(remainder)s"
    )
