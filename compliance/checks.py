"""System checks for erasure's suppression secrets (docs/erasure.md, "Keep the objection").

- `check --deploy`: ERASURE_SUPPRESSION_SECRETS should be set. Without it the hashed identifiers
  that erasures leave are keyed by a secret derived from SECRET_KEY: rotating SECRET_KEY, then
  dropping the old one from SECRET_KEY_FALLBACKS, would stop them matching.
- `check --database default` (and the erasure requests' admin page): a hashed identifier that no
  checked secret made is an erased person a re-import would not hold back (an error); one that
  only a secret derived from SECRET_KEY_FALLBACKS makes would become one when the fallback goes
  (a warning).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError


@register(Tags.security, deploy=True)
def erasure_secret_of_its_own(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    if any(settings.ERASURE_SUPPRESSION_SECRETS):
        return []
    return [
        Warning(
            "ERASURE_SUPPRESSION_SECRETS is not set: the hashed identifiers that erasures leave are "
            "keyed by a secret derived from SECRET_KEY, and stop matching once a rotated SECRET_KEY "
            "leaves SECRET_KEY_FALLBACKS.",
            hint="Set ERASURE_SUPPRESSION_SECRETS to a long random secret of its own; the ones "
            "derived from SECRET_KEY and its fallbacks are still checked (docs/operations.md).",
            id="compliance.W010",
        )
    ]


@register(Tags.database)
def erasure_digests_matchable(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[Error | Warning]:
    if not databases:
        return []
    from compliance.services.erased_identifiers import orphaned_key_ids

    try:
        orphaned = orphaned_key_ids()
        on_fallbacks = {
            key: count for key, count in orphaned_key_ids(fallbacks=False).items() if key not in orphaned
        }
    except DatabaseError:
        return []  # not migrated yet: nothing erased
    found: list[Error | Warning] = []
    if orphaned:
        found.append(Error(orphaned_message(orphaned), hint=ORPHANED_HINT, id="compliance.E011"))
    if on_fallbacks:
        found.append(
            Warning(
                f"{_identifiers(sum(on_fallbacks.values()))} of erased people matched only by a secret "
                "derived from a key in SECRET_KEY_FALLBACKS: dropping that key would stop them "
                "holding anyone back.",
                hint="Keep the key in SECRET_KEY_FALLBACKS (docs/operations.md, Key rotation).",
                id="compliance.W011",
            )
        )
    return found


ORPHANED_HINT = (
    "Put back the secret that made them: in ERASURE_SUPPRESSION_SECRETS after the first, or, if it "
    "was derived from a former SECRET_KEY, that key in SECRET_KEY_FALLBACKS (docs/operations.md)."
)


def orphaned_message(orphaned: dict[str, int]) -> str:
    keys = ", ".join(f"key id {key}: {count}" for key, count in orphaned.items())
    return (
        f"{_identifiers(sum(orphaned.values()))} of erased people made with a suppression secret no "
        f"longer configured ({keys}): a re-import of those addresses and numbers would not be held "
        'by "do not contact".'
    )


def _identifiers(count: int) -> str:
    return f"{count} hashed identifier" if count == 1 else f"{count} hashed identifiers"
