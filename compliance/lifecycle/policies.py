"""The privacy notice a person is shown on the public pages and in the mails."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from compliance.models import PolicyVersion


def policy_in_force() -> PolicyVersion | None:
    """The newest published version whose effective date has come."""
    return (
        PolicyVersion.objects.filter(published_at__isnull=False, effective_at__lte=timezone.localdate())
        .order_by("-effective_at", "-published_at")
        .first()
    )


def policy_url(policy: PolicyVersion | None) -> str:
    """Where the policy can be read: its own URL, or its text on our public policy page."""
    if policy is None:
        return ""
    if policy.url:
        return policy.url
    return f"{settings.PUBLIC_BASE_URL}{reverse('lifecycle:policy', args=[policy.label])}"
