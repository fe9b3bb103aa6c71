"""The overview (home page): its tiles per role, their figures, and the nightly ledger check it reports."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test import Client
from django.urls import reverse

from compliance import ledger_guard
from compliance.models import ConsentEvent, OutboxEntry, VerifyRun
from compliance.services import ledger_seal
from compliance.tallies import consent_day_tally
from compliance.verify_runs import ledger_verify_run
from config.celery import app as celery_app
from sync.alerts import alert_auth
from sync.discrepancies import discrepancy_record
from sync.models import Discrepancy, ZohoCall
from sync.optout_clock import withdrawal_clocks_open
from sync.tallies import callhour_tally

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)  # a Thursday


def text(response) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def call(at: datetime, *, operation: str = "crm.update", failed: bool = False) -> None:
    ZohoCall.objects.create(
        service="crm", operation=operation, method="PUT", path="/crm/v8/Contacts", started_at=at,
        finished_at=at + timedelta(milliseconds=90), duration_ms=90, http_status=500 if failed else 200,
        credits=1, outcome=ZohoCall.Outcome.ERROR if failed else ZohoCall.Outcome.OK,
    )  # fmt: skip


@pytest.fixture
def desk(record):
    """Two purposes with decisions, a withdrawal since Monday whose push failed (permission denied:
    its opt-out clock waits for CRM), a withdrawal of two hours ago the clock has not started yet,
    the calls of 30 days, a seal, an alert."""
    monday = NOW - timedelta(days=3, hours=1)
    weeks_ago = NOW - timedelta(days=21)
    record("ann@example.com", "sms_marketing", "opted_in", at=NOW - timedelta(days=9))
    record("ben@example.com", "sms_marketing", "opted_in", source="web_portal", at=NOW - timedelta(days=2))
    record("cat@example.com", "sms_marketing", "opted_in", at=NOW - timedelta(days=2))
    record("cat@example.com", "phone_marketing", "opted_in", source="customer_service", at=weeks_ago)
    record("dan@example.com", "sms_marketing", "opted_in", at=weeks_ago)
    failing = record("cat@example.com", "phone_marketing", "opted_out", source="customer_service", at=monday)
    OutboxEntry.objects.filter(event=failing).update(processed_at=monday)
    with time_machine.travel(monday + timedelta(minutes=5), tick=False):
        discrepancy_record(
            contact_id=failing.contact_id,
            crm_field="Data_Processing_Basis_Details.Contact_Through_Phone",
            kind=Discrepancy.Kind.PERMISSION_DENIED,
            expected=False,
            actual=True,
        )
        withdrawal_clocks_open()  # the opt-out clock's beat run: cat's withdrawal has its clock
    record("dan@example.com", "sms_marketing", "opted_out", source="email_link", at=NOW - timedelta(hours=2))
    for day in range(1, 31):  # 30 days of 10 calls, one failed: 10 %
        for n in range(10):
            call(NOW - timedelta(days=day, minutes=n), failed=n == 0)
    for n in range(4):  # today: 4 calls, 2 failed
        call(NOW - timedelta(minutes=10 + n), failed=n < 2)
    with time_machine.travel(NOW - timedelta(minutes=40), tick=False):
        ledger_seal()
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        alert_auth(message="Zoho refuses our refresh token (invalid_client).")
    consent_day_tally()
    callhour_tally(now=NOW)


def overview(client: Client) -> object:
    with time_machine.travel(NOW, tick=False):
        return client.get("/")


def test_the_home_page_is_the_overview(client_for, officer):
    response = overview(client_for(officer))

    assert response.status_code == 200
    assert response.resolver_match.view_name == "workbench:overview"
    assert reverse("workbench:overview") == "/"


def test_an_officer_sees_every_tile_with_its_figures(client_for, officer, desk):
    response = overview(client_for(officer))
    html = text(response)

    sms = next(p for p in response.context["purposes"] if p.code == "sms_marketing")
    assert (sms.opted_in, sms.total, round(sms.opt_in_rate, 1)) == (3, 4, 75.0)
    assert '<td class="num opt-in-rate">75.0 %</td>' in html
    changes = {c.source: (c.this_week, c.last_week) for c in response.context["changes"]}
    assert changes == {
        "mobile_app": (1, 1),
        "web_portal": (1, 0),
        "customer_service": (1, 0),
        "email_link": (1, 0),
    }
    withdrawals = response.context["withdrawals"]
    # The opt-out clock: cat's withdrawal waits for CRM (its push failed); dan's has no clock yet.
    assert (withdrawals.waiting_crm, withdrawals.waiting_lists, withdrawals.not_started) == (1, 0, 1)
    assert withdrawals.total == 2 and withdrawals.overdue_count == 0
    assert withdrawals.oldest_at == NOW - timedelta(days=3, hours=1) + timedelta(seconds=1)
    assert '<p class="big withdrawals-total">2</p>' in html
    assert "1 waiting for CRM, 0 for a Campaigns list, 1 just recorded" in html
    assert "Deadline in <strong>1 week, 3 days</strong> (2026-12-14 08:30 UTC, 10 business days)" in html
    assert response.context["discrepancies"].total == 1 and "Permission denied" in html
    rates = response.context["error_rates"]
    assert (rates.today.calls, rates.today.errors, rates.last_30_days.calls, rates.last_30_days.errors) == (
        4, 2, 300, 30,
    )  # fmt: skip
    assert '<p class="big error-rate-today">50.0 %</p>' in html
    assert '<strong class="error-rate-30d">10.0 %</strong>' in html
    assert '<p class="big alerts-total">1</p>' in html and "invalid_client" in html
    assert "Last seal <strong>#1</strong> 40" in html
    assert "The ledger check has not run yet" in html
    for name in ("sync:discrepancy_list", "sync:alert_list", "workbench:trends"):
        assert f'href="{reverse(name)}' in html


def test_the_consent_chart_has_a_title_a_description_and_its_table(client_for, officer, desk):
    html = text(overview(client_for(officer)))

    assert '<svg xmlns="http://www.w3.org/2000/svg" class="chart"' in html
    assert "<title id=" in html and "sms_marketing: 3 of 4 opted in (75.0 %)" in html
    assert '<table class="data chart-table">' in html
    assert "<script" not in html


def test_an_auditor_sees_the_ledger_integrity_and_the_reports_only(client_for, auditor, desk):
    ledger_verify_run()
    html = text(overview(client_for(auditor)))

    assert "Ledger integrity" in html and "verdict-ok" in html
    assert f'href="{reverse("reports:report_list")}"' in html
    for hidden in (
        "Consent now",
        "Withdrawals not yet",
        "Open discrepancies",
        "Zoho error rate",
        "tile-alerts",
    ):
        assert hidden not in html


def test_somebody_without_a_role_is_told_so_and_sees_no_figures(client_for, outsider, desk):
    html = text(overview(client_for(outsider)))

    assert "You hold no role yet" in html
    assert "tile-" not in html


def test_anonymous_people_are_sent_to_log_in(client):
    response = client.get("/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_the_overview_reads_no_consent_event_and_takes_a_fixed_number_of_queries(
    client_for, officer, desk, record, django_assert_max_num_queries
):
    client = client_for(officer)
    overview(client)
    for n in range(30):
        record(f"more{n}@example.com", "sms_marketing", "opted_in", at=NOW - timedelta(hours=1))
    # 23: the call days' stamp among them (compliance/tally_memo.py keeps the days themselves).
    with django_assert_max_num_queries(23) as captured:
        response = overview(client)

    assert response.status_code == 200
    assert response.context["purposes"][0].total >= 0
    scans = [q["sql"] for q in captured.captured_queries if 'FROM "compliance_consentevent"' in q["sql"]]
    # Only the events past the tallies' mark and past the opt-out clock's mark, by primary key.
    assert len(scans) == 2 and all('"compliance_consentevent"."id" >' in scan for scan in scans)


# -- the nightly ledger check ----------------------------------------------------------------------


def test_a_verify_run_records_an_intact_ledger_with_its_counts(desk):
    with time_machine.travel(NOW, tick=False):
        run = ledger_verify_run()

    run.refresh_from_db()
    assert (run.ok, run.events_checked, run.seals_checked, run.problem) == (
        True, ConsentEvent.objects.count(), 1, "",
    )  # fmt: skip
    assert run.started_at == run.finished_at == NOW


def test_a_verify_run_records_the_first_broken_point_and_the_overview_shows_it(client_for, officer, desk):
    target = ConsentEvent.objects.order_by("id")[1]
    ledger_guard.drop(connection)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE compliance_consentevent SET ip_address = '192.0.2.1' WHERE id = %s", [target.pk]
            )
    finally:
        ledger_guard.install(connection)

    run = ledger_verify_run()
    html = text(overview(client_for(officer)))

    assert run.ok is False and f"event {target.pk} was altered" in run.problem
    assert "verdict-broken" in html and f"event {target.pk} was altered" in html
    assert "tile-integrity bad" in html


def test_a_seal_log_that_differs_is_a_broken_verdict(desk, settings, tmp_path):
    unreadable = tmp_path / "seals.log"
    unreadable.write_text("not a seal line\n")
    settings.LEDGER_SEAL_LOG = unreadable

    run = ledger_verify_run()

    assert run.ok is False and "unreadable" in run.problem


def test_a_check_that_stops_with_an_error_is_recorded_as_failed_and_raises(
    client_for, officer, desk, monkeypatch
):
    def lost_connection(**_kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("compliance.verify_runs.ledger_verify", lost_connection)

    with pytest.raises(OperationalError):
        ledger_verify_run()
    run = VerifyRun.objects.get()
    html = text(overview(client_for(officer)))

    assert run.ok is None and run.finished_at is not None
    assert "OperationalError: server closed the connection" in run.problem
    assert "The last check failed to run" in html


def test_beat_task_runs_the_check_and_records_it(desk):
    celery_app.loader.import_default_modules()  # what a worker does when it starts
    result = celery_app.tasks["workbench.verify_ledger"].apply()

    assert result.get() is True
    assert VerifyRun.objects.get().ok is True


def _verify_in_a_daemon(answer) -> None:
    from django.db import connections

    from compliance import verification

    connections.close_all()  # the parent's connection is the parent's: open one of our own
    forked = []
    in_parallel = verification._verify_in_parallel

    def spy(counters, chunk_size, workers):
        forked.append(workers)
        return in_parallel(counters, chunk_size, workers)

    verification._verify_in_parallel = spy
    try:
        run = ledger_verify_run()
        answer.put((run.ok, run.problem, forked))
    except BaseException as exc:  # the parent asserts on what happened
        answer.put((None, repr(exc), forked))


@pytest.mark.postgres  # the parallel check shares a PostgreSQL snapshot
@pytest.mark.django_db(transaction=True)
def test_the_check_runs_in_parallel_in_a_celery_worker_process(desk, monkeypatch):
    """A prefork worker's processes are daemons (billiard's), which `multiprocessing` forbids
    children: the check forks its workers itself, so the nightly run is as quick as the command."""
    import billiard
    from django.db import connections

    monkeypatch.setattr("compliance.verification.PARALLEL_MIN_EVENTS", 0)  # parallel on a small ledger
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1})
    connections.close_all()
    answer = billiard.Queue()
    process = billiard.Process(target=_verify_in_a_daemon, args=(answer,), daemon=True)
    process.start()
    ok, problem, forked = answer.get(timeout=60)
    process.join(timeout=10)

    assert (ok, problem, forked) == (True, "", [2])
    assert VerifyRun.objects.get().ok is True
