"""verify_ledger's quick check of a large ledger (PostgreSQL): the whole ledger checked inside
the database by worker processes, each running two aggregates, with no row sent to Python;
where the parts together cannot vouch for every row, the chain workers' pass over the rows
(`chain_workers`) finds the first broken point and says what broke.

Each worker checks a range of event ids and a range of contacts:
- **The events' contents** (ids in its range, in id order): each event's hash and its personal
  data's commitment are recomputed by the database as it reads the row (`chain.event_hash_sql`,
  `personal_verification.side_commitment_sql`).
- **The chains** (contacts in its range, in chain order: the chain-version index, which holds
  each event's hashes, read without the rows and without sorting): along each chain, the first
  event has version 1 and the genesis hash before it, and each next one the version after and
  the hash of the one before (`lag()`), so versions are 1 to n, once each; the last one of each
  chain is the one its state row names (version and hash), and no other state row is there.
  This is exact, not a digest: it needs no key and leaves no odds.
Both ranges cover every event once, so both sides count the same events; a state row that two
events' versions could not both match, or that doubles an event in the join, shows as a count
that differs.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable
from typing import Any

from django.db import connection

from compliance import chain
from compliance.chain_workers import in_worker
from compliance.models import ConsentEvent, ConsentState, Contact, EventPersonalData
from compliance.personal_verification import side_commitment_sql

# A range of ids (low, high]; None: no bound on that side.
Bounds = tuple[int | None, int | None]


def fingerprint_worker(snapshot: str, events: tuple[int, int], contacts: Bounds, answer: Any) -> None:
    """In a forked process: fingerprint_part of the events with low < id <= high (`events`) and
    of the chains of the contacts with low < contact_id <= high (`contacts`)."""
    gc.disable()
    in_worker(answer, lambda raw: fingerprint_part(raw, events=events, contacts=contacts), snapshot)


def fingerprint_part(raw: Any, *, events: tuple[int, int], contacts: Bounds) -> dict[str, Any]:
    """One part's counts; `raw` in the verifier's snapshot, time zone UTC, DateStyle ISO."""
    in_db = chain.event_hash_sql()
    if in_db is None or connection.timezone_name != "UTC":
        return {"unsure": True}
    low, high = events
    # The contacts' secrets held in memory for the join (142,857 contacts: 14 MB).
    raw.execute("SET LOCAL work_mem = '64MB'")
    count, unconfirmed, uncommitted = raw.execute(_events_sql(in_db), {"low": low, "high": high}).fetchone()
    chain_rows, unchained, chains, heads, states = raw.execute(
        _chains_sql(contacts), {"low": contacts[0], "high": contacts[1]}
    ).fetchone()
    raw.execute("RESET work_mem")
    return {
        "events": count,
        "unsure": bool(unconfirmed or uncommitted or unchained) or not (heads == chains == states),
        "chain_rows": chain_rows,
        "chains": chains,
    }


def vouched(parts: Iterable[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The parts, as the chain workers' answers, when together they vouch for every event and
    chain; else None (a part that failed or was unsure, chains that hold other events than the
    ids' ranges)."""
    parts = list(parts)
    if any("error" in part or part["unsure"] for part in parts):
        return None
    if sum(part["events"] for part in parts) != sum(part["chain_rows"] for part in parts):
        return None
    return [
        {
            "events": part["events"],
            "chains": part["chains"],
            "event_problem": None,
            "states_seen": part["chains"],
            "state_problem": None,
        }
        for part in parts
    ]


def contact_bounds(parts: int) -> list[Bounds]:
    """The contacts cut into `parts` ranges by id, about as wide as each other; the first and the
    last open (so every event and every state row falls in one)."""
    with connection.cursor() as cursor:
        # Both ends of the chain-version index.
        cursor.execute(
            f"SELECT min(contact_id), max(contact_id) FROM {ConsentEvent._meta.db_table}"  # noqa: S608
        )
        lowest, highest = cursor.fetchone()
    if lowest is None or parts == 1:
        # One range for all, the others empty.
        return [(None, None), *[(0, 0)] * (parts - 1)]
    start, width = lowest - 1, highest - lowest + 1
    cuts = [start + width * part // parts for part in range(1, parts)]
    return list(zip([None, *cuts], [*cuts, None], strict=True))


def _events_sql(in_db: str) -> str:
    events = ConsentEvent._meta.db_table
    side = EventPersonalData._meta.db_table
    contacts = Contact._meta.db_table
    committed = side_commitment_sql("e", "c.secret")
    # The contacts' secrets hashed in memory; the side rows of the same range of ids read beside
    # the events, in id order.
    return (
        "SELECT count(*),"  # noqa: S608 - _meta names and fixed SQL only
        f" count(*) FILTER (WHERE ({in_db}) IS DISTINCT FROM e.hash),"
        f" count(*) FILTER (WHERE side.event_id IS NOT NULL AND {committed} IS DISTINCT FROM e.personal_hash)"
        f" FROM {events} e LEFT JOIN {side} side ON side.event_id = e.id"
        " AND side.event_id > %(low)s AND side.event_id <= %(high)s"
        f" LEFT JOIN {contacts} c ON c.id = e.contact_id AND c.secret IS NOT NULL"
        " WHERE e.id > %(low)s AND e.id <= %(high)s"
    )


def _in_range(column: str, contacts: Bounds) -> str:
    low, high = contacts
    conditions = []
    if low is not None:
        conditions.append(f"{column} > %(low)s")
    if high is not None:
        conditions.append(f"{column} <= %(high)s")
    return " AND ".join(conditions) or "true"


def _chains_sql(contacts: Bounds) -> str:
    """(rows, rows that do not follow the one before in their chain, chains, chains whose last
    event is their state row's head, state rows) for the contacts in range. The events along
    their chains (lag, lead) joined to the state rows by (chain, version): a state row meets the
    event of the version it records, if any."""
    events = ConsentEvent._meta.db_table
    states = ConsentState._meta.db_table
    return (
        "SELECT count(x.version),"  # noqa: S608 - _meta names and fixed SQL only
        f" count(*) FILTER (WHERE {chain.CHAIN_BROKEN_SQL}),"
        " count(*) FILTER (WHERE x.version = 1),"
        " count(*) FILTER (WHERE x.after_version IS NULL AND s.head_hash = x.hash),"
        " count(s.contact_id)"
        f" FROM {chain.chain_links_sql(events, ('contact_id', 'purpose_id'), _in_range('e.contact_id', contacts))}"
        f" FULL JOIN (SELECT contact_id, purpose_id, version, head_hash FROM {states}"
        f" WHERE version > 0 AND {_in_range('contact_id', contacts)}) s"
        " ON s.contact_id = x.contact_id AND s.purpose_id = x.purpose_id AND s.version = x.version"
    )
