"""Seals: checkpoints over every event since the previous seal, chained to it, copied out of the database."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from compliance import chain
from compliance.models import ConsentEvent, Seal


def committed_high_water_mark() -> int:
    """The highest event id below which every insert has committed.

    Ids are handed out when a row is inserted, not when it commits, so a writer
    that took id 100 may commit after one that took 101. On PostgreSQL a SHARE
    lock waits for every open writer of the table and holds new ones back for
    the one query; on SQLite writers are serialised already.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {ConsentEvent._meta.db_table} IN SHARE MODE")
        last = ConsentEvent.objects.order_by("-id").values_list("id", flat=True).first()
    return last or 0


def ledger_seal() -> Seal | None:
    """Seal every event since the previous seal, chained to it. None when there is nothing new."""
    high = committed_high_water_mark()
    with transaction.atomic():
        previous = Seal.objects.select_for_update().order_by("-sequence").first()
        start = previous.last_event_id if previous else 0
        if high <= start:
            return None
        hashes = (
            ConsentEvent.objects.filter(id__gt=start, id__lte=high)
            .order_by("id")
            .values_list("id", "hash")
            .iterator(chunk_size=20000)
        )
        first_id: int | None = None
        count = 0
        digest = hashlib.sha256()
        for event_id, event_hash in hashes:
            if first_id is None:
                first_id = event_id
            count += 1
            digest.update(event_hash.encode())
        created_at = timezone.now()
        prev_hash = previous.hash if previous else chain.GENESIS_HASH
        sequence = (previous.sequence + 1) if previous else 1
        seal = Seal(
            sequence=sequence,
            created_at=created_at,
            first_event_id=first_id,
            last_event_id=high,
            event_count=count,
            events_digest=digest.hexdigest(),
            prev_hash=prev_hash,
        )
        seal.hash = chain.seal_hash(
            sequence=sequence,
            created_at=created_at,
            first_event_id=first_id,
            last_event_id=high,
            event_count=count,
            events_digest=seal.events_digest,
            prev_hash=prev_hash,
        )
        seal.save(force_insert=True)
        transaction.on_commit(lambda: _seal_log_append(seal))
    return seal


def _seal_log_append(seal: Seal) -> None:
    """Copy the seal's hash out of the database (write-once storage in production)."""
    path = settings.LEDGER_SEAL_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{seal.sequence} {seal.hash} {seal.last_event_id} {seal.created_at.isoformat()}\n")
