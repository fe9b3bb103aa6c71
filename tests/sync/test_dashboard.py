"""The sync pages: alert banner, discrepancy dashboard and detail, health, alerts, and the admin's fixes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from config.celery import app as celery_app
from sync import quota
from sync.alerts import alert_auth, alert_retries_exhausted
from sync.discrepancies import HINTS, discrepancy_record
from sync.models import Alert, CallHour, Discrepancy, ReconciliationRun, SyncPush, ZohoCall
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.tallies import callhour_tally
from sync.verify import discrepancies_retry_due, pushes_verify_due

pytestmark = pytest.mark.django_db

PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"
EMAIL_OPT_OUT = "Email_Opt_Out"
NOON = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
API_USER = {"id": "5725767000000000001", "name": "Consent Desk API"}
WORKFLOW_USER = {"id": "5725767000000000002", "name": "Workflow Rules", "email": "wf@example.com"}

PAGES = [
    ("get", "sync:discrepancy_list", False),
    ("get", "sync:discrepancy_detail", True),
    ("get", "sync:health", False),
    ("get", "sync:alert_list", False),
]
ACTIONS = [
    ("post", "sync:discrepancy_retry", True),
    ("post", "sync:discrepancy_resolve", True),
    ("post", "sync:alert_acknowledge", "alert"),
]


def overwritten(contact: Any, *, crm_field: str = PHONE, retry: bool = True) -> Discrepancy:
    """What verify records when a workflow reset the field after our write."""
    return discrepancy_record(
        contact_id=contact.pk,
        crm_field=crm_field,
        kind=Discrepancy.Kind.OVERWRITTEN,
        zoho_id=contact.zoho_id or "5725767000000412001",
        expected=True,
        actual=False,
        evidence={
            "push": 41,
            "sent": {crm_field: True, "SMS_Opt_In": False},
            "zoho_answer": {"code": "SUCCESS", "status": "success", "message": "record updated"},
            "readback": {crm_field: False},
            "Modified_By": WORKFLOW_USER,
            "Modified_Time": "2026-06-01T12:29:41+00:00",
        },
        hint=HINTS[Discrepancy.Kind.OVERWRITTEN].format(field=crm_field),
        retry=retry,
    ).discrepancy


@pytest.fixture
def rosa(ledger: Any) -> Any:
    return ledger.change("rosa@example.com", "phone_marketing", "opted_in", zoho_id="5725767000000412001")


@pytest.fixture
def discrepancy(rosa: Any) -> Discrepancy:
    return overwritten(rosa)


@pytest.fixture
def alert(discrepancy: Discrepancy) -> Alert:
    found = alert_retries_exhausted(discrepancy=discrepancy)
    assert found is not None
    return found


def url_for(name: str, needs: Any, discrepancy: Discrepancy, alert: Alert) -> str:
    if needs == "alert":
        return reverse(name, args=[alert.pk])
    return reverse(name, args=[discrepancy.pk]) if needs else reverse(name)


# -- who may see and do what ---------------------------------------------------------------------


@pytest.mark.parametrize(("method", "name", "needs"), PAGES + ACTIONS)
def test_anonymous_people_are_sent_to_log_in(client: Client, discrepancy, alert, method, name, needs):
    url = url_for(name, needs, discrepancy, alert)

    response = getattr(client, method)(url, {"note": "fixed"} if method == "post" else {})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("compliance:login"))


@pytest.mark.parametrize("who", ["auditor", "outsider"])
@pytest.mark.parametrize(("method", "name", "needs"), PAGES + ACTIONS)
def test_auditors_and_outsiders_are_refused(
    request, client_for, discrepancy, alert, who, method, name, needs
):
    client = client_for(request.getfixturevalue(who))

    response = getattr(client, method)(url_for(name, needs, discrepancy, alert), {"note": "fixed"})

    assert response.status_code == 403
    discrepancy.refresh_from_db()
    alert.refresh_from_db()
    assert discrepancy.status == Discrepancy.Status.OPEN and alert.acknowledged_at is None


@pytest.mark.parametrize("name", ["sync:discrepancy_retry", "sync:discrepancy_resolve"])
def test_officers_may_not_retry_or_resolve_a_discrepancy(client_for, officer, discrepancy, name):
    before = discrepancy.next_retry_at

    response = client_for(officer).post(reverse(name, args=[discrepancy.pk]), {"note": "looks fine"})

    assert response.status_code == 403
    discrepancy.refresh_from_db()
    assert discrepancy.status == Discrepancy.Status.OPEN
    assert discrepancy.next_retry_at == before and discrepancy.resolution == ""


@pytest.mark.parametrize("who", ["officer", "admin_user"])
@pytest.mark.parametrize(("method", "name", "needs"), PAGES)
def test_officers_and_admins_see_every_sync_page(
    request, client_for, discrepancy, alert, who, method, name, needs
):
    response = client_for(request.getfixturevalue(who)).get(url_for(name, needs, discrepancy, alert))

    assert response.status_code == 200


def test_the_navigation_offers_the_sync_pages_only_to_those_who_may_see_them(client_for, officer, auditor):
    officer_page = client_for(officer).get(reverse("workbench:overview")).content.decode()
    auditor_page = client_for(auditor).get(reverse("workbench:overview")).content.decode()

    for name, label in [("sync:discrepancy_list", "Discrepancies"), ("sync:health", "Sync health"),
                        ("sync:alert_list", "Alerts")]:  # fmt: skip
        link = f'<a href="{reverse(name)}">{label}</a>'
        assert link in officer_page
        assert link not in auditor_page


# -- the alert banner ------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["officer", "admin_user"])
def test_the_banner_shows_officers_and_admins_the_count_and_the_newest_alert(request, client_for, alert, who):
    alert_auth(message="Zoho refuses our refresh token (invalid_code).\nRe-authorise the self-client.")

    html = client_for(request.getfixturevalue(who)).get(reverse("workbench:overview")).content.decode()

    assert "2 unacknowledged alerts" in html
    assert "Zoho refuses our refresh token (invalid_code)." in html
    assert "Re-authorise" not in html  # only the newest alert's first line
    assert f'href="{reverse("sync:alert_list")}"' in html


def test_auditors_and_anonymous_people_never_see_the_banner(client: Client, client_for, auditor, alert):
    auditor_page = client_for(auditor).get(reverse("workbench:overview")).content.decode()
    login_page = client.get(reverse("compliance:login")).content.decode()

    assert "unacknowledged alert" not in auditor_page
    assert "unacknowledged alert" not in login_page


def test_no_banner_when_every_alert_is_acknowledged(client_for, officer, alert):
    client_for(officer).post(reverse("sync:alert_acknowledge", args=[alert.pk]))

    html = client_for(officer).get(reverse("workbench:overview")).content.decode()

    assert "unacknowledged alert" not in html


def test_the_banner_costs_one_query_on_alerts(client_for, officer, rosa):
    for n in range(5):
        Alert.objects.create(kind=Alert.Kind.THRESHOLD, message=f"{1500 + n} open discrepancies")
    client = client_for(officer)

    with CaptureQueriesContext(connection) as queries:
        html = client.get(reverse("workbench:overview")).content.decode()

    assert "5 unacknowledged alerts" in html
    assert sum('"sync_alert"' in q["sql"] for q in queries.captured_queries) == 1


# -- alerts ---------------------------------------------------------------------------------------


def test_only_one_credentials_alert_is_open_at_a_time_even_when_workers_race():
    first = alert_auth(message="Zoho refuses our refresh token (invalid_code).")
    assert alert_auth(message="again") is None
    # Two workers past the "is one open?" check at once: the database keeps the second out.
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(kind=Alert.Kind.AUTH, message="a racing worker's")
    Alert.objects.filter(pk=first.pk).update(acknowledged_at=timezone.now())
    assert alert_auth(message="refused again after the fix was acknowledged") is not None


def test_the_alert_list_shows_the_message_and_acknowledging_removes_the_banner(client_for, officer, alert):
    client = client_for(officer)
    listing = client.get(reverse("sync:alert_list")).content.decode()

    response = client.post(reverse("sync:alert_acknowledge", args=[alert.pk]), follow=True)

    assert "did not reach Zoho CRM on " + PHONE in listing
    assert "1 unacknowledged alert" in listing
    html = response.content.decode()
    assert "Alert acknowledged." in html
    assert "unacknowledged alert" not in html
    assert "No alert waits for acknowledgement." in html
    alert.refresh_from_db()
    assert alert.acknowledged_by == officer.username and alert.acknowledged_at is not None
    every = client.get(reverse("sync:alert_list"), {"show": "all"}).content.decode()
    assert officer.username in every


def test_acknowledging_twice_says_so_and_keeps_the_first(client_for, officer, admin_user, alert):
    client_for(officer).post(reverse("sync:alert_acknowledge", args=[alert.pk]))

    response = client_for(admin_user).post(reverse("sync:alert_acknowledge", args=[alert.pk]), follow=True)

    assert "already acknowledged by olivia-officer" in response.content.decode()
    alert.refresh_from_db()
    assert alert.acknowledged_by == officer.username


def test_acknowledging_takes_a_post(client_for, officer, alert):
    response = client_for(officer).get(reverse("sync:alert_acknowledge", args=[alert.pk]))

    assert response.status_code == 405
    alert.refresh_from_db()
    assert alert.acknowledged_at is None


# -- the discrepancy dashboard ---------------------------------------------------------------------


@pytest.fixture
def several(ledger: Any) -> list[Discrepancy]:
    """Four open (3 overwritten on the phone field, 1 permission denied on Email_Opt_Out), one resolved."""
    found = []
    for n in range(3):
        contact = ledger.change(
            f"p{n}@example.com", "phone_marketing", "opted_in", zoho_id=f"57257670000001{n}"
        )
        found.append(overwritten(contact))
    contact = ledger.change("mute@example.com", "email_marketing", "opted_out", zoho_id="5725767000000199")
    found.append(
        discrepancy_record(
            contact_id=contact.pk, crm_field=EMAIL_OPT_OUT, kind=Discrepancy.Kind.PERMISSION_DENIED,
            zoho_id="5725767000000199", expected=True, actual=False,
            evidence={"zoho_answer": {"code": "NO_PERMISSION"}},
            hint=HINTS[Discrepancy.Kind.PERMISSION_DENIED].format(field=EMAIL_OPT_OUT),
        ).discrepancy
    )  # fmt: skip
    contact = ledger.change("gone@example.com", "sms_marketing", "opted_in", zoho_id="5725767000000198")
    gone = discrepancy_record(
        contact_id=contact.pk, crm_field="", kind=Discrepancy.Kind.RECORD_MISSING, zoho_id="5725767000000198"
    ).discrepancy
    Discrepancy.objects.filter(pk=gone.pk).update(status=Discrepancy.Status.RESOLVED, resolution="relinked")
    found.append(gone)
    return found


def test_the_dashboard_counts_open_discrepancies_by_kind_and_by_field(client_for, officer, several):
    response = client_for(officer).get(reverse("sync:discrepancy_list"))

    counts = response.context["counts"]
    assert counts.total == 4
    assert [(t.label, t.count) for t in counts.by_kind] == [
        ("Overwritten after our write", 3),
        ("Permission denied", 1),
    ]
    assert [(t.key, t.count) for t in counts.by_field] == [(PHONE, 3), (EMAIL_OPT_OUT, 1)]
    html = response.content.decode()
    assert "4 open" in html and "Overwritten after our write" in html


def test_the_list_shows_open_ones_newest_first_by_default(client_for, officer, several):
    response = client_for(officer).get(reverse("sync:discrepancy_list"))

    shown = [row.record.pk for row in response.context["table"].page.object_list]
    assert shown == [d.pk for d in reversed(several[:4])]
    html = response.content.decode()
    assert "mute@example.com" in html  # the contact, linked to its history
    assert several[3].contact.get_absolute_url() in html
    assert reverse("sync:discrepancy_detail", args=[several[3].pk]) in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status": "resolved"}, [4]),
        ({"status": "", "kind": "record_missing"}, [4]),
        ({"kind": "permission_denied"}, [3]),
        ({"field": PHONE}, [2, 1, 0]),
        ({"status": "", "field": ""}, [4]),  # record-level ones
        ({"status": ""}, [4, 3, 2, 1, 0]),
    ],
)
def test_the_list_filters_by_status_kind_and_field(client_for, officer, several, query, expected):
    response = client_for(officer).get(reverse("sync:discrepancy_list"), query)

    assert [row.record.pk for row in response.context["table"].page.object_list] == [
        several[i].pk for i in expected
    ]


def test_the_list_is_paginated_without_a_query_per_row(
    client_for, officer, ledger, django_assert_max_num_queries
):
    for n in range(30):
        contact = ledger.change(
            f"many{n}@example.com", "phone_marketing", "opted_in", zoho_id=f"5725767{n:06}"
        )
        overwritten(contact)
    client = client_for(officer)
    client.get(reverse("sync:discrepancy_list"))  # the session and permissions are warm, as in use

    # 4 for the session, user and permissions, 1 the banner, 1 the filter's fields, 2 the tallies,
    # 2 the page and its count; none per row (25 rows shown).
    with django_assert_max_num_queries(11):
        first = client.get(reverse("sync:discrepancy_list"))
    second = client.get(reverse("sync:discrepancy_list"), {"status": "open", "page": 2})

    assert len(first.context["table"].page.object_list) == 25
    assert len(second.context["table"].page.object_list) == 5
    assert "many0@example.com" in second.content.decode()
    assert "page=2" in first.content.decode()


def test_the_detail_shows_the_evidence_and_links_to_the_contact_history(
    client_for, officer, rosa, discrepancy
):
    html = client_for(officer).get(reverse("sync:discrepancy_detail", args=[discrepancy.pk])).content.decode()

    assert "Overwritten after our write" in html
    assert "check workflow rules on " + PHONE in html  # the hint
    assert "What we sent" in html and f"&quot;{PHONE}&quot;: true" in html
    assert "Zoho&#x27;s answer" in html and "record updated" in html
    assert "Read-back" in html and f"&quot;{PHONE}&quot;: false" in html
    assert "Workflow Rules wf@example.com (id 5725767000000000002)" in html  # Modified_By
    assert "2026-06-01T12:29:41+00:00" in html  # Modified_Time
    assert "0 of 3" in html  # retries
    assert timezone.localtime(discrepancy.next_retry_at).strftime("%Y-%m-%d %H:%M:%S") in html
    assert f'href="{reverse("compliance:contact_detail", args=[rosa.pk])}"' in html
    assert "Retry now" not in html and "Resolve with a note" not in html  # an officer cannot fix


def test_an_unknown_discrepancy_is_not_found(client_for, officer):
    assert client_for(officer).get(reverse("sync:discrepancy_detail", args=[999999])).status_code == 404


# -- the admin's fixes -------------------------------------------------------------------------------


def test_retry_now_makes_an_exhausted_discrepancy_due_again(client_for, admin_user, discrepancy, settings):
    Discrepancy.objects.filter(pk=discrepancy.pk).update(retries=3, next_retry_at=None)  # given: exhausted
    page = client_for(admin_user).get(reverse("sync:discrepancy_detail", args=[discrepancy.pk])).content

    with time_machine.travel(NOON, tick=False):
        response = client_for(admin_user).post(
            reverse("sync:discrepancy_retry", args=[discrepancy.pk]), follow=True
        )

    assert b"3 of 3 (exhausted)" in page and b"Retry now" in page
    assert "Retry scheduled" in response.content.decode()
    discrepancy.refresh_from_db()
    assert discrepancy.next_retry_at == NOON
    assert discrepancy.retries == settings.SYNC_MAX_RETRIES - 1  # one more retry allowed
    assert discrepancy.status == Discrepancy.Status.OPEN


def test_retry_now_of_a_duplicate_is_refused_with_the_reason(client_for, admin_user, rosa):
    duplicate = discrepancy_record(
        contact_id=rosa.pk, crm_field="", kind=Discrepancy.Kind.DUPLICATE, retry=False,
        hint=HINTS[Discrepancy.Kind.DUPLICATE].format(email=rosa.email),
    ).discrepancy  # fmt: skip

    response = client_for(admin_user).post(
        reverse("sync:discrepancy_retry", args=[duplicate.pk]), follow=True
    )

    assert "is not retried: Several CRM records share rosa@example.com" in response.content.decode()
    duplicate.refresh_from_db()
    assert duplicate.next_retry_at is None


def test_retry_now_lets_the_retry_sweep_push_the_ledger_value_again(
    client_for, admin_user, ledger, crm, zoho, sim, engine_settings, django_capture_on_commit_callbacks
):
    engine_settings.SYNC_MAX_RETRIES = 1
    sim.fault("workflow_reset", field=PHONE, value=False, delay_s=0)
    contact = ledger.change(
        "call@example.com", "phone_marketing", "opted_in", zoho_id=crm("call@example.com")
    )
    with django_capture_on_commit_callbacks(execute=True):
        while claim := outbox_claim(worker="test"):
            outbox_batch_push(claim=claim, zoho=zoho)
        pushes_verify_due(zoho=zoho)
        discrepancies_retry_due(zoho=zoho)
        pushes_verify_due(zoho=zoho)
    discrepancy = Discrepancy.objects.get(contact=contact)
    assert discrepancy.retries == 1 and discrepancy.next_retry_at is None  # exhausted, alerted
    assert discrepancies_retry_due(zoho=zoho).discrepancies == 0
    sim.clear_faults()  # the admin fixed the workflow rule in Zoho

    client_for(admin_user).post(reverse("sync:discrepancy_retry", args=[discrepancy.pk]))
    report = discrepancies_retry_due(zoho=zoho)
    pushes_verify_due(zoho=zoho)

    assert report.discrepancies == 1
    discrepancy.refresh_from_db()
    assert discrepancy.status == Discrepancy.Status.RESOLVED
    assert Alert.objects.filter(discrepancy=discrepancy).count() == 1


def test_resolving_needs_a_note(client_for, admin_user, discrepancy):
    response = client_for(admin_user).post(
        reverse("sync:discrepancy_resolve", args=[discrepancy.pk]), {"note": "   "}
    )

    assert response.status_code == 400
    assert "Write a note saying why this discrepancy is resolved." in response.content.decode()
    discrepancy.refresh_from_db()
    assert discrepancy.status == Discrepancy.Status.OPEN and discrepancy.resolution == ""


def test_resolving_with_a_note_names_the_admin_and_stops_retries(client_for, admin_user, discrepancy):
    response = client_for(admin_user).post(
        reverse("sync:discrepancy_resolve", args=[discrepancy.pk]),
        {"note": "Workflow 'Reset phone consent' disabled; value fixed by hand in Zoho."},
        follow=True,
    )

    discrepancy.refresh_from_db()
    assert discrepancy.status == Discrepancy.Status.RESOLVED
    assert discrepancy.resolution == (
        "Resolved manually by ada-admin: Workflow 'Reset phone consent' disabled; value fixed by hand in Zoho."
    )
    assert discrepancy.next_retry_at is None and discrepancy.resolved_at is not None
    html = response.content.decode()
    assert "Discrepancy resolved." in html and "Resolved manually by ada-admin" in html


def test_a_resolved_discrepancy_cannot_be_resolved_again(client_for, admin_user, discrepancy):
    client = client_for(admin_user)
    url = reverse("sync:discrepancy_resolve", args=[discrepancy.pk])
    client.post(url, {"note": "first"})
    discrepancy.refresh_from_db()
    first = (discrepancy.resolution, discrepancy.resolved_at, discrepancy.updated_at)

    again = client.post(url, {"note": "second"}, follow=True)
    retry = client.post(reverse("sync:discrepancy_retry", args=[discrepancy.pk]), follow=True)

    assert "is already resolved" in again.content.decode()
    assert "Resolved manually by ada-admin: first. Nothing was changed." in again.content.decode()
    assert "is already resolved" in retry.content.decode()
    discrepancy.refresh_from_db()
    assert (discrepancy.resolution, discrepancy.resolved_at, discrepancy.updated_at) == first
    assert discrepancy.next_retry_at is None


# -- the health page -------------------------------------------------------------------------------


def call(
    minutes_ago: float, *, operation: str = "crm.update", status: int = 200, credits: int = 1
) -> ZohoCall:
    started = NOON - timedelta(minutes=minutes_ago)
    error = status >= 400
    return ZohoCall.objects.create(
        service=ZohoCall.Service.CAMPAIGNS if operation.startswith("campaigns") else ZohoCall.Service.CRM,
        operation=operation,
        method="PUT" if operation.endswith("update") else "GET",
        path="/crm/v8/Contacts",
        started_at=started,
        finished_at=started + timedelta(milliseconds=120),
        duration_ms=120,
        http_status=status,
        credits=credits,
        outcome=ZohoCall.Outcome.ERROR if error else ZohoCall.Outcome.OK,
        error="TOO_MANY_REQUESTS" if status == 429 else "",
    )


@pytest.fixture
def fresh_quota(settings):
    settings.ZOHO_DAILY_CREDITS = 1000
    quota.gates_reset()
    yield
    quota.gates_reset()


@pytest.fixture
def traffic(rosa) -> None:
    """Within the 24 h: 9 calls at 12:xx (2 errors: a 429 and a 500), one at 10:00, one at 09:50; one 30 h ago.

    Pushes: five in the window (2 verified, a mismatch, a superseded, a pending), one 30 h ago.
    """
    for minutes in (1, 2, 3, 4, 5, 6):
        call(minutes, credits=2)
    call(7, status=429)
    call(8, operation="crm.get", status=500)
    call(150, operation="crm.get")
    call(160, operation="campaigns.unsubscribe", credits=0)
    call(30 * 60, credits=500)  # outside the window
    pushed = call(1, credits=0)
    in_window, outside = NOON - timedelta(minutes=1), NOON - timedelta(hours=30)
    pushes = [("verified", in_window), ("verified", in_window), ("mismatch", in_window),
              ("superseded", in_window), ("pending", in_window), ("verified", outside)]  # fmt: skip
    for verification, at in pushes:
        with time_machine.travel(at, tick=False):
            SyncPush.objects.create(
                contact=rosa, zoho_id="5725767000000412001", call=pushed, sent={}, ledger_versions={},
                verification=verification,
            )  # fmt: skip
    ReconciliationRun.objects.create(method="coql", records_read=2000, contacts_compared=1990, opened=7)


def test_the_health_page_shows_calls_errors_and_error_rates_per_hour_and_endpoint(
    client_for, officer, traffic, fresh_quota
):
    with time_machine.travel(NOON, tick=False):
        response = client_for(officer).get(reverse("sync:health"))

    health = response.context["health"]
    assert (health.totals.calls, health.totals.errors, health.totals.throttled) == (11, 2, 1)
    by_hour = {h.hour.hour: (h.calls, h.errors, h.throttled) for h in health.hours if h.calls}
    assert by_hour == {12: (9, 2, 1), 10: (1, 0, 0), 9: (1, 0, 0)}
    assert len(health.hours) == 25
    endpoints = {(e.service, e.operation): (e.calls, e.errors, e.throttled) for e in health.endpoints}
    assert endpoints == {
        ("crm", "crm.update"): (8, 1, 1),
        ("crm", "crm.get"): (2, 1, 0),
        ("campaigns", "campaigns.unsubscribe"): (1, 0, 0),
    }
    html = response.content.decode()
    assert '<span class="value error-rate">18.2 %</span>' in html
    assert '<span class="value throttled-total">1</span>' in html
    assert "12.5 %" in html  # crm.update: 1 error in 8 calls
    assert "06-01 12:00" in html


def test_the_health_page_shows_credits_verification_backlog_and_reconciliation(
    client_for, officer, traffic, fresh_quota, ledger
):
    ledger.change("backlog@example.com", "sms_marketing", "opted_out")  # one more pending outbox row

    with time_machine.travel(NOON, tick=False):
        response = client_for(officer).get(reverse("sync:health"))

    health = response.context["health"]
    # The quota's count: CRM calls Zoho charged (not the 429, not the 5xx, not Campaigns).
    assert health.budget["used_24h"] == 6 * 2 + 1
    assert health.budget["daily"] == 1000
    assert {t.key: t.count for t in health.verification} == {
        "pending": 1, "verified": 2, "mismatch": 1, "superseded": 1, "rejected": 0,
    }  # fmt: skip
    assert health.outbox_backlog == 2
    html = response.content.decode()
    assert '<strong class="credits-used">13</strong> of 1000 credits used' in html
    assert '<span class="value outbox-backlog">2</span>' in html
    assert "1990" in html and "coql" in html


@pytest.mark.parametrize("tallied", [False, True], ids=["beat-late", "hours-stored"])
def test_the_health_page_takes_a_fixed_number_of_queries(
    client_for, officer, traffic, fresh_quota, django_assert_max_num_queries, tallied
):
    for minutes in range(200):
        call(minutes % 600, operation=f"crm.op{minutes % 7}")
    client = client_for(officer)
    if tallied:
        callhour_tally(now=NOON)
    with time_machine.travel(NOON, tick=False):
        client.get(reverse("sync:health"))  # (the session's first page)

    # 4 the session, the user and their permissions; 3 the calls (the part-hour at the window's
    # start, the stored hours, the hours counted from the log); 2 the quota; 2 the audit (its
    # last run, the window's runs); 1 each the pushes, the outbox, the reconciliations, the
    # user's roles and the alert banner.
    with time_machine.travel(NOON, tick=False), django_assert_max_num_queries(16):
        response = client.get(reverse("sync:health"))

    assert response.status_code == 200
    assert len(response.context["health"].endpoints) == 10


def figures(health: Any) -> tuple[Any, ...]:
    """What the health page shows of the calls: totals, per hour, per endpoint."""
    return (
        health.totals,
        [(h.hour, h.calls, h.errors, h.throttled) for h in health.hours],
        health.endpoints,
    )


def test_the_page_counts_hours_beat_has_not_stored_from_the_log_and_writes_nothing(
    client_for, officer, traffic, fresh_quota
):
    with time_machine.travel(NOON, tick=False):
        response = client_for(officer).get(reverse("sync:health"))

    health = response.context["health"]
    assert (health.totals.calls, health.totals.errors, health.totals.throttled) == (11, 2, 1)
    assert {h.hour.hour: h.calls for h in health.hours if h.calls} == {12: 9, 10: 1, 9: 1}
    assert not CallHour.objects.exists()


def test_the_tally_stores_each_hour_once_it_is_over_and_the_page_then_reads_it(
    client_for, officer, traffic, fresh_quota
):
    stored = callhour_tally(now=NOON)
    again = callhour_tally(now=NOON)

    # The 743 whole hours of the last 31 days that are over (13:00 31 days ago to 11:00) are
    # stored, an hour without calls as one empty row; 12:00 is still running and is not.
    assert (stored, again) == (31 * 24 - 1, 0)
    assert CallHour.objects.count() == 743
    assert {(h.hour.hour, h.operation, h.calls) for h in CallHour.objects.filter(calls__gt=0)} == {
        (10, "crm.get", 1),
        (9, "campaigns.unsubscribe", 1),
        (6, "crm.update", 1),  # the call 30 h ago
    }

    # When the call log of those hours is gone and a new call is made in this hour
    ZohoCall.objects.filter(started_at__lt=NOON - timedelta(minutes=60)).delete()
    call(0.5)
    with time_machine.travel(NOON, tick=False):
        health = client_for(officer).get(reverse("sync:health")).context["health"]

    # Then the hours that were over come from what was stored, and this hour from the log
    assert health.totals.calls == 12
    assert {h.hour.hour: h.calls for h in health.hours if h.calls} == {12: 10, 10: 1, 9: 1}
    assert CallHour.objects.count() == 743


def test_the_page_shows_the_same_figures_whether_beat_stored_none_some_or_all_hours(
    client_for, officer, traffic, fresh_quota
):
    for minutes in range(0, 1400, 37):
        call(minutes, operation=f"crm.op{minutes % 5}", status=429 if minutes % 3 else 200)
    client = client_for(officer)

    def page() -> tuple[Any, ...]:
        with time_machine.travel(NOON, tick=False):
            return figures(client.get(reverse("sync:health")).context["health"])

    none_stored = page()
    callhour_tally(now=NOON - timedelta(hours=3))  # beat stopped three hours ago
    assert CallHour.objects.exists()
    assert not CallHour.objects.filter(hour__gte=datetime(2026, 6, 1, 9, tzinfo=UTC)).exists()
    some_stored = page()
    callhour_tally(now=NOON)
    all_stored = page()

    assert none_stored == some_stored == all_stored


@pytest.fixture
def month_of_calls(traffic) -> None:
    """`traffic`, and one call (an error) at 08:00 on each of the 40 days before NOON's day."""
    for day in range(1, 41):
        call(day * 24 * 60 + 4 * 60 + 30, operation="crm.coql", status=500)


@pytest.mark.parametrize(
    ("window", "days", "calls", "errors"), [("7d", 8, 11 + 6 + 1, 2 + 6), ("30d", 31, 11 + 29 + 1, 2 + 29)]
)
def test_the_7_and_30_day_windows_show_each_day_and_every_endpoint(
    client_for, officer, month_of_calls, fresh_quota, window, days, calls, errors
):
    with time_machine.travel(NOON, tick=False):
        response = client_for(officer).get(reverse("sync:health"), {"window": window})

    health = response.context["health"]
    assert (health.window, health.per) == (window, "day")
    # One row per UTC day the window touches: its first is a part-day.
    assert len(health.hours) == days
    assert health.hours[-1].hour == datetime(2026, 6, 1, tzinfo=UTC)
    assert (health.totals.calls, health.totals.errors) == (calls, errors)
    # The calls at 08:00 on each whole day before today (the first day's is before 12:30).
    coql = next(e for e in health.endpoints if e.operation == "crm.coql")
    assert (coql.calls, coql.errors) == (days - 2, days - 2)
    html = response.content.decode()
    assert f'<a href="?window={window}" aria-current="page">' in html
    assert "Calls to Zoho per day, last " in html and "<svg" in html
    assert "pushes of the last 24 h" in html


def test_a_long_window_shows_the_same_figures_whether_beat_stored_the_hours_or_not(
    client_for, officer, month_of_calls, fresh_quota
):
    client = client_for(officer)

    def page() -> tuple[Any, ...]:
        with time_machine.travel(NOON, tick=False):
            return figures(client.get(reverse("sync:health"), {"window": "30d"}).context["health"])

    none_stored = page()
    callhour_tally(now=NOON - timedelta(hours=5))  # beat stopped five hours ago
    some_stored = page()
    callhour_tally(now=NOON)
    all_stored = page()

    assert none_stored == some_stored == all_stored
    assert none_stored[0].calls == 11 + 29 + 1


@pytest.mark.parametrize("tallied", [False, True], ids=["beat-late", "hours-stored"])
def test_the_30_day_window_takes_no_more_queries_than_the_day(
    client_for, officer, month_of_calls, fresh_quota, django_assert_max_num_queries, tallied
):
    client = client_for(officer)
    if tallied:
        callhour_tally(now=NOON)
    with time_machine.travel(NOON, tick=False):
        client.get(reverse("sync:health"))

    # The day's 16, and one more: the newest stored hour.
    with time_machine.travel(NOON, tick=False), django_assert_max_num_queries(17):
        response = client.get(reverse("sync:health"), {"window": "30d"})

    assert response.status_code == 200


def test_an_unknown_window_shows_the_24_hours(client_for, officer, traffic, fresh_quota):
    with time_machine.travel(NOON, tick=False):
        response = client_for(officer).get(reverse("sync:health"), {"window": "1y"})

    assert response.status_code == 200
    assert (response.context["health"].window, len(response.context["health"].hours)) == ("24h", 25)


def test_beat_runs_the_tally_every_few_minutes(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["callhour-tally"]
    celery_app.loader.import_default_modules()  # what a worker does when it starts

    assert entry["task"] == "sync.callhour_tally" and entry["task"] in celery_app.tasks
    assert entry["options"]["expires"] < 5 * 60
