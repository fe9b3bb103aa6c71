"""The seal log (`LEDGER_SEAL_LOG`): each seal's hash copied outside the database, which
`verify_ledger` compares with the seals the database holds (a rewrite of both the events and
the seals table still differs from the copy kept elsewhere)."""

from __future__ import annotations

from pathlib import Path

from compliance.identity_verification import Broken
from compliance.models import Seal


def _read_seal_log(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            raise Broken(f"seal log {path} line {number} is unreadable")
        entries.append((int(parts[0]), parts[1]))
    return entries


def seal_log_verify(path: Path) -> None:
    stored = dict(Seal.objects.values_list("sequence", "hash"))
    for sequence, logged_hash in _read_seal_log(path):
        if sequence not in stored:
            raise Broken(f"seal {sequence} is in the seal log {path} but no longer in the database")
        if stored[sequence] != logged_hash:
            raise Broken(f"seal {sequence} differs from its copy in the seal log {path}")
