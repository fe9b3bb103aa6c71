"""LiveServer: the app on a real loopback socket in a daemon thread, for tests and benchmarks."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from zohosim.app import create_app
from zohosim.config import SimConfig
from zohosim.state import SimState


class QuietHandler(WSGIRequestHandler):
    """No access log lines on stderr (the call log is at /_sim/calls)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LiveServer:
    """``with LiveServer() as sim: httpx.get(sim.url + ...)``; ``sim.state`` is the live SimState."""

    def __init__(
        self,
        state: SimState | None = None,
        config: SimConfig | dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = create_app(state, config)
        self.state: SimState = self.app.extensions["zohosim"]
        self.host = host
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._port = port

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("LiveServer is not started")
        return f"http://{self.host}:{self._server.server_port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("LiveServer is not started")
        return int(self._server.server_port)

    def start(self) -> LiveServer:
        if self._server is not None:
            return self
        self._server = make_server(
            self.host, self._port, self.app, threaded=True, request_handler=QuietHandler
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="zohosim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
