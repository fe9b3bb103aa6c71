"""The report pages: who may reach each, the request form's errors, progress, downloads and their
log, the verify page and the root certificate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from compliance.models import AccessLog
from reports import services
from reports.models import Report, ReportDownload, report_storage
from reports.scopes import contact_scope, period_scope
from tests.reports.conftest import days_ago

pytestmark = pytest.mark.django_db


def today():
    return datetime.now(UTC).date()


@pytest.fixture
def ready_report(ledger_of, seal, auditor):
    ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=days_ago(3))
    seal()
    scope = period_scope(date_from=today() - timedelta(days=7), date_to=today())
    report = services.report_request(
        scope=scope, user=auditor
    )  # queued: this test's transaction never commits
    return services.report_build(report_id=report.pk)


def report_urls(report: Report) -> dict[str, str]:
    return {
        "list": reverse("reports:report_list"),
        "new": reverse("reports:report_new"),
        "detail": reverse("reports:report_detail", args=[report.pk]),
        "progress": reverse("reports:report_progress", args=[report.pk]),
        "download": reverse("reports:report_download", args=[report.pk]),
    }


OPEN_TO_ANY_SIGNED_IN = ("reports:verify", "reports:trust_root")


def test_every_reports_page_sends_the_anonymous_to_sign_in(ready_report):
    urls = [*report_urls(ready_report).values(), reverse("reports:download_list")]
    urls += [reverse(name) for name in OPEN_TO_ANY_SIGNED_IN]
    for url in urls:
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert Client().post(reverse("reports:report_request", args=["period"])).status_code == 302


def test_an_api_key_reaches_no_reports_page(ready_report, api_client_and_key):
    _client, key = api_client_and_key
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    urls = [*report_urls(ready_report).values(), reverse("reports:download_list")]
    urls += [reverse(name) for name in OPEN_TO_ANY_SIGNED_IN]
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url
    assert not ReportDownload.objects.exists()


def test_a_person_without_a_reports_role_is_refused_but_may_verify(ready_report, client_for, outsider):
    client = client_for(outsider)
    for name, url in report_urls(ready_report).items():
        assert client.get(url).status_code == 403, name
    assert client.post(reverse("reports:report_request", args=["period"]), {}).status_code == 403
    assert client.get(reverse("reports:download_list")).status_code == 403
    for name in OPEN_TO_ANY_SIGNED_IN:
        assert client.get(reverse(name)).status_code == 200, name
    assert not ReportDownload.objects.exists()


@pytest.mark.parametrize("who", ["auditor", "admin_user", "officer"])
def test_auditors_admins_and_officers_request_read_and_download_reports(
    ready_report, client_for, who, request
):
    user = request.getfixturevalue(who)
    client = client_for(user)
    for name, url in report_urls(ready_report).items():
        assert client.get(url).status_code == 200, name
    response = client.post(
        reverse("reports:report_request", args=["period"]),
        {"period-date_from": str(today() - timedelta(days=3)), "period-date_to": str(today())},
    )
    assert response.status_code == 302
    assert Report.objects.filter(requested_by=user).exists()


@pytest.mark.parametrize("who, allowed", [("officer", True), ("admin_user", True), ("auditor", False)])
def test_the_download_log_is_shown_to_officers_and_admins(
    ready_report, client_for, who, allowed, request, auditor
):
    client_for(auditor).get(reverse("reports:report_download", args=[ready_report.pk]))
    client = client_for(request.getfixturevalue(who))

    log = client.get(reverse("reports:download_list"))
    detail = client.get(reverse("reports:report_detail", args=[ready_report.pk]))

    assert log.status_code == (200 if allowed else 403)
    shown = (
        "arthur-auditor" in detail.content.decode().split("<h2>Downloads")[-1]
        and "<h2>Downloads" in detail.content.decode()
    )
    assert shown == allowed
    if allowed:
        assert "arthur-auditor" in log.content.decode()
        assert "127.0.0.1" in log.content.decode()


def test_a_download_is_the_stored_file_and_is_logged_with_user_time_and_ip(ready_report, client_for, auditor):
    client = client_for(auditor)

    response = client.get(
        reverse("reports:report_download", args=[ready_report.pk]), REMOTE_ADDR="203.0.113.9"
    )

    body = b"".join(response.streaming_content)
    with report_storage().open(ready_report.file.name, "rb") as stored:
        assert body == stored.read()
    assert response["Content-Type"] == "application/pdf"
    assert ready_report.filename in response["Content-Disposition"]
    (download,) = ReportDownload.objects.all()
    assert (download.user, download.report_id, download.ip_address) == (
        auditor,
        ready_report.pk,
        "203.0.113.9",
    )
    assert abs(download.downloaded_at - datetime.now(UTC)) < timedelta(minutes=1)
    # The access log of personal data read records it too.
    (entry,) = AccessLog.objects.filter(kind=AccessLog.Kind.REPORT_DOWNLOAD)
    assert (entry.user, entry.ip) == (auditor, "203.0.113.9")
    assert entry.detail == f"report {ready_report.pk} (Period audit report)"
    assert entry.contact_count == 0  # a period report names no one


def test_downloading_an_evidence_pack_logs_access_to_that_persons_data(client_for, auditor, ledger_of, seal):
    event = ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=days_ago(3))
    seal()
    report = services.report_request(scope=contact_scope(email="ana@example.com"), user=auditor)
    services.report_build(report_id=report.pk)

    client_for(auditor).get(reverse("reports:report_download", args=[report.pk]))

    (entry,) = AccessLog.objects.filter(kind=AccessLog.Kind.REPORT_DOWNLOAD)
    assert list(entry.contacts.values_list("contact_id", flat=True)) == [event.contact_id]


def test_the_list_shows_scope_requester_size_and_sha256(ready_report, client_for, auditor):
    page = client_for(auditor).get(reverse("reports:report_list")).content.decode()

    assert "Period audit report" in page
    assert f"from {today() - timedelta(days=7)} to {today()}" in page
    assert "arthur-auditor" in page
    assert ready_report.sha256 in page
    assert "KB" in page  # the size, human-readable


@pytest.mark.parametrize(
    "date_from, date_to, error",
    [
        (lambda: today() - timedelta(days=1), lambda: today() - timedelta(days=4), "before it starts"),
        (lambda: today(), lambda: today() + timedelta(days=2), "ends in the future"),
        (lambda: today() - timedelta(days=4000), lambda: today(), "a report covers at most 3660"),
    ],
    ids=["reversed", "future", "too-long"],
)
def test_a_bad_period_is_a_form_error(client_for, auditor, date_from, date_to, error):
    response = client_for(auditor).post(
        reverse("reports:report_request", args=["period"]),
        {"period-date_from": str(date_from()), "period-date_to": str(date_to())},
    )

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not Report.objects.exists()


def test_an_unknown_person_is_a_form_error(client_for, auditor, policy):
    response = client_for(auditor).post(
        reverse("reports:report_request", args=["evidence"]), {"evidence-email": "nobody@example.com"}
    )

    assert response.status_code == 200
    assert "No contact has the email address nobody@example.com" in response.content.decode()
    assert not Report.objects.exists()


def test_a_requested_report_shows_its_progress_then_its_download(client_for, auditor, ledger_of, seal):
    ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=days_ago(3))
    seal()
    client = client_for(auditor)

    response = client.post(
        reverse("reports:report_request", args=["evidence"]), {"evidence-email": "ana@example.com"}
    )
    report = Report.objects.get()
    page = client.get(response["Location"]).content.decode()
    progress = client.get(reverse("reports:report_progress", args=[report.pk])).json()

    assert response["Location"] == report.get_absolute_url()
    assert 'data-progress-url="' + reverse("reports:report_progress", args=[report.pk]) in page
    assert '<script src="/static/reports/progress.js" defer></script>' in page
    assert '<noscript><meta http-equiv="refresh" content="3"></noscript>' in page  # without JavaScript
    assert progress == {
        "status": "queued", "status_label": "Queued", "phase": "Waiting for a worker", "percent": 0,
        "error": "", "finished": False,
    }  # fmt: skip

    services.report_build(report_id=report.pk)

    page = client.get(report.get_absolute_url()).content.decode()
    assert "Download the signed PDF" in page and "refresh" not in page
    assert client.get(reverse("reports:report_progress", args=[report.pk])).json()["finished"] is True


def test_without_a_signing_key_the_pages_say_so_and_the_report_fails_with_the_reason(
    client_for, auditor, settings, ledger_of
):
    settings.REPORT_SIGNING_KEY = settings.REPORT_SIGNING_CERT = settings.REPORT_SIGNING_CHAIN = ""
    ledger_of.record("ana@example.com", "sms_marketing", "opted_in", at=days_ago(3))
    client = client_for(auditor)

    assert (
        "No report signing key is configured" in client.get(reverse("reports:report_list")).content.decode()
    )
    assert "No report signing key is configured" in client.get(reverse("reports:report_new")).content.decode()
    client.post(reverse("reports:report_request", args=["evidence"]), {"evidence-email": "ana@example.com"})
    report = Report.objects.get()
    with pytest.raises(services.ReportFailed):
        services.report_build(report_id=report.pk)
    page = client.get(report.get_absolute_url()).content.decode()
    assert "No report was made." in page and "No report signing key is configured" in page
    assert client.get(reverse("reports:report_download", args=[report.pk])).status_code == 404


def test_the_verify_page_gives_a_verdict_for_a_good_a_changed_and_a_non_pdf_file(
    ready_report, client_for, outsider
):
    client = client_for(outsider)  # anyone signed in
    with report_storage().open(ready_report.file.name, "rb") as stored:
        good = stored.read()
    changed = bytearray(good)
    changed[len(good) // 3] ^= 0x01

    valid = client.post(reverse("reports:verify"), {"file": _upload("report.pdf", good)})
    invalid = client.post(reverse("reports:verify"), {"file": _upload("changed.pdf", bytes(changed))})
    not_pdf = client.post(reverse("reports:verify"), {"file": _upload("notes.txt", b"just some notes")})

    assert valid.status_code == 200 and "passed every check" in valid.content.decode()
    assert invalid.status_code == 200 and "Invalid." in invalid.content.decode()
    assert 'class="failed check-signature"' in invalid.content.decode()
    assert not_pdf.status_code == 400 and "this file is not a PDF" in not_pdf.content.decode()


def test_the_verify_page_refuses_a_file_over_the_limit_with_a_clear_verdict(client_for, auditor, settings):
    settings.REPORT_UPLOAD_MAX_BYTES = 1000

    response = client_for(auditor).post(
        reverse("reports:verify"), {"file": _upload("big.pdf", b"%PDF-1.7\n" + b"0" * 2000)}
    )

    assert response.status_code == 413
    assert "larger than 1000" in response.content.decode() and "verify_report" in response.content.decode()


def test_the_verify_page_without_a_file_asks_for_one(client_for, auditor):
    response = client_for(auditor).post(reverse("reports:verify"), {})

    assert response.status_code == 400
    assert "Choose a PDF file" in response.content.decode()


def test_the_root_certificate_is_offered_for_pinning(client_for, auditor, signing_files, settings):
    response = client_for(auditor).get(reverse("reports:trust_root"))

    assert response.status_code == 200
    assert response.content.decode().strip() == signing_files.ca.read_text().strip()
    settings.REPORT_SIGNING_CHAIN = ""
    assert client_for(auditor).get(reverse("reports:trust_root")).status_code == 404


def test_the_auditors_home_page_leads_to_reports_and_verification(client_for, auditor, outsider):
    page = client_for(auditor).get(reverse("workbench:overview")).content.decode()
    assert (
        f'href="{reverse("reports:report_list")}"' in page and f'href="{reverse("reports:verify")}"' in page
    )

    page = client_for(outsider).get(reverse("workbench:overview")).content.decode()
    assert (
        f'href="{reverse("reports:report_list")}"' not in page
        and f'href="{reverse("reports:verify")}"' in page
    )


def _upload(name: str, content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content, content_type="application/pdf")
