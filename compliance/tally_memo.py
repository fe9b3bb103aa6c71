"""What a page computes from the stored tallies alone, remembered by the process that computed
it until the tallies change.

The trends page reads a year of stored days (`ConsentDay`, `CallDay`): a few thousand rows that
change only when beat's tally runs, summed and turned into Python values on every view (30 of the
page's 74 ms at 10,000,000 events, measured in-process). Each result is kept with the tallies'
stamp (a value that changes whenever they do: the consent tallies' mark and time, the call days'
count and highest id) and used again while the stamp is the same; only what happened since the
tallies (the live part) is read on each view. The stamp is read from the database on each view,
so every process sees a change at once; a result never outlives its stamp. Per process, in memory:
a few entries (the page's windows), the oldest dropped first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

MAX_ENTRIES = 64

_entries: OrderedDict[Hashable, tuple[Hashable, Any]] = OrderedDict()
_lock = threading.Lock()


def remembered(key: Hashable, stamp: Hashable, compute: Callable[[], T]) -> T:
    """compute(), or what it gave for `key` while the tallies had this `stamp`. The result is
    shared: the caller must not change it."""
    with _lock:
        found = _entries.get(key)
        if found is not None and found[0] == stamp:
            _entries.move_to_end(key)
            return found[1]  # type: ignore[no-any-return]
    value = compute()
    with _lock:
        _entries[key] = (stamp, value)
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)
    return value


def forget() -> None:
    """Drop every result (the tests: each starts with a database of its own)."""
    with _lock:
        _entries.clear()
