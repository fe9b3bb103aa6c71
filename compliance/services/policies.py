"""Privacy notices: a version is published once and never changes.

Three guards hold a published version still: `PolicyVersion.save` and `.delete` refuse it,
the database's trigger refuses an UPDATE or DELETE that steps around the model
(compliance/ledger_guard.py), and nothing here offers to edit one. A new text is a new version.
"""

from __future__ import annotations

from datetime import date

from django.utils import timezone

from compliance.models import PolicyVersion


def policy_version_publish(
    *, label: str, effective_at: date | str, text: str = "", url: str = ""
) -> PolicyVersion:
    """Publish a new version. Raises ValidationError (by field) for a label in use, neither text
    nor URL, or a malformed URL; nothing is written then."""
    policy = PolicyVersion(
        label=label.strip(),
        effective_at=effective_at,
        text=text.strip(),
        url=url.strip(),
        published_at=timezone.now(),
    )
    policy.full_clean()
    policy.save()
    return policy
