"""Zoho CRM's Notifications API (``/crm/v8/actions/watch``): channels, and callbacks sent to them.

A channel watches events such as ``Contacts.edit`` or ``Leads.edit``; every change to a watched
record of that module (an API write, a CRM user's edit, a workflow's reset, a Lead's conversion)
posts ``{server_time, query_params, module, resource_uri, ids, affected_fields, operation,
channel_id, token}`` to its ``notify_url``, as Zoho's documented callback (zoho-api.md section 6):
``module`` is the record's module (``Leads`` for a Lead), ``resource_uri`` the module's full URL
on the API domain, ``operation`` one of ``insert``, ``update``, ``delete``. Callbacks go out from
one background thread, in order, so a call that changes a record never waits for them; each
delivery is logged (``notifier.deliveries``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
from flask import has_request_context, request

if TYPE_CHECKING:
    from zohosim.state import SimState

logger = logging.getLogger("zohosim.notifications")

MAX_TOKEN = 50
MAX_EXPIRY_S = 7 * 86_400
DEFAULT_EXPIRY_S = 3600
OPERATIONS = ("create", "edit", "delete", "all")
# A watched event's operation as the callback names it.
CALLBACK_OPERATIONS = {"create": "insert", "edit": "update", "delete": "delete"}
# Zoho's API domain, for callbacks sent outside a request (a test's direct change) when the sim
# is not configured with one.
DEFAULT_API_DOMAIN = "https://www.zohoapis.com"


def _api_domain(state: SimState) -> str:
    """The API domain the sim answers as (its own URL unless configured), as tokens report it."""
    if state.config.api_domain:
        return state.config.api_domain.rstrip("/")
    return request.host_url.rstrip("/") if has_request_context() else DEFAULT_API_DOMAIN


class Notifier:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.channels: dict[str, dict[str, Any]] = {}
        self.deliveries: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue()
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        self.channels.clear()
        self.deliveries.clear()

    def changed(self, module: str, record_id: str, fields: list[str], operation: str = "edit") -> None:
        """Queue a callback for every live channel watching this module's ``operation``."""
        now = self.state.now()
        resource_uri = f"{_api_domain(self.state)}/crm/v8/{module}"
        for channel in list(self.channels.values()):
            if channel["expiry"] <= now:
                continue
            if f"{module}.{operation}" not in channel["events"] and f"{module}.all" not in channel["events"]:
                continue
            self._queue.put(
                {
                    "url": channel["notify_url"],
                    "body": {
                        "server_time": int(now * 1000),
                        "query_params": {},
                        "module": module,
                        "resource_uri": resource_uri,
                        "ids": [record_id],
                        "affected_fields": [{record_id: fields}] if channel.get("affected") else [],
                        "operation": CALLBACK_OPERATIONS[operation],
                        "channel_id": channel["channel_id"],
                        "token": channel.get("token"),
                    },
                }
            )
        self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="zohosim-notify", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # Each callback on a connection of its own, closed after its answer: no idle keep-alive
        # connection held open to the receiver, whose request thread (and its database
        # connection) would wait on it for as long as this thread lives.
        with httpx.Client(timeout=10, headers={"Connection": "close"}) as http:
            while True:
                item = self._queue.get()
                status: int | None = None
                try:
                    status = http.post(item["url"], json=item["body"]).status_code
                except httpx.HTTPError as exc:
                    logger.warning("notification to %s failed: %s", item["url"], exc)
                self.deliveries.append({**item, "status": status, "at": time.time()})
                self._queue.task_done()

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Until every queued callback went out (tests)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.02)
