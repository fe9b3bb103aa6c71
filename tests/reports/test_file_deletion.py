"""Our stored copies of report files (docs/erasure.md, "Logs, caches and files"): an erasure deletes
those of the evidence packs and samples that name the person, the daily sweep those past
REPORT_FILE_RETENTION_DAYS; the rows stay, so copies handed out before still verify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from compliance import services as compliance_services
from compliance.models import Contact, ErasureRequest
from config.celery import app as celery_app
from reports import services
from reports.file_deletion import report_files_sweep
from reports.models import Report, ReportDownload, report_storage
from reports.scopes import contact_scope, period_scope, sample_scope
from reports.tasks import files_sweep
from tests.reports.conftest import days_ago
from tests.reports.test_verify_report import run_verify

pytestmark = pytest.mark.django_db


def make(scope, user) -> Report:
    """A report as the web makes it (queued, then made by the task's service)."""
    return services.report_build(report_id=services.report_request(scope=scope, user=user).pk)


def stored(report: Report) -> bool:
    return report_storage().exists(Report.objects.get(pk=report.pk).file.name)


def erase(contact: Contact, capture) -> ErasureRequest:
    with capture(execute=True):  # what follows the commit: the receivers of `contact_erased`
        return compliance_services.erasure_request(
            contact=contact, channel=ErasureRequest.Channel.API, reason="ticket 9"
        ).erasure


@pytest.fixture
def two_people(ledger_of, seal):
    for email in ("ana@example.com", "ben@example.com"):
        ledger_of.record(email, "sms_marketing", "opted_in", at=days_ago(5), ip="203.0.113.77")
        ledger_of.record(email, "profiling", "opted_in", at=days_ago(4))
    seal()
    return Contact.objects.get(email="ana@example.com"), Contact.objects.get(email="ben@example.com")


def test_an_erasure_deletes_our_copy_of_the_persons_evidence_pack_and_the_handed_out_copy_still_verifies(
    two_people, auditor, client_for, tmp_path, django_capture_on_commit_callbacks
):
    ana, _ben = two_people
    pack = make(contact_scope(email="ana@example.com"), auditor)
    others = make(contact_scope(email="ben@example.com"), auditor)
    period = make(period_scope(date_from=days_ago(10).date(), date_to=days_ago(1).date()), auditor)
    # A period in which the person did not act holds nothing of theirs.
    before = make(period_scope(date_from=days_ago(30).date(), date_to=days_ago(20).date()), auditor)
    client = client_for(auditor)
    handed_out = tmp_path / "auditors-copy.pdf"
    handed_out.write_bytes(
        b"".join(client.get(reverse("reports:report_download", args=[pack.pk])).streaming_content)
    )

    erasure = erase(ana, django_capture_on_commit_callbacks)

    # Our copy is gone; the row says when and why, and keeps what recognises the auditor's copy.
    assert not stored(pack)
    row = Report.objects.get(pk=pack.pk)
    why = f"erasure request {erasure.pk}: the person it names was erased"
    assert row.file_deleted_reason == why
    assert row.file_deleted_at is not None and row.file_deleted_at >= erasure.erased_at
    assert (row.status, row.sha256, row.size, row.seal_hash) == (
        Report.Status.READY,
        pack.sha256,
        pack.size,
        pack.seal_hash,
    )
    # The period report holds everyone who acted in the period, the person too: our copy goes. A
    # period without them and another person's pack are kept.
    assert not stored(period)
    assert Report.objects.get(pk=period.pk).file_deleted_reason == (
        f"erasure request {erasure.pk}: the person who acted in its period was erased"
    )
    assert stored(before) and stored(others)
    assert Report.objects.filter(file_deleted_at__isnull=False).count() == 2

    # The download is gone for good, and nothing was handed out, so nothing is logged.
    answer = client.get(reverse("reports:report_download", args=[pack.pk]))
    assert answer.status_code == 410
    assert answer.content.decode() == row.file_deleted_text
    assert answer.content.decode().startswith(
        f"Stored copy deleted on {row.file_deleted_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    assert why in answer.content.decode()
    assert ReportDownload.objects.filter(report=pack).count() == 1

    # The pages say so in place of the download button.
    detail = client.get(pack.get_absolute_url()).content.decode()
    assert row.file_deleted_text in detail and 'class="button download"' not in detail
    assert "Copies handed out before still verify" in detail
    assert row.file_deleted_text in client.get(reverse("reports:report_list")).content.decode()
    kept = client.get(others.get_absolute_url()).content.decode()
    assert 'class="button download"' in kept and "Stored copy deleted" not in kept

    # The auditor's copy, downloaded before, still verifies: erased since, not changed.
    code, out = run_verify(handed_out)
    assert code == 0, out
    assert "VALID: report" in out
    assert "Erased since (the events still verify):" in out
    assert row.file_deleted_text in out


def test_a_sample_naming_the_person_goes_too_and_a_pack_made_after_the_erasure_stays(
    two_people, auditor, django_capture_on_commit_callbacks
):
    ana, _ben = two_people
    sample = make(sample_scope(size=2, seed="audit-q4"), auditor)
    assert sorted(sample.contact_ids) == sorted(c.pk for c in two_people)

    erasure = erase(ana, django_capture_on_commit_callbacks)
    after = make(contact_scope(contact_id=ana.pk), auditor)  # holds nothing of theirs any more

    assert not stored(sample)
    assert Report.objects.get(pk=sample.pk).file_deleted_reason == (
        f"erasure request {erasure.pk}: the person it names was erased"
    )
    assert after.status == Report.Status.READY and stored(after)
    assert report_files_sweep() == {"erased": 0, "retention": 0}  # idempotent
    assert stored(after)


def test_the_sweep_finishes_a_deletion_the_erasure_missed_and_a_file_already_gone_is_fine(
    two_people, auditor
):
    ana, _ben = two_people
    pack = make(contact_scope(email="ana@example.com"), auditor)
    period = make(period_scope(date_from=days_ago(10).date(), date_to=days_ago(1).date()), auditor)
    report_storage().delete(pack.file.name)  # as a crash after the deletion would leave it
    # Erased without its receivers running (a process that died right after the commit).
    erasure = compliance_services.erasure_request(contact=ana, channel=ErasureRequest.Channel.API).erasure
    assert Report.objects.get(pk=pack.pk).file_deleted_at is None
    assert stored(period)

    assert files_sweep() == {"erased": 2, "retention": 0}

    row = Report.objects.get(pk=pack.pk)
    assert row.file_deleted_reason == f"erasure request {erasure.pk}: the person it names was erased"
    assert not stored(period)
    assert Report.objects.get(pk=period.pk).file_deleted_reason == (
        f"erasure request {erasure.pk}: the person who acted in its period was erased"
    )
    assert files_sweep() == {"erased": 0, "retention": 0}
    assert Report.objects.get(pk=pack.pk).file_deleted_at == row.file_deleted_at


def test_retention_deletes_our_old_copies_and_keeps_the_recent_ones(
    two_people, auditor, settings, client_for
):
    start = datetime.now(UTC)
    old = make(period_scope(date_from=days_ago(10).date(), date_to=days_ago(1).date()), auditor)
    with time_machine.travel(start + timedelta(days=300), tick=False):
        recent = make(contact_scope(email="ben@example.com"), auditor)

    with time_machine.travel(start + timedelta(days=364), tick=False):
        assert files_sweep() == {"erased": 0, "retention": 0}
    with time_machine.travel(start + timedelta(days=366), tick=False):
        assert files_sweep() == {"erased": 0, "retention": 1}
        assert files_sweep() == {"erased": 0, "retention": 0}

    assert not stored(old) and stored(recent)
    row = Report.objects.get(pk=old.pk)
    assert row.file_deleted_reason == "retention: our copies are kept 365 days"
    assert row.sha256 == old.sha256
    assert client_for(auditor).get(reverse("reports:report_download", args=[old.pk])).status_code == 410

    settings.REPORT_FILE_RETENTION_DAYS = 0  # kept for ever
    with time_machine.travel(start + timedelta(days=3000), tick=False):
        assert files_sweep() == {"erased": 0, "retention": 0}
    assert stored(recent)


def test_beat_runs_the_sweep_daily_after_the_retention_erasure(settings):
    celery_app.loader.import_default_modules()  # what a worker does when it starts
    entry = settings.CELERY_BEAT_SCHEDULE["report-files-daily"]
    erasing = settings.CELERY_BEAT_SCHEDULE["retention-daily"]

    assert entry["task"] == "reports.files_sweep" and entry["task"] in celery_app.tasks
    assert entry["schedule"].hour == erasing["schedule"].hour
    assert min(entry["schedule"].minute) > min(erasing["schedule"].minute)


def test_a_deleted_report_refuses_the_same_people_as_before(
    two_people, auditor, client_for, outsider, django_capture_on_commit_callbacks
):
    pack = make(contact_scope(email="ana@example.com"), auditor)
    erase(two_people[0], django_capture_on_commit_callbacks)
    urls = [reverse("reports:report_download", args=[pack.pk]), pack.get_absolute_url()]

    for url in urls:
        assert client_for(outsider).get(url).status_code == 403
        response = Client().get(url)  # signed out
        assert response.status_code == 302 and response["Location"].startswith("/login/")
