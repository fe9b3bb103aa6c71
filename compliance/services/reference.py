"""What every API request reads and almost nothing changes (API clients, purposes, published
policy versions), kept in each process's memory.

A change to any of it, through the services or Django admin (`post_save`/`post_delete`,
connected in `compliance.apps`), sets a new generation token in the shared cache. The API
reads that token once per request (`reference_fresh`, from the authentication) and a process
that sees it change forgets everything it kept: a revoked key or a purpose that now requires
double opt-in acts at once in every process, and a steady stream of requests costs one cache
read instead of a query per client, purpose and policy version.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db import transaction

from compliance.services.consent import Lookups

if TYPE_CHECKING:
    from compliance.models import ApiClient

REFERENCE_GENERATION = "compliance:reference:generation"


def reference_changed(**_signal: Any) -> None:
    """Tell every process to read reference data again: now, and once more after the transaction
    commits (a process may read the old row in between and keep it under the first token)."""

    def bump() -> None:
        cache.set(REFERENCE_GENERATION, secrets.token_hex(8), None)

    bump()
    transaction.on_commit(bump)


@dataclass
class Kept:
    """One process's copy, valid while the generation token is ``token``."""

    token: object = None
    # key prefix -> (read again after this time.time(), the active client)
    clients: dict[str, tuple[float, ApiClient]] = field(default_factory=dict)
    lookups: Lookups = field(default_factory=Lookups)


_kept = Kept(token=object())


def reference_fresh() -> Kept:
    """This process's reference data, dropped first if the shared generation moved (one cache read)."""
    global _kept
    token = cache.get(REFERENCE_GENERATION)
    if token != _kept.token:
        _kept = Kept(token=token)
    return _kept


def reference_kept() -> Kept:
    """What this process keeps, as of the last `reference_fresh` (the request's authentication)."""
    return _kept


def reference_forget() -> None:
    """Drop what this process keeps (tests, and a process that changed rows by hand)."""
    global _kept
    _kept = Kept(token=object())
