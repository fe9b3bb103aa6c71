"""Privacy notices: a version is published once and never changes."""

from __future__ import annotations

from datetime import date

from django.utils import timezone

from compliance.models import PolicyVersion


def policy_version_publish(
    *, label: str, effective_at: date | str, text: str = "", url: str = ""
) -> PolicyVersion:
    policy = PolicyVersion(
        label=label, effective_at=effective_at, text=text, url=url, published_at=timezone.now()
    )
    policy.full_clean()
    policy.save()
    return policy
