"""django-tables2 reads the signature of a column's render method (or value method) with
`inspect.signature` for every cell it renders, to pass only the arguments the method names
(`django_tables2.utils.call_with_appropriate`). A page of 50 rows and 8 columns inspects 400
signatures: 5 of the opt-out clock page's 37 ms (measured in-process). A function's signature does
not change, so `install()` (from ComplianceConfig.ready) makes the library remember it per function:
one entry per method (a bound method's signature, without `self`, is its function's for every
instance) and per other callable, held weakly, so nothing is kept alive for it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from django_tables2 import utils

_library_signature: Callable[[Any], tuple[tuple[str, ...], str | None]] = utils.signature
_of_methods: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], str | None]] = weakref.WeakKeyDictionary()
_of_callables: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], str | None]] = (
    weakref.WeakKeyDictionary()
)


def signature(fn: Any) -> tuple[tuple[str, ...], str | None]:
    """`django_tables2.utils.signature(fn)`, remembered."""
    function = getattr(fn, "__func__", None)
    known, key = (_of_methods, function) if function is not None else (_of_callables, fn)
    try:
        return known[key]
    except KeyError:
        found = known[key] = _library_signature(fn)
        return found
    except TypeError:  # not weakly referable (or not hashable): asked each time
        return _library_signature(fn)


def install() -> None:
    utils.signature = signature
