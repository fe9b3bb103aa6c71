"""Re-permission after a new policy version (issue 11, item 6): who cites an older version, their
CSV export (logged), an admin's action (confirmed, recorded, run by the Celery task), the mail's
link recording a fresh opt-in under the new version, the Campaigns list through zohosim, and the
response rate."""

from __future__ import annotations

import csv
import io

import pytest
from django.core import mail as outbox
from django.urls import reverse

from compliance.lifecycle import mail, repermission, tasks
from compliance.models import (
    AccessLog,
    ConsentState,
    LifecycleMessage,
    PolicyVersion,
    RepermissionRun,
    RepermissionTarget,
)
from tests.lifecycle.conftest import confirm_path, record


def _counts(policy: PolicyVersion) -> dict[str, tuple[int, int, int, int]]:
    return {
        c.purpose.code: (c.older, c.none, c.legacy, c.current)
        for c in repermission.repermission_counts(policy=policy)
    }


def test_it_counts_per_purpose_the_opt_ins_citing_a_superseded_version(new_policy):
    counts = _counts(new_policy)

    assert counts["email_marketing"] == (3, 0, 1, 0)  # Ana, Ben and Cem older, Cem legacy
    assert counts["profiling"] == (1, 0, 0, 0)
    assert counts["sms_marketing"] == (0, 0, 0, 0)
    # The older version itself supersedes nothing: nothing is older than it.
    assert _counts(PolicyVersion.objects.get(label="2026-03"))["email_marketing"] == (0, 0, 1, 3)


def test_the_csv_export_holds_exactly_the_listed_opt_ins_and_is_logged(
    client_for, officer, new_policy, people
):
    client = client_for(officer)
    url = reverse("lifecycle:repermission", args=[new_policy.pk])

    response = client.get(url, {"_export": "csv"})

    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    listed = repermission.repermission_list(policy=new_policy)
    assert [(r["Contact"], r["Purpose"]) for r in rows] == [
        (str(s.contact_id), s.purpose.code) for s in listed
    ]
    assert {(r["Email"], r["Purpose"], r["Policy version cited"]) for r in rows} == {
        ("ana@example.com", "email_marketing", "2026-03"),
        ("ana@example.com", "profiling", "2026-03"),
        ("ben@example.com", "email_marketing", "2026-03"),
        ("cem@example.com", "email_marketing", "2026-03"),
    }
    assert {r["Email"]: r["Imported without own evidence"] for r in rows}["cem@example.com"] == "yes"
    entry = AccessLog.objects.get(kind=AccessLog.Kind.EXPORT)
    assert entry.user == officer and "4 rows" in entry.detail
    assert {c.contact_id for c in entry.contacts.all()} == {
        people["ana"].pk,
        people["ben"].pk,
        people["cem"].pk,
    }
    # Filtered to one purpose, the export says so too.
    rows = list(
        csv.DictReader(
            io.StringIO(client.get(url, {"_export": "csv", "purpose": "profiling"}).content.decode())
        )
    )
    assert [r["Email"] for r in rows] == ["ana@example.com"]


@pytest.mark.parametrize(
    ("role", "get_status", "post_status"),
    [("outsider", 403, 403), ("auditor", 200, 403), ("officer", 200, 403), ("admin_user", 200, 200)],
)
def test_who_may_see_and_who_may_act(request, client_for, new_policy, role, get_status, post_status):
    client = client_for(request.getfixturevalue(role))
    url = reverse("lifecycle:repermission", args=[new_policy.pk])

    assert client.get(url).status_code == get_status
    response = client.post(url, {"action": "mail", "purposes": ["email_marketing"]})
    assert response.status_code == post_status
    assert not RepermissionRun.objects.exists()  # not confirmed: nothing started, by anyone
    run = RepermissionRun.objects.create(
        policy=new_policy, action="mail", purposes=["email_marketing"], created_by_name="x"
    )
    assert client.get(reverse("lifecycle:repermission_run", args=[run.pk])).status_code == get_status


def test_anonymous_people_are_sent_to_the_login(client, new_policy):
    response = client.get(reverse("lifecycle:repermission", args=[new_policy.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_an_admin_confirms_then_the_task_mails_and_a_click_records_a_fresh_opt_in(
    client_for, admin_user, new_policy, people, django_capture_on_commit_callbacks
):
    client = client_for(admin_user)
    url = reverse("lifecycle:repermission", args=[new_policy.pk])
    form = {"action": "mail", "purposes": ["email_marketing"], "include_legacy": "on"}

    # Given the admin asked for the newsletter's re-permission, the page asks to confirm
    page = client.post(url, form)
    assert page.status_code == 200
    assert '<strong id="confirm-count">3</strong>' in page.content.decode()
    assert not RepermissionRun.objects.exists()

    # When they confirm, the run is recorded (who, when, how many) and its task queued
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(url, {**form, "confirmed": "yes"})
    run = RepermissionRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("lifecycle:repermission_run", args=[run.pk])
    assert (run.created_by, run.total, run.status, run.action) == (admin_user, 3, "queued", "mail")
    assert len(callbacks) == 1

    # And the Celery task runs it: one mail per opt-in asked, none to Dora (opted out)
    tasks.repermission_run.apply(args=[run.pk])
    run.refresh_from_db()
    assert (run.status, run.processed, run.skipped, run.failed) == ("done", 3, 0, 0)
    messages = list(LifecycleMessage.objects.filter(kind="repermission").order_by("to_email"))
    assert [m.to_email for m in messages] == ["ana@example.com", "ben@example.com", "cem@example.com"]
    for message in messages:
        mail.message_send(message_pk=message.pk)
    assert "new privacy policy" in outbox.outbox[0].subject
    assert "2027-01" in outbox.outbox[0].body

    # Then Ben's click records a fresh opted_in under 2027-01 saying it was a re-permission
    ben_mail = LifecycleMessage.objects.get(kind="repermission", to_email="ben@example.com")
    ben_mail.refresh_from_db()
    path = confirm_path(ben_mail)
    assert client.get(path).status_code == 200  # a GET records nothing
    response = client.post(path)
    assert response.status_code == 200
    state = ConsentState.objects.select_related("event").get(
        contact=people["ben"], purpose__code="email_marketing"
    )
    assert state.status == "opted_in" and state.policy_version == new_policy
    assert state.event.evidence["repermission"] is True
    assert state.event.evidence["repermission_run"] == run.pk
    assert state.event.evidence["confirmed_through"] == "repermission_link"
    assert state.event.source == "email_link"
    # The same link again records nothing
    assert client.post(path).status_code == 409

    # And the run's page shows one answer of three
    responses = repermission.repermission_responses(run=run)
    assert (responses.asked, responses.answered, responses.rate[-1]) == (3, 1, 33.3)
    page = client.get(reverse("lifecycle:repermission_run", args=[run.pk])).content.decode()
    assert '<span id="answered">1</span> of <span id="asked">3</span>' in page
    assert "<svg" in page and "Table of this chart" in page
    # And Ben no longer needs re-permission
    assert _counts(new_policy)["email_marketing"] == (2, 0, 1, 1)


def test_a_run_skips_opt_ins_withdrawn_since_it_started(admin_user, new_policy, people):
    run = repermission.repermission_start(
        policy=new_policy,
        action="mail",
        purposes=["email_marketing"],
        include_legacy=False,
        user=admin_user,
    )
    assert run.total == 3  # Ana, Ben and Cem (older)
    repermission._targets_make(run)  # the task's snapshot of whom to ask, then Ana withdraws
    record(people["ana"], "email_marketing", "opted_out", policy_version=None)

    run = repermission.repermission_run_execute(run_pk=run.pk)

    assert (run.total, run.processed, run.skipped) == (3, 3, 1)
    mailed = LifecycleMessage.objects.filter(kind="repermission").values_list("to_email", flat=True)
    assert sorted(mailed) == ["ben@example.com", "cem@example.com"]
    # Run again (a redelivered task): nothing is mailed twice
    RepermissionRun.objects.filter(pk=run.pk).update(status="running")
    repermission.repermission_run_execute(run_pk=run.pk)
    assert LifecycleMessage.objects.filter(kind="repermission").count() == 2


@pytest.mark.postgres  # row locks: SQLite has none to skip
@pytest.mark.django_db(transaction=True)
def test_two_executions_of_a_run_at_once_never_ask_anyone_twice(admin_user, new_policy, people):
    # Given a mail run for Ana, Ben and Cem, one of whose targets another execution holds in
    # its batch (its task, while the lifecycle cycle's safety net runs the run too)
    import psycopg
    from django.db import connection

    run = repermission.repermission_start(
        policy=new_policy, action="mail", purposes=["email_marketing"], include_legacy=True, user=admin_user
    )
    repermission._targets_make(run)
    held, *others = list(RepermissionTarget.objects.filter(run=run).order_by("id"))
    params = connection.get_connection_params()
    other = psycopg.connect(
        host=params.get("host") or "127.0.0.1",
        port=params.get("port") or 5432,
        dbname=connection.settings_dict["NAME"],
        user=params.get("user") or "postgres",
    )
    try:
        other.execute(
            f"SELECT id FROM {RepermissionTarget._meta.db_table} WHERE id = %s FOR UPDATE",
            [held.pk],
        )
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")  # waiting on the held row would be the bug

        # When this execution runs meanwhile
        repermission.repermission_run_execute(run_pk=run.pk)

        # Then it asks the other two, leaves the held one to its holder, and does not end the run
        run.refresh_from_db()
        assert run.status == "running"
        assert sorted(
            LifecycleMessage.objects.filter(kind="repermission").values_list("contact_id", flat=True)
        ) == sorted(t.contact_id for t in others)
    finally:
        other.rollback()  # the holder's batch went nowhere: its target is still to ask
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")

    # And a later execution asks the last one, once, and ends the run
    repermission.repermission_run_execute(run_pk=run.pk)
    run.refresh_from_db()
    assert (run.status, run.processed) == ("done", 3)
    asked = list(LifecycleMessage.objects.filter(kind="repermission").values_list("contact_id", flat=True))
    assert sorted(asked) == sorted(t.contact_id for t in (held, *others))


def test_bad_input_is_refused_and_starts_nothing(client_for, admin_user, new_policy):
    client = client_for(admin_user)
    url = reverse("lifecycle:repermission", args=[new_policy.pk])

    response = client.post(url, {"action": "campaigns_list", "purposes": ["nonsense"], "confirmed": "yes"})

    assert response.status_code == 400
    assert not RepermissionRun.objects.exists()


def test_the_campaigns_action_adds_the_addresses_to_the_list_in_zohosim(
    client_for, admin_user, new_policy, people, sim, sim_settings, django_capture_on_commit_callbacks
):
    # Given a re-permission list in Campaigns
    sim.seed(lists=[{"listkey": "RP1", "name": "Re-permission", "subscribers": []}])
    sim_settings.ZOHO_REPERMISSION_LIST_KEY = "RP1"
    client = client_for(admin_user)
    url = reverse("lifecycle:repermission", args=[new_policy.pk])
    assert "Zoho Campaigns re-permission list" in client.get(url).content.decode()

    # When an admin confirms the Campaigns action for both purposes
    response = client.post(
        url,
        {
            "action": "campaigns_list",
            "purposes": ["email_marketing", "profiling"],
            "include_legacy": "on",
            "confirmed": "yes",
        },
    )
    assert response.status_code == 302
    run = RepermissionRun.objects.get()
    repermission.repermission_run_execute(run_pk=run.pk)

    # Then the list holds the three addresses (Ana once for two purposes), and no mail went out
    lists = sim.http.get("/_sim/lists").json()["lists"]
    emails = sorted(s["email"] for row in lists if row["listkey"] == "RP1" for s in row["subscribers"])
    assert emails == ["ana@example.com", "ben@example.com", "cem@example.com"]
    run.refresh_from_db()
    assert (run.status, run.total, run.processed, run.failed) == ("done", 4, 4, 0)
    assert RepermissionTarget.objects.filter(run=run, done_at__isnull=False).count() == 4
    assert not LifecycleMessage.objects.filter(kind="repermission").exists()


def _campaigns_run(policy: PolicyVersion) -> RepermissionRun:
    """An admin's Campaigns run for the newsletter's opt-ins under older versions (Ana, Ben, Cem)."""
    return repermission.repermission_start(
        policy=policy, action="campaigns_list", purposes=["email_marketing"], include_legacy=True, user=None
    )


def test_a_retried_campaigns_batch_adds_no_address_twice(
    admin_user, new_policy, people, sim, sim_settings, monkeypatch
):
    # Given a re-permission run of the Campaigns action for Ana, Ben and Cem, and room in
    # listsubscribe's minute for one address only
    from sync.zoho import ZohoRateLimited
    from sync.zoho.campaigns_limits import LIMITS, Window

    sim.seed(lists=[{"listkey": "RP1", "name": "Re-permission", "subscribers": []}])
    sim_settings.ZOHO_REPERMISSION_LIST_KEY = "RP1"
    sim_settings.ZOHO_CAMPAIGNS_LIMIT_SHARE = 1.0
    run = _campaigns_run(new_policy)
    monkeypatch.setitem(LIMITS, "listsubscribe", (Window(1, 60, 5),))

    # When the first attempt stops at the second address (the batch's rows roll back), Ana
    # unsubscribes from the list meanwhile, and the retry runs with room again
    with pytest.raises(ZohoRateLimited):
        repermission.repermission_run_execute(run_pk=run.pk)
    assert len(sim.calls("campaigns.listsubscribe")) == 1
    sim.post("/_sim/campaigns/unsubscribe", email="ana@example.com", listkey="RP1")
    monkeypatch.undo()
    repermission.repermission_run_execute(run_pk=run.pk)

    # Then each address was added once: Ana is not set back to active (nor sent a second
    # confirmation on a double opt-in list), and the run is done
    assert len(sim.calls("campaigns.listsubscribe")) == 3
    lists = sim.http.get("/_sim/lists").json()["lists"]
    statuses = {
        s["email"]: s["status"] for row in lists if row["listkey"] == "RP1" for s in row["subscribers"]
    }
    assert statuses == {"ana@example.com": "unsub", "ben@example.com": "active", "cem@example.com": "active"}
    run.refresh_from_db()
    assert (run.status, run.processed, run.failed) == ("done", 3, 0)


def test_a_run_whose_task_gives_up_ends_failed_saying_why(admin_user, new_policy, people, sim, sim_settings):
    # Given a Campaigns run while Campaigns answers 500 to every add
    sim.seed(lists=[{"listkey": "RP1", "name": "Re-permission", "subscribers": []}])
    sim_settings.ZOHO_REPERMISSION_LIST_KEY = "RP1"
    sim.fault("server_error", ops=["campaigns.listsubscribe"])
    run = _campaigns_run(new_policy)

    # When the task's last attempt fails too
    result = tasks.repermission_run.apply(args=[run.pk], retries=tasks.repermission_run.max_retries)

    # Then the run is failed, not running for good, and says why
    assert result.failed()
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None
    assert run.error.startswith("Stopped after 9 attempts: ZohoTransientError")
    assert run.processed == 0


def test_the_campaigns_action_is_not_offered_without_its_list(client_for, admin_user, new_policy, settings):
    settings.ZOHO_REPERMISSION_LIST_KEY = ""
    page = client_for(admin_user).get(reverse("lifecycle:repermission", args=[new_policy.pk]))
    assert 'value="campaigns_list"' not in page.content.decode()
    with pytest.raises(repermission.RepermissionRefused):
        repermission.repermission_start(
            policy=new_policy,
            action="campaigns_list",
            purposes=["email_marketing"],
            include_legacy=True,
            user=None,
        )


def test_publishing_opens_the_re_permission_view(client_for, admin_user, people):
    response = client_for(admin_user).post(
        reverse("compliance:policy_publish"),
        {"label": "2027-02", "effective_at": "2026-07-01", "text": "New.", "url": ""},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Re-permission for policy 2027-02" in page
    assert "ana@example.com" in page
