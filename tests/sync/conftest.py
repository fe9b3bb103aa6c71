"""Fixtures of the sync's tests.

zohosim and Zoho clients:
- `sim`: zohosim as a live server on loopback (reset for each test), with its control API;
- `zoho`, `zoho_nolog`: a Zoho client pointed at it, with and without `ZohoCall` rows;
- `redis_url`: the Redis database of the Zoho client's shared-cache tests.

The sync engine:
- `ledger`: records consent changes through the ledger's one write path;
- `crm`: adds Zoho CRM records to the running zohosim, by default holding "no consent";
- `engine_settings`: verify delay 0, retry base 0, no Campaigns list, alerts mailed (locmem);
- `sim_settings`: those and the ZOHO_* settings pointed at zohosim, for `ZohoClient.from_settings()`;
- `workers`: real `celery -A config worker` processes on a real Redis broker (the `soak` tests);
- `engine_broker_url`, `kicks_to`: the workers' broker, emptied, and routing this process's kicks to it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.utils import timezone

from compliance import services
from compliance.models import Contact, PolicyVersion
from sync import quota
from sync.zoho import CallGate, NullCallLog, ZohoClient, ZohoConfig
from sync.zoho.calllog import CallLog
from tests.needs import missing
from zohosim import LiveServer

REDIS_URL = os.environ.get("ZOHO_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
SIM_CLIENT_ID = "zohosim-client"
SIM_CLIENT_SECRET = "zohosim-secret"
SIM_REFRESH_TOKEN = "zohosim-refresh-token"


class Sim:
    """The running zohosim and its control API (/_sim/...)."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.url = server.url
        self.http = httpx.Client(base_url=server.url, timeout=10)

    @property
    def state(self) -> Any:
        return self.server.state

    def _ok(self, response: httpx.Response) -> Any:
        assert response.status_code < 400, response.text
        return response.json()

    def reset(self, **config: Any) -> None:
        self._ok(self.http.post("/_sim/reset", json={"config": config}))

    def seed(self, **data: Any) -> Any:
        return self._ok(self.http.post("/_sim/seed", json=data))

    def add_contact(self, **fields: Any) -> str:
        return str(self._ok(self.http.post("/_sim/contacts", json={"fields": fields}))["id"])

    def contact(self, record_id: str) -> dict[str, Any]:
        return dict(self._ok(self.http.get(f"/_sim/contacts/{record_id}")))

    def fault(self, name: str, **params: Any) -> Any:
        return self._ok(self.http.put("/_sim/faults", json={name: params}))

    def clear_faults(self) -> None:
        self._ok(self.http.delete("/_sim/faults"))

    def expire_tokens(self) -> None:
        self._ok(self.http.post("/_sim/tokens/expire"))

    def writes(self) -> list[dict[str, Any]]:
        return list(self._ok(self.http.get("/_sim/writes", params={"source": "all"}))["writes"])

    def calls(self, op: str | None = None) -> list[dict[str, Any]]:
        params = {"op": op} if op else {}
        return list(self._ok(self.http.get("/_sim/calls", params=params))["calls"])

    def wait_for_calls(self, op: str, count: int, timeout_s: float = 5.0) -> None:
        """Wait until the sim has finished ``count`` calls of ``op`` (a request the client
        gave up on still runs on the server; let it end before the next test resets)."""
        deadline = time.monotonic() + timeout_s
        while len(self.calls(op)) < count:
            assert time.monotonic() < deadline, f"the sim never finished {count} {op} call(s)"
            time.sleep(0.02)

    def mints(self) -> int:
        """Successful access-token mints seen by the sim."""
        return sum(1 for c in self.calls("token") if c["code"] == "SUCCESS")

    def stats(self) -> dict[str, Any]:
        return dict(self._ok(self.http.get("/_sim/stats")))

    def config(self, **values: Any) -> None:
        self._ok(self.http.put("/_sim/config", json=values))

    def post(self, path: str, **body: Any) -> Any:
        return self._ok(self.http.post(path, json=body))


@pytest.fixture(scope="session")
def sim_server() -> Iterator[LiveServer]:
    with LiveServer() as server:
        yield server


@pytest.fixture
def sim(sim_server: LiveServer) -> Iterator[Sim]:
    helper = Sim(sim_server)
    helper.reset()
    yield helper
    helper.http.close()


def sim_config(sim: Sim, **overrides: Any) -> ZohoConfig:
    values: dict[str, Any] = {
        "client_id": SIM_CLIENT_ID,
        "client_secret": SIM_CLIENT_SECRET,
        "refresh_token": SIM_REFRESH_TOKEN,
        "accounts_url": sim.url,
        # No API override: the CRM host comes from the token's api_domain (the sim's URL).
        "campaigns_url": sim.url,
        "timeout_s": 5.0,
        "cache_prefix": f"zoho-test-{uuid.uuid4().hex[:8]}",
    }
    values.update(overrides)
    return ZohoConfig(**values)


def make_client(
    sim: Sim,
    *,
    cache: Any = None,
    call_log: CallLog | None = None,
    http: httpx.Client | None = None,
    gate: CallGate | None = None,
    **overrides: Any,
) -> ZohoClient:
    """A client on the sim; like `ZohoClient.from_settings`, it passes the quota gate of its prefix."""
    config = sim_config(sim, **overrides)
    return ZohoClient(
        config,
        cache=cache if cache is not None else LocMemCache(f"zoho-{uuid.uuid4().hex}", {}),
        call_log=call_log,
        http=http,
        gate=gate if gate is not None else quota.gate(config.cache_prefix),
    )


@pytest.fixture
def zoho(sim: Sim, db: None) -> Iterator[ZohoClient]:
    client = make_client(sim)
    yield client
    client.close()


@pytest.fixture
def zoho_nolog(sim: Sim) -> Iterator[ZohoClient]:
    """A client that records no ZohoCall rows (for threads, which cannot share the test transaction)."""
    client = make_client(sim, call_log=NullCallLog())
    yield client
    client.close()


@pytest.fixture
def redis_url() -> str:
    """Redis db 5; a test needing it fails (not skips) on CI when Redis is absent."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        missing(f"Redis not reachable at {REDIS_URL}: {exc}")
    return REDIS_URL


# -- the sync engine: the ledger side and the CRM side of a change ------------------------------

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


@pytest.fixture
def leads_too(engine_settings: Any) -> Any:
    """`engine_settings` with Leads as well as Contacts (``ZOHO_MODULES=Contacts,Leads``)."""
    engine_settings.ZOHO_MODULES = ["Contacts", "Leads"]
    return engine_settings


@pytest.fixture
def sim_settings(engine_settings: Any, sim: Sim) -> Any:
    """`engine_settings` with the ZOHO_* settings pointed at zohosim, for code that builds its
    own client (`ZohoClient.from_settings()`: tasks, commands), and a cache of this test's own."""
    engine_settings.ZOHO_ACCOUNTS_URL = sim.url
    engine_settings.ZOHO_API_DOMAIN = sim.url
    engine_settings.ZOHO_CAMPAIGNS_URL = sim.url
    engine_settings.ZOHO_CLIENT_ID = SIM_CLIENT_ID
    engine_settings.ZOHO_CLIENT_SECRET = SIM_CLIENT_SECRET
    engine_settings.ZOHO_REFRESH_TOKEN = SIM_REFRESH_TOKEN
    # The access token, rate limit and cool-downs live in the default cache: not in var/cache,
    # which other processes on this machine share.
    engine_settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"sim-settings-{uuid.uuid4().hex}",
        }
    }
    return engine_settings


# -- real Celery workers ------------------------------------------------------------------------

ENGINE_REDIS_URL = os.environ.get("ENGINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
ENGINE_CACHE_URL = os.environ.get("ENGINE_TEST_CACHE_URL", "redis://127.0.0.1:6379/12")
DEADLINE_S = 60.0
# The workers import `config` as production's `celery -A config worker` does, from the project root.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


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
        self.beat_process: subprocess.Popen[bytes] | None = None
        self.sender = Celery("engine-tests", broker=env["CELERY_BROKER_URL"], set_as_current=False)
        self.started = 0

    def _spawn(self, log_name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / log_name).open("wb")
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, count: int = 2) -> None:
        options = ["--pool", "solo", "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip"]
        for _ in range(count):
            self.started += 1
            name = f"engine{self.started}@%h"
            self.processes.append(
                self._spawn(f"worker-{self.started}.log", "worker", *options, "--without-mingle", "-n", name)
            )

    def start_beat(self) -> None:
        """A real `celery beat` on the configured schedule (instead of the test's `beat()` rounds)."""
        self.beat_process = self._spawn(
            "beat.log", "beat", "--loglevel", "WARNING", "--schedule", str(self.logs / "beat-schedule")
        )

    def kill_all(self) -> None:
        """SIGKILL every worker: no warm shutdown, no acknowledgement, messages left in flight."""
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []

    def stop(self) -> None:
        if self.beat_process is not None:
            self.processes.append(self.beat_process)
            self.beat_process = None
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

        from config.celery import URGENT_QUEUE

        broker = redis.Redis.from_url(self.env["CELERY_BROKER_URL"])
        if broker.llen("celery") or broker.llen(URGENT_QUEUE):
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


def _require_empty_redis(url: str) -> None:
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
    kick._covered_until = 0.0
    cache.delete(kick.KICK_KEY)
    try:
        yield
    finally:
        app.conf.broker_url = previous
        app._after_fork()


@pytest.fixture
def engine_broker_url() -> str:
    """The workers' Redis broker, emptied (ENGINE_TEST_REDIS_URL)."""
    _require_empty_redis(ENGINE_REDIS_URL)
    return ENGINE_REDIS_URL


@pytest.fixture
def kicks_to(settings: Any) -> Callable[[str], AbstractContextManager[None]]:
    """``with kicks_to(url):`` this process's commits queue pushes (`sync.kick`) on that broker."""
    return lambda broker_url: _kicks_to(broker_url, settings)


@pytest.fixture
def workers(
    transactional_db: None, sim: Any, tmp_path: Path, settings: Any, engine_broker_url: str
) -> Iterator[Workers]:
    _require_empty_redis(ENGINE_CACHE_URL)
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATABASE_URL": _database_url(),
            "DATABASE_CONN_MAX_AGE": "0",
            "CELERY_BROKER_URL": engine_broker_url,
            "CACHE_URL": ENGINE_CACHE_URL,
            "CELERY_VISIBILITY_TIMEOUT_S": "20",
            "ZOHO_ACCOUNTS_URL": sim.url,
            "ZOHO_API_DOMAIN": sim.url,
            "ZOHO_CAMPAIGNS_URL": sim.url,
            "ZOHO_CLIENT_ID": SIM_CLIENT_ID,
            "ZOHO_CLIENT_SECRET": SIM_CLIENT_SECRET,
            "ZOHO_REFRESH_TOKEN": SIM_REFRESH_TOKEN,
            "ZOHO_TIMEOUT_S": "5",
            "CONSENT_VERIFY_DELAY_S": "0",
            "SYNC_RETRY_BASE_S": "0",
            "SYNC_MAX_RETRIES": "3",
            # (longer than the quota wait and the timeout together, as `sync.W001` asks)
            "SYNC_OUTBOX_LEASE_S": "8",
            "ZOHO_429_COOLDOWN_S": "0.05",
            "ZOHO_429_COOLDOWN_MAX_S": "0.5",
            "ZOHO_QUOTA_MAX_WAIT_S": "2",
            "ZOHO_RATE_LIMIT_PER_S": "1000",
            "LEDGER_SEAL_LOG": str(tmp_path / "seals.log"),
            "COMPLIANCE_ALERT_EMAILS": "compliance@example.com",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    pool = Workers(env, tmp_path)
    with _kicks_to(engine_broker_url, settings):
        yield pool
    pool.stop()
