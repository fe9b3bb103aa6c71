"""The fixed cast every test may call on, built with the real roles (like healthchecks' hc/test.py).

- `officer`, `auditor`, `admin_user`: one user per role in compliance/roles.py (the admin is staff);
- `outsider`: signed up, no role;
- `api_client_and_key`: the mobile app's backend, allowed sources mobile_app and web_portal, and
  the scope contacts:read (tests of the other scopes make their own clients);
- `client_for(user)`: a Django test Client signed in as that user (past the second factor
  for those who need one).

Everyone's password is `CAST_PASSWORD`, so browser tests can log in through the form.
Packages add their own fixtures in tests/<package>/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser, Group
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from compliance import services
from compliance.logins import second_factor_required
from compliance.models import ApiClient
from compliance.roles import Role
from tests.needs import missing


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `postgres` needs PostgreSQL: it fails under CI=true on another database
    (CI's SQLite pass deselects it) and is skipped on a developer's SQLite run."""
    from django.db import connection

    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        missing(f"needs PostgreSQL, this run is on {connection.vendor}")


CAST_PASSWORD = "cast-password-1"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The cast logs in often; a real hasher's cost proves nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_push_on_commit(settings: Any) -> None:
    # A commit queues a push on the Celery broker (sync.kick). Only the tests with real
    # workers have a broker that someone consumes; they turn it back on (tests/sync/conftest.py).
    settings.SYNC_PUSH_ON_COMMIT = False
    # Likewise the confirmation mails of pending decisions (compliance.lifecycle); the lifecycle
    # tests that send them turn it back on.
    settings.LIFECYCLE_SEND_ON_COMMIT = False


@pytest.fixture(autouse=True)
def _reference_data_read_afresh() -> None:
    # Purposes, policy versions and API clients kept by this process from an earlier test
    # (compliance/services/reference.py) may name rows that test's rollback removed.
    from compliance.services.reference import reference_forget

    reference_forget()


@pytest.fixture(autouse=True)
def _tallies_read_afresh() -> None:
    # What this process computed from another test's stored tallies (compliance/tally_memo.py).
    from compliance import tally_memo

    tally_memo.forget()


@pytest.fixture(autouse=True)
def _seal_log_outside_var(settings: Any, tmp_path: Path) -> None:
    # Seals made in a test must not land in the developer's var/seals.log.
    settings.LEDGER_SEAL_LOG = tmp_path / "seals.log"


def _cast_member(username: str, role: str | None, *, is_staff: bool = False) -> AbstractUser:
    user = get_user_model().objects.create_user(
        username=username,
        password=CAST_PASSWORD,
        email=f"{username}@cast.example",
        first_name=username.split("-")[0].capitalize(),
        last_name="Cast",
        is_staff=is_staff,
    )
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def officer(db: None) -> AbstractUser:
    return _cast_member("olivia-officer", Role.OFFICER)


@pytest.fixture
def auditor(db: None) -> AbstractUser:
    return _cast_member("arthur-auditor", Role.AUDITOR)


@pytest.fixture
def admin_user(db: None) -> AbstractUser:
    return _cast_member("ada-admin", Role.ADMIN, is_staff=True)


@pytest.fixture
def outsider(db: None) -> AbstractUser:
    return _cast_member("otto-outsider", None)


@pytest.fixture
def api_client_and_key(db: None) -> tuple[ApiClient, str]:
    return services.api_client_create(
        name="cast-mobile-app", sources=["mobile_app", "web_portal"], scopes=["contacts:read"]
    )


@pytest.fixture
def client_for(db: None) -> Callable[[AbstractUser], Client]:
    def signed_in(user: AbstractUser) -> Client:
        client = Client()
        client.force_login(user)
        if second_factor_required(user):
            # Past the second factor too, as django-otp's own login() marks a session.
            device = TOTPDevice.objects.get_or_create(user=user, name="cast", defaults={"confirmed": True})[0]
            session = client.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()
        return client

    return signed_in
