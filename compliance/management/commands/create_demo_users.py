"""Create one demo user per role (idempotent) and print their logins (the admin's with its TOTP secret)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.core.management.base import BaseCommand
from django.db import transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from compliance.logins import TOTP_DEVICE_NAME, second_factor_required, totp_secret
from compliance.roles import ROLE_LABELS, Role, roles_install

# username, role, first name, last name. The password is "<username>-demo-pass".
DEMO_USERS = (
    ("officer", Role.OFFICER, "Olivia", "Officer"),
    ("auditor", Role.AUDITOR, "Arthur", "Auditor"),
    ("admin", Role.ADMIN, "Ada", "Admin"),
)


def demo_password(username: str) -> str:
    return f"{username}-demo-pass"


def demo_users_ensure() -> dict[str, AbstractUser]:
    """The demo cast by role, created or reset to its known password and role."""
    User = get_user_model()
    users: dict[str, AbstractUser] = {}
    with transaction.atomic():
        if Group.objects.filter(name__in=ROLE_LABELS).count() != len(ROLE_LABELS):
            roles_install()
        for username, role, first_name, last_name in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.first_name, user.last_name = first_name, last_name
            user.email = f"{username}@consent-desk.example"
            user.is_active = True
            # Only admins enter the Django admin; staff status is half of that (see compliance/admin.py).
            user.is_staff = role == Role.ADMIN
            user.set_password(demo_password(username))
            user.save()
            user.groups.set([Group.objects.get(name=role)])
            users[role] = user
    return users


def demo_totp_device(user: AbstractUser) -> TOTPDevice:
    """The user's confirmed TOTP device: kept across runs, so an authenticator app set up once keeps working."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=True)
    return device


class Command(BaseCommand):
    help = "Create (or reset) one demo user per role: officer, auditor, admin. Prints their logins."

    def handle(self, *args: Any, **options: Any) -> None:
        users = demo_users_ensure()
        self.stdout.write("Demo users (username / password / role):")
        for username, role, _, _ in DEMO_USERS:
            line = f"  {users[role].get_username():8} / {demo_password(username):18} / {ROLE_LABELS[role]}"
            if second_factor_required(users[role]):
                device = demo_totp_device(users[role])
                line += f" / TOTP secret {totp_secret(device)} (add it to an authenticator app)"
            self.stdout.write(line)
