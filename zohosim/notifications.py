"""Zoho CRM's Notifications API (``/crm/v8/actions/watch``): channels, and callbacks sent to them.

A channel watches events such as ``Contacts.edit``; every change to a watched record (an API
write, a CRM user's edit, a workflow's reset) posts ``{server_time, query_params, module,
resource_uri, ids, affected_fields, operation, channel_id, token}`` to its ``notify_url``
(zoho-api.md section 6). Callbacks go out from one background thread, in order, so a call that
changes a record never waits for them; each delivery is logged (``state.notifications``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from zohosim.state import SimState

logger = logging.getLogger("zohosim.notifications")

MAX_TOKEN = 50
MAX_EXPIRY_S = 7 * 86_400
DEFAULT_EXPIRY_S = 3600
OPERATIONS = ("create", "edit", "delete", "all")


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
                        "resource_uri": f"/crm/v8/{module}",
                        "ids": [record_id],
                        "affected_fields": [{record_id: fields}] if channel.get("affected") else [],
                        "operation": "update" if operation == "edit" else operation,
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
        with httpx.Client(timeout=10) as http:
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
