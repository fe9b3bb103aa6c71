"""The fixed cast every test may call on, built with the real roles (like healthchecks' hc/test.py).

- `officer`, `auditor`, `admin_user`: one user per role in compliance/roles.py (the admin is staff);
- `outsider`: signed up, no role;
- `api_client_and_key`: the mobile app's backend, allowed sources mobile_app and web_portal;
- `client_for(user)`: a Django test Client signed in as that user.

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

from compliance import services
from compliance.models import ApiClient
from compliance.roles import Role

CAST_PASSWORD = "cast-password-1"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings: Any) -> None:
    # The cast logs in often; a real hasher's cost proves nothing here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _no_push_on_commit(settings: Any) -> None:
    # A commit queues a push on the Celery broker (sync.kick). Only the tests with real
    # workers have a broker that someone consumes; they turn it back on (conftest_engine).
    settings.SYNC_PUSH_ON_COMMIT = False


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
    return services.api_client_create(name="cast-mobile-app", sources=["mobile_app", "web_portal"])


@pytest.fixture
def client_for(db: None) -> Callable[[AbstractUser], Client]:
    def signed_in(user: AbstractUser) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return signed_in
