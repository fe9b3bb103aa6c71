"""An auditor, in headless Chromium, requests a report, watches it being made by a real Celery
worker process, downloads it and uploads it to the verify page.

The worker is `celery -A config worker` on a real Redis broker, with the test database and the
test's signing key and report storage: what the web process stores, the worker reads, and back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from reports.models import Report, ReportDownload
from tests.browser import log_in, nav_go
from tests.needs import missing
from tests.reports.conftest import days_ago
from tests.reports.pdfcheck import pyhanko_says_valid

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BROKER_URL = os.environ.get("REPORTS_TEST_BROKER_URL", "redis://127.0.0.1:6379/7")
WORKER_CACHE_URL = os.environ.get("REPORTS_TEST_CACHE_URL", "redis://127.0.0.1:6379/8")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def in_a_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Playwright's sync API keeps an event loop running in this thread, and pyHanko starts its own
    (asyncio.run): call it from another thread, as the web and worker processes do."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def run() -> Any:
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


def _database_url() -> str:
    from django.db import connection

    data = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{data['NAME']}"
    auth = data["USER"] + (f":{data['PASSWORD']}" if data.get("PASSWORD") else "")
    return f"postgres://{auth}@{data['HOST'] or '127.0.0.1'}:{data['PORT'] or 5432}/{data['NAME']}"


@pytest.fixture
def report_worker(
    transactional_db: None, settings: Any, tmp_path: Path, signing_files: Any
) -> Iterator[None]:
    """One real worker; this process (and its live server thread) queues reports on its broker."""
    import redis

    for url in (BROKER_URL, WORKER_CACHE_URL):
        try:
            redis.Redis.from_url(url, socket_connect_timeout=1).flushdb()
        except redis.exceptions.RedisError as exc:
            missing(f"Redis not reachable at {url}: {exc}")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "CELERY_BROKER_URL": BROKER_URL,
        "CACHE_URL": WORKER_CACHE_URL,
        "REPORT_SIGNING_KEY": str(signing_files.key),
        "REPORT_SIGNING_CERT": str(signing_files.certificate),
        "REPORT_SIGNING_CHAIN": str(signing_files.ca),
        "REPORT_STORAGE_DIR": settings.STORAGES["reports"]["OPTIONS"]["location"],
        "REPORT_ORGANISATION": settings.REPORT_ORGANISATION,
        "LEDGER_SEAL_LOG": str(settings.LEDGER_SEAL_LOG),
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "-n",
            "reports-test@%h",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    from config.celery import app

    previous = app.conf.broker_url
    app.conf.broker_url = BROKER_URL
    app._after_fork()  # drop pooled broker connections: the next publish goes to BROKER_URL
    try:
        yield
    finally:
        app.conf.broker_url = previous
        app._after_fork()
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        log.close()


def test_an_auditor_requests_watches_downloads_and_verifies_a_report(
    report_worker, page, auditor, ledger_of, seal, tmp_path, signing_files
):
    for n in range(5):
        ledger_of.record(
            "ana@example.com", ("sms_marketing", "profiling")[n % 2], "opted_in", at=days_ago(9 - n)
        )
    ledger_of.record("ana@example.com", "sms_marketing", "opted_out", at=days_ago(2))
    seal()
    log_in(page, auditor.username)

    nav_go(page, "Reports")
    page.click("text=Request a report")
    page.fill("#id_evidence-email", "ana@example.com")
    page.click("button:has-text('Request the evidence pack')")

    # The report's own page, following the worker without being reloaded by hand.
    page.wait_for_selector("[data-progress-url], .report-ready", timeout=10_000)
    seen = page.inner_text("main")
    assert "Evidence pack" in seen
    page.wait_for_selector(".report-ready", timeout=90_000)
    report = Report.objects.get()
    assert report.status == Report.Status.READY, (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    assert report.percent == 100

    with page.expect_download() as waiting:
        page.click("a.download")
    downloaded = tmp_path / "downloaded.pdf"
    waiting.value.save_as(downloaded)
    assert in_a_thread(pyhanko_says_valid, downloaded, signing_files.ca)
    (download,) = ReportDownload.objects.all()
    assert download.user == auditor and download.report == report and download.ip_address == "127.0.0.1"

    page.goto("/reports/verify/")
    page.set_input_files("#id_file", str(downloaded))
    page.click("button:has-text('Verify')")
    page.wait_for_selector(".verdict")
    assert "passed every check" in page.inner_text(".verdict")
    assert page.locator("table.checks tr.failed").count() == 0

    # The two other kinds, the same way: asked for, made by the worker, downloaded, verified.
    today = datetime.now(UTC).date()
    for button, fields, title in (
        (
            "Request the period report",
            {"#id_period-date_from": str(today - timedelta(days=10)), "#id_period-date_to": str(today)},
            "Period audit report",
        ),
        (
            "Request the sample",
            {"#id_sample-size": "1", "#id_sample-seed": "browser-2026"},
            "Auditor's sample",
        ),
    ):
        page.goto("/reports/new/")
        for selector, value in fields.items():
            page.fill(selector, value)
        page.click(f"button:has-text({button!r})")
        page.wait_for_selector(".report-ready", timeout=90_000)
        assert title in page.inner_text("main")
        with page.expect_download() as waiting:
            page.click("a.download")
        made = tmp_path / f"{title[:6]}.pdf"
        waiting.value.save_as(made)
        page.goto("/reports/verify/")
        page.set_input_files("#id_file", str(made))
        page.click("button:has-text('Verify')")
        page.wait_for_selector(".verdict")
        assert "passed every check" in page.inner_text(".verdict"), title
    assert sorted(Report.objects.values_list("kind", flat=True)) == ["evidence", "period", "sample"]
    assert ReportDownload.objects.count() == 3


def test_the_progress_script_shows_phase_and_percentage_as_the_row_changes(
    live_server, page, auditor, ledger_of, transactional_db
):
    """Without a worker: the row is moved by hand, and the page (never reloaded by the test) follows."""
    from playwright.sync_api import expect

    from reports import services
    from reports.scopes import ContactScope

    contact = ledger_of.record("ben@example.com", "sms_marketing", "opted_in", at=days_ago(2)).contact
    report = Report.objects.create(
        kind="evidence",
        scope=ContactScope(contact.pk).as_json(),
        requested_by=auditor,
        phase="Waiting for a worker",
    )
    log_in(page, auditor.username)
    page.goto(report.get_absolute_url())
    assert "Waiting for a worker" in page.inner_text(".progress-box")

    Report.objects.filter(pk=report.pk).update(
        status=Report.Status.RUNNING, phase="Writing events.csv", percent=57
    )
    # Playwright's own polling: the site's CSP (script-src 'self') forbids evaluating strings.
    expect(page.locator(".progress-box .phase")).to_have_text("Writing events.csv")
    expect(page.locator(".progress-box .percent")).to_have_text("57 %")
    expect(page.locator(".progress-box progress")).to_have_attribute("value", "57")

    Report.objects.filter(pk=report.pk).update(status=Report.Status.QUEUED)  # give it back to be made
    in_a_thread(services.report_build, report_id=report.pk)
    page.wait_for_selector(".report-ready", timeout=15_000)


def test_a_report_whose_stored_copy_was_deleted_says_when_and_why_instead_of_a_download(
    live_server, page, auditor, ledger_of, tmp_path
):
    from compliance import services as compliance_services
    from compliance.models import ErasureRequest
    from reports import services
    from reports.scopes import contact_scope

    contact = ledger_of.record("cleo@example.com", "sms_marketing", "opted_in", at=days_ago(2)).contact
    report = Report.objects.create(  # made here, not queued for a worker
        kind="evidence", scope=contact_scope(contact_id=contact.pk).as_json(), requested_by=auditor
    )
    in_a_thread(services.report_build, report_id=report.pk)
    erasure = compliance_services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API).erasure
    log_in(page, auditor.username)

    page.goto(report.get_absolute_url())

    notice = page.inner_text("p.file-deleted")
    assert "Stored copy deleted on" in notice
    assert f"(erasure request {erasure.pk}: the person it names was erased)" in notice
    assert page.locator("a.download").count() == 0
    page.screenshot(path=str(tmp_path / "report-file-deleted.png"), full_page=True)
    page.goto("/reports/")
    assert "Stored copy deleted on" in page.inner_text("table.reports")
    page.screenshot(path=str(tmp_path / "report-list-file-deleted.png"), full_page=True)
