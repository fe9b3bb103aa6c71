"""Run the embedded demo: zohosim and the web app, stopped together with Ctrl-C.

`make demo` calls this after migrating and loading the demo data. Every process
gets the same environment, pointing the Zoho client at zohosim.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import FrameType

WEB = os.environ.get("DEMO_WEB_ADDRESS", "127.0.0.1:8000")
ZOHOSIM_PORT = os.environ.get("DEMO_ZOHOSIM_PORT", "8765")


def demo_environment() -> dict[str, str]:
    sim = f"http://127.0.0.1:{ZOHOSIM_PORT}"
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for name in ("ZOHO_ACCOUNTS_URL", "ZOHO_API_DOMAIN", "ZOHO_CAMPAIGNS_URL"):
        env.setdefault(name, sim)
    env.setdefault("ZOHO_CLIENT_ID", "zohosim-client")
    env.setdefault("ZOHO_CLIENT_SECRET", "zohosim-secret")
    env.setdefault("ZOHO_REFRESH_TOKEN", "zohosim-refresh-token")
    return env


def processes() -> list[tuple[str, list[str]]]:
    python = sys.executable
    return [
        ("zohosim", [python, "-m", "zohosim", "--host", "127.0.0.1", "--port", ZOHOSIM_PORT]),
        ("web", [python, "-m", "gunicorn", "config.wsgi", "--workers", "2", "--bind", WEB, "--access-logfile", "-"]),
    ]


def main() -> int:
    env = demo_environment()
    running: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, command in processes():
        running.append((name, subprocess.Popen(command, env=env)))  # noqa: S603 - our own interpreter
        print(f"[demo] started {name}: {' '.join(command[1:])}", flush=True)
    print(f"[demo] Consent Desk on http://{WEB}/  (zohosim on http://127.0.0.1:{ZOHOSIM_PORT}/) - Ctrl-C stops all", flush=True)
    exit_code = 0
    while not stopping:
        for name, process in running:
            if process.poll() is not None:
                print(f"[demo] {name} exited with {process.returncode}; stopping the rest", flush=True)
                exit_code = process.returncode or 1
                stopping = True
        time.sleep(0.5)
    for _, process in running:
        if process.poll() is None:
            process.terminate()
    for _, process in running:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
