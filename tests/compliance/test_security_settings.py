"""Production settings: check --deploy, the refusal without SECRET_KEY, CSP, no-store, the schema behind login."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from compliance import services
from config.logs import MaskPersonalData

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
# The production settings README.md's "Production" section documents.
PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "consent.example.com",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_PROXY_SSL_HEADER": "true",
    "ERASURE_SUPPRESSION_SECRETS": "a-suppression-secret-of-its-own-0123456789",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: value for key, value in os.environ.items() if key not in PRODUCTION and key != "SECRET_KEY"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_with_the_documented_production_settings() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={**PRODUCTION, "SECRET_KEY": secrets.token_urlsafe(50)},
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_what_is_missing_without_them() -> None:
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env={"SECRET_KEY": secrets.token_urlsafe(50)}
    )

    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016", "compliance.W010"):
        assert warning in result.stderr


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off() -> None:
    result = manage("check", env={"DEBUG": "false"})

    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_debug_run_starts_without_a_secret_key() -> None:
    assert manage("check", env={"DEBUG": "true"}).returncode == 0


def test_pages_send_a_csp_without_inline_scripts_and_no_store(client_for, officer) -> None:
    response = client_for(officer).get(reverse("workbench:overview"))

    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response["Cache-Control"] == "no-store"


@pytest.fixture
def contact_id(decide) -> int:
    identity = services.ContactIdentity(email="csp@example.com", first_name="Cleo", last_name="Sandoval")
    return services.consent_ingest(identity=identity, decision=decide()).event.contact_id


@pytest.mark.parametrize(
    ("url_name", "kwargs"),
    [("workbench:overview", {}), ("compliance:contact_search", {}), ("compliance:access_log", {})],
)
def test_no_page_holds_an_inline_script_or_style(client_for, admin_user, url_name, kwargs) -> None:
    response = client_for(admin_user).get(reverse(url_name, kwargs=kwargs), {"q": "csp"})
    html = response.content.decode()

    assert response.status_code == 200
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert not re.search(r"\son[a-z]+=", html)
    assert not re.search(r"<style|\sstyle=", html)


def test_the_contact_history_is_not_stored_by_caches(client_for, officer, contact_id) -> None:
    response = client_for(officer).get(reverse("compliance:contact_detail", args=[contact_id]))

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"


def test_the_api_answers_with_no_store(client, api_client_and_key) -> None:
    _, key = api_client_and_key

    for path in ("/api/v1/contacts?email=csp@example.com", "/api/v1/no-such-thing"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}")

        assert "no-store" in response["Cache-Control"]


def test_the_schema_and_docs_are_behind_login(client, client_for, officer) -> None:
    assert client.get(reverse("schema")).status_code in {401, 403}
    for name in ("api-docs", "api-redoc"):
        response = client.get(reverse(name))
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("compliance:login"))

    signed_in = client_for(officer)
    assert signed_in.get(reverse("schema")).status_code == 200
    assert signed_in.get(reverse("api-docs")).status_code == 200
    assert signed_in.get(reverse("api-redoc")).status_code == 200


def test_httpx_does_not_log_request_urls() -> None:
    # A CRM search URL carries the person's email address.
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert not logging.getLogger("httpcore").isEnabledFor(logging.INFO)


def test_mail_addresses_are_masked_in_every_log_line() -> None:
    [handler] = [
        h for h in logging.getLogger().handlers if isinstance(h.filters and h.filters[0], MaskPersonalData)
    ]
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        logging.getLogger("sync.push").warning("pushed %s and %s", "Anna.Schmidt@example.com", "b@x.org")
    finally:
        handler.setStream(sys.stderr)  # type: ignore[attr-defined]

    assert stream.getvalue().strip() == "pushed A***@***.com and b***@***.org"


def test_numbers_encoded_addresses_and_tracebacks_are_masked_too() -> None:
    [handler] = [
        h for h in logging.getLogger().handlers if isinstance(h.filters and h.filters[0], MaskPersonalData)
    ]
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        logger = logging.getLogger("sync.push")
        logger.warning("sms to %s, then %s", "+4915198765432", "+44 7700 900123")
        logger.warning("GET /crm/v8/Contacts/search?email=anna.schmidt%40example.com&phone=%2B4915198765432")
        logger.warning("at 2026-12-06T04:10:25+00:00, release 1.2.3+20261206, id 12345678")
        try:
            raise ValueError("no CRM record for ben@example.org (+4930123456789)")
        except ValueError:
            logger.exception("push failed")
    finally:
        handler.setStream(sys.stderr)  # type: ignore[attr-defined]

    lines = stream.getvalue()
    assert "sms to +4***32, then +4***23" in lines
    assert "search?email=a***@***.com&phone=+4***32" in lines
    assert "at 2026-12-06T04:10:25+00:00, release 1.2.3+20261206, id 12345678" in lines, "not a number"
    assert "push failed" in lines and "Traceback (most recent call last)" in lines
    assert "ValueError: no CRM record for b***@***.org (+4***89)" in lines
    for value in ("anna.schmidt", "ben@example.org", "4915198765432", "7700 900123", "4930123456789"):
        assert value not in lines


def _json_logs(code: str) -> str:
    """What `code` logs to standard error after django.setup(), LOG_FORMAT=json, in a process of its own."""
    base = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-c", f"import logging, django\ndjango.setup()\n{code}"],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stderr


def test_json_logs_are_one_object_a_line() -> None:
    lines = [
        json.loads(line)
        for line in _json_logs("logging.getLogger('sync').warning('hello %s', 'x@y.com')").splitlines()
    ]
    assert {"level": "WARNING", "logger": "sync", "message": "hello x***@***.com"}.items() <= lines[
        -1
    ].items()


def test_json_logs_mask_a_traceback_too() -> None:
    stderr = _json_logs(
        "try:\n    raise ValueError('no record for ben@example.org')\n"
        "except ValueError:\n    logging.getLogger('sync').exception('push failed')\n"
    )

    line = json.loads(stderr.splitlines()[-1])
    assert line["message"] == "push failed"
    assert "ValueError: no record for b***@***.org" in line["exc_info"]
    assert "ben@example.org" not in stderr


def test_an_api_call_makes_no_session(client, api_client_and_key) -> None:
    _, key = api_client_and_key

    response = client.get("/api/v1/contacts?email=nobody@example.com", HTTP_AUTHORIZATION=f"Bearer {key}")

    assert settings.SESSION_COOKIE_NAME not in response.cookies
