"""Fixtures for the sync engine's tests (loaded with `pytest_plugins`).

- `ledger`: records consent changes through the ledger's one write path;
- `crm`: adds Zoho CRM records to the running zohosim, by default holding "no consent";
- `engine_settings`: verify delay 0, retry base 0, a Campaigns list.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from tests.needs import missing

if __name__ == "__main__":  # the worker launcher (below) runs before pytest-django could set Django up
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()

from compliance import services
from compliance.models import Contact, PolicyVersion

_keys = itertools.count(1)

# A CRM record whose consent fields say "nothing consented": what the projection of a
# contact without any decision is, so only the fields a change touches differ.
NO_CONSENT: dict[str, Any] = {
    "Email_Opt_Out": True,
    "SMS_Opt_In": False,
    "Profiling_Consent": False,
    "Third_Party_Sharing_Consent": False,
    "Data_Processing_Basis_Details": {"Contact_Through_Email": False, "Contact_Through_Phone": False},
}


@dataclass
class Ledger:
    policy: PolicyVersion

    def change(
        self, email: str, purpose: str, status: str, *, zoho_id: str | None = None, minutes_ago: float = 1
    ) -> Contact:
        evidence: dict[str, Any] = {}
        if purpose == "email_marketing" and status == "opted_in":
            evidence["double_opt_in_confirmed_at"] = timezone.now().isoformat()
        decision = services.ConsentDecision(
            purpose=purpose,
            status=status,
            source="mobile_app",
            occurred_at=timezone.now() - timedelta(minutes=minutes_ago),
            idempotency_key=f"engine-{next(_keys)}",
            policy_version=self.policy.label if status == "opted_in" else None,
            evidence=evidence,
        )
        result = services.consent_ingest(
            identity=services.ContactIdentity(email=email, zoho_id=zoho_id), decision=decision
        )
        return result.event.contact


@pytest.fixture
def ledger(db: None) -> Ledger:
    policy = PolicyVersion.objects.filter(label="2026-03").first() or services.policy_version_publish(
        label="2026-03", effective_at="2026-03-01", text="We use your data to send you offers you chose."
    )
    return Ledger(policy=policy)


@pytest.fixture
def crm(sim: Any) -> Any:
    def add(email: str, **fields: Any) -> str:
        values = {**NO_CONSENT, "Last_Name": email.split("@")[0], "Email": email, **fields}
        return str(sim.add_contact(**values))

    return add


@pytest.fixture
def engine_settings(settings: Any) -> Any:
    settings.CONSENT_VERIFY_DELAY_S = 0
    settings.SYNC_RETRY_BASE_S = 0
    settings.SYNC_MAX_RETRIES = 3
    settings.ZOHO_CAMPAIGNS_LIST_KEYS = []
    settings.COMPLIANCE_ALERT_EMAILS = ["compliance@example.com"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return settings


# -- real Celery workers ------------------------------------------------------------------------

# Settings the worker processes take from the environment although config/settings.py does not
# read them (yet): short leases and quota cool-downs so that tests finish in seconds.
WORKER_SETTING_OVERRIDES = {
    "SYNC_OUTBOX_LEASE_S": int,
    "ZOHO_429_COOLDOWN_S": float,
    "ZOHO_429_COOLDOWN_MAX_S": float,
    "ZOHO_QUOTA_MAX_WAIT_S": float,
    "ZOHO_RATE_LIMIT_PER_S": int,
}


def _worker_main() -> None:
    """`python -m tests.sync.conftest_engine worker …`: a Celery worker with the overrides applied."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    for name, kind in WORKER_SETTING_OVERRIDES.items():
        if name in os.environ:
            setattr(settings, name, kind(os.environ[name]))
    from celery.bin.celery import main

    sys.argv = ["celery", "-A", "config", *sys.argv[1:]]
    main()


ENGINE_REDIS_URL = os.environ.get("ENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
ENGINE_CACHE_URL = os.environ.get("ENGINE_TEST_CACHE_URL", "redis://127.0.0.1:6379/12")
DEADLINE_S = 60.0


def _database_url() -> str:
    from django.db import connection

    data = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{data['NAME']}"
    auth = data["USER"] + (f":{data['PASSWORD']}" if data.get("PASSWORD") else "")
    return f"postgres://{auth}@{data['HOST'] or '127.0.0.1'}:{data['PORT'] or 5432}/{data['NAME']}"


class Workers:
    """Real `celery worker` processes on a real Redis broker, against the test database and zohosim."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        from celery import Celery

        self.env = env
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        self.sender = Celery("engine-tests", broker=env["CELERY_BROKER_URL"], set_as_current=False)
        self.started = 0

    def start(self, count: int = 2) -> None:
        for _ in range(count):
            self.started += 1
            log = (self.logs / f"worker-{self.started}.log").open("wb")
            command = [
                sys.executable, "-m", "tests.sync.conftest_engine", "worker", "--pool", "solo",
                "--loglevel", "WARNING", "-n", f"engine{self.started}@%h",
                "--without-heartbeat", "--without-gossip", "--without-mingle",
            ]  # fmt: skip
            self.processes.append(
                subprocess.Popen(
                    command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                )
            )

    def kill_all(self) -> None:
        """SIGKILL every worker: no warm shutdown, no acknowledgement, messages left in flight."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []

    def beat(self) -> None:
        """What `celery beat` sends, sent by the test so that it runs every round, not every 30 s."""
        for name in ("sync.outbox_sweep", "sync.verify_due", "sync.retry_due"):
            self.sender.send_task(name, expires=10)

    def wait_ready(self, deadline_s: float = DEADLINE_S) -> None:
        """Wait until every started worker answers a ping (it consumes from the broker)."""
        deadline = time.monotonic() + deadline_s
        while len(self.sender.control.ping(timeout=1.0) or []) < len(self.processes):
            assert time.monotonic() < deadline, "the workers did not come up"

    def drained(self) -> bool:
        """Nothing queued on the broker and nothing running or reserved in any worker."""
        import redis

        if redis.Redis.from_url(self.env["CELERY_BROKER_URL"]).llen("celery"):
            return False
        inspect = self.sender.control.inspect(timeout=1.0)
        busy = [inspect.active() or {}, inspect.reserved() or {}, inspect.scheduled() or {}]
        return not any(tasks for answer in busy for tasks in answer.values())

    def wait_until(
        self, done: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S, *, beat: bool = True
    ) -> None:
        """Poll until ``done``; with ``beat``, send the periodic tasks each round as beat would."""
        from django.db import connection

        deadline = time.monotonic() + deadline_s
        while True:
            connection.close()  # read what the workers committed, not an old snapshot
            if done():
                return
            if time.monotonic() > deadline:
                tail = "".join(
                    p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("worker-*.log"))
                )
                raise AssertionError(f"timed out waiting for {what}\n--- worker logs ---\n{tail}")
            if beat:
                self.beat()
            time.sleep(0.3)


def _require_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
    except redis.exceptions.RedisError as exc:
        missing(f"Redis not reachable at {url}: {exc}")


@contextmanager
def _kicks_to(broker_url: str, settings: Any) -> Iterator[None]:
    """Let this process's commits queue pushes (`sync.kick`) on the workers' broker."""
    from django.core.cache import cache

    from config.celery import app
    from sync import kick

    settings.SYNC_PUSH_ON_COMMIT = True
    settings.SYNC_PUSH_DELAY_S = 1
    previous = app.conf.broker_url
    app.conf.broker_url = broker_url
    app._after_fork()  # drop pooled broker connections: the next publish connects to broker_url
    kick._last_kick = 0.0
    cache.delete(kick.KICK_KEY)
    try:
        yield
    finally:
        app.conf.broker_url = previous
        app._after_fork()


@pytest.fixture
def workers(transactional_db: None, sim: Any, tmp_path: Path, settings: Any) -> Iterator[Workers]:
    _require_redis(ENGINE_REDIS_URL)
    _require_redis(ENGINE_CACHE_URL)
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _database_url(),
            "DATABASE_CONN_MAX_AGE": "0",
            "CELERY_BROKER_URL": ENGINE_REDIS_URL,
            "CACHE_URL": ENGINE_CACHE_URL,
            "CELERY_VISIBILITY_TIMEOUT_S": "20",
            "ZOHO_ACCOUNTS_URL": sim.url,
            "ZOHO_API_DOMAIN": sim.url,
            "ZOHO_CAMPAIGNS_URL": sim.url,
            "ZOHO_CLIENT_ID": "zohosim-client",
            "ZOHO_CLIENT_SECRET": "zohosim-secret",
            "ZOHO_REFRESH_TOKEN": "zohosim-refresh-token",
            "ZOHO_TIMEOUT_S": "10",
            "CONSENT_VERIFY_DELAY_S": "0",
            "SYNC_RETRY_BASE_S": "0",
            "SYNC_MAX_RETRIES": "3",
            "SYNC_OUTBOX_LEASE_S": "4",
            "ZOHO_429_COOLDOWN_S": "0.05",
            "ZOHO_429_COOLDOWN_MAX_S": "0.5",
            "ZOHO_QUOTA_MAX_WAIT_S": "5",
            "ZOHO_RATE_LIMIT_PER_S": "1000",
            "LEDGER_SEAL_LOG": str(tmp_path / "seals.log"),
            "COMPLIANCE_ALERT_EMAILS": "compliance@example.com",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    pool = Workers(env, tmp_path)
    with _kicks_to(ENGINE_REDIS_URL, settings):
        yield pool
    pool.stop()


if __name__ == "__main__":
    _worker_main()
