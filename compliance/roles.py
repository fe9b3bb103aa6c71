"""The three kinds of people who log in, as Django groups with the permissions their work needs."""

from __future__ import annotations

from typing import Any


class Role:
    OFFICER = "compliance_officer"
    AUDITOR = "auditor"
    ADMIN = "admin"


ROLE_LABELS = {
    Role.OFFICER: "Compliance officer",
    Role.AUDITOR: "Auditor",
    Role.ADMIN: "Admin",
}

# Custom permissions live on ConsentEvent's Meta (compliance.models); each role gets these.
ROLE_PERMISSIONS: dict[str, list[str]] = {
    Role.OFFICER: [
        "compliance.view_history",
        "compliance.view_dashboards",
        "compliance.record_phone_consent",
        "compliance.view_access_log",
        # Issue 10: auditors, officers and admins request and download reports.
        "compliance.download_reports",
    ],
    Role.AUDITOR: ["compliance.view_history", "compliance.download_reports"],
    Role.ADMIN: [
        "compliance.view_history",
        "compliance.view_dashboards",
        "compliance.download_reports",
        "compliance.record_phone_consent",
        "compliance.correct_consent",
        "compliance.fix_discrepancies",
        "compliance.view_access_log",
        # Issue 16: publish a policy version at /policies/new/.
        "compliance.add_policyversion",
        # Issue 14: erasure requests and legal holds.
        "compliance.erase_contacts",
    ],
}


def roles_of(user: Any) -> frozenset[str]:
    if user is None or not getattr(user, "is_authenticated", False) or not hasattr(user, "groups"):
        return frozenset()
    cached = getattr(user, "_consent_desk_roles", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=ROLE_LABELS).values_list("name", flat=True))
        user._consent_desk_roles = cached
    return cached


def roles_install() -> None:
    """Create the role groups with their permissions (idempotent; runs after every migrate)."""
    from django.contrib.auth.models import Group, Permission

    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        permissions = [
            Permission.objects.get(content_type__app_label=app, codename=codename)
            for app, codename in (name.split(".", 1) for name in codenames)
        ]
        group.permissions.set(permissions)
