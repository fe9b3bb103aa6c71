"""Run the embedded demo: zohosim, the web app, a Celery worker and beat, stopped together with Ctrl-C.

`make demo` calls this after migrating and loading the demo data. Every process
gets the same environment, pointing the Zoho client at zohosim, and the worker and
beat share the embedded broker (SQLAlchemy on a SQLite file under var/).

zohosim starts with the seeds' story: the API user may not edit the email consent
fields (Zoho accepts the write and ignores them) and a workflow rule resets phone
consent after our write; one CRM record per demo contact with an email holds "no
consent". Within minutes SMS changes verify, email and phone ones become
discrepancies with their hints, and after three retries, alerts.
"""

from __future__ import annotations

import json
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
    # zohosim is local: let the demo's first push of 2,000 contacts through quickly,
    # so the seeds' story shows within minutes (production keeps the default of 10/s).
    env.setdefault("ZOHO_RATE_LIMIT_PER_S", "50")
    env.setdefault("CONSENT_VERIFY_DELAY_S", "20")
    # The lifecycle's mails go to files under var/mail; admins read them on /lifecycle/sent-mail/.
    env.setdefault("DEMO_MODE", "true")
    # The demo org has both custom fields: the frequency and the preference-centre link reach CRM.
    env.setdefault("ZOHO_FIELD_FREQUENCY", "Email_Frequency")
    env.setdefault("ZOHO_FIELD_PREFERENCES_URL", "Preferences_URL")
    env.setdefault("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
    env.setdefault("EMAIL_FILE_PATH", os.path.join(env.get("DEMO_VAR_DIR", "var"), "mail"))
    env.setdefault("PUBLIC_BASE_URL", f"http://{WEB}")
    return env


# The seeds' Zoho org (docs/zohosim.md, "Faults").
SEED_FAULTS = {
    "field_no_permission": {
        "fields": ["Email_Opt_Out", "Data_Processing_Basis_Details.Contact_Through_Email"],
        "mode": "silent",
    },
    "workflow_reset": {
        "field": "Data_Processing_Basis_Details.Contact_Through_Phone",
        "value": False,
        "delay_s": 30,
    },
}
NO_CONSENT = {
    "Email_Opt_Out": True,
    "SMS_Opt_In": False,
    "Profiling_Consent": False,
    "Third_Party_Sharing_Consent": False,
    "Data_Processing_Basis_Details": {"Contact_Through_Email": False, "Contact_Through_Phone": False},
}


def seed_document() -> dict[str, object]:
    """CRM records for the demo contacts (found by email on the first push)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from compliance.models import Contact

    contacts = [
        {**NO_CONSENT, "First_Name": first, "Last_Name": last or "Unknown", "Email": email}
        for first, last, email in Contact.objects.filter(email__isnull=False).values_list(
            "first_name", "last_name", "email"
        )
    ]
    return {"contacts": contacts}


def zohosim_prepare(sim_url: str, seed_file: str) -> None:
    """Wait for zohosim, then set the seeds' faults (the records come with --seed-file)."""
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.put(f"{sim_url}/_sim/faults", json=SEED_FAULTS, timeout=5).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def processes(seed_file: str | None = None) -> list[tuple[str, list[str]]]:
    python = sys.executable
    return [
        (
            "zohosim",
            [python, "-m", "zohosim", "--host", "127.0.0.1", "--port", ZOHOSIM_PORT]
            + (["--seed-file", seed_file] if seed_file else []),
        ),
        (
            "web",
            [
                python,
                "-m",
                "gunicorn",
                "config.wsgi",
                "--workers",
                "2",
                "--bind",
                WEB,
                "--access-logfile",
                "-",
                # The path without its query string, and no referrer: a search's terms are personal data.
                "--access-logformat",
                '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s "%(a)s"',
            ],
        ),
        (
            "worker",
            [python, "-m", "celery", "-A", "config", "worker", "--concurrency", "2", "--loglevel", "INFO"],
        ),
        ("beat", [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO"]),
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
    seed_file = os.path.join(env.get("DEMO_VAR_DIR", "var"), "zohosim-seed.json")
    with open(seed_file, "w") as handle:
        json.dump(seed_document(), handle)
    for name, command in processes(seed_file):
        running.append((name, subprocess.Popen(command, env=env)))  # noqa: S603 - our own interpreter
        print(f"[demo] started {name}: {' '.join(command[1:])}", flush=True)
    zohosim_prepare(f"http://127.0.0.1:{ZOHOSIM_PORT}", seed_file)
    print(
        f"[demo] Consent Desk on http://{WEB}/  (zohosim on http://127.0.0.1:{ZOHOSIM_PORT}/) - Ctrl-C stops all",
        flush=True,
    )
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
