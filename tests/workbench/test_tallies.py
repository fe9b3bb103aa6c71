"""The consent tallies beat keeps (compliance.tallies) and what the pages make of them."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.db.models import Count

from compliance import services
from compliance.models import (
    ConsentCount,
    ConsentDay,
    ConsentDayMark,
    ConsentEvent,
    ConsentState,
    OptInCount,
)
from compliance.selectors import policy_version_consent_counts as selectors_policy_counts
from compliance.tallies import consent_day_tally, optin_counts
from config.celery import app as celery_app
from workbench import selectors

pytestmark = pytest.mark.django_db

MONDAY = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday


def states_by_purpose() -> dict[str, dict[str, int]]:
    """What ConsentState says: contacts per purpose and status (the truth the tallies must match)."""
    found: dict[str, dict[str, int]] = {}
    for row in (
        ConsentState.objects.exclude(status="").values("purpose__code", "status").annotate(n=Count("id"))
    ):
        found.setdefault(row["purpose__code"], {})[row["status"]] = row["n"]
    return found


def tallied_now() -> dict[str, dict[str, int]]:
    return {p.code: {s: n for s, n in p.counts.items() if n} for p in selectors.consent_now() if p.total}


@pytest.fixture
def history(record):
    """Decisions over two weeks, from several sources, one recorded late (it occurred before the
    current decision, so it changes nobody's status)."""
    last_week = MONDAY - timedelta(days=5)
    record("ann@example.com", "sms_marketing", "opted_in", at=last_week)
    record("ann@example.com", "sms_marketing", "opted_out", source="email_link", at=MONDAY)
    record("ben@example.com", "sms_marketing", "opted_in", source="web_portal", at=last_week)
    record("ben@example.com", "profiling", "opted_in", source="web_portal", at=MONDAY)
    record("cat@example.com", "profiling", "opted_out", source="customer_service", at=MONDAY)
    # Occurred last week, recorded today after a newer decision: ann stays opted out.
    record(
        "ann@example.com",
        "sms_marketing",
        "opted_in",
        source="customer_service",
        at=last_week + timedelta(hours=1),
        recorded_at=MONDAY + timedelta(hours=1),
    )


def test_the_tally_counts_every_event_once_and_matches_the_current_states(history):
    counted = consent_day_tally()
    again = consent_day_tally()

    assert (counted, again) == (6, 0)
    assert sum(ConsentDay.objects.values_list("events", flat=True)) == ConsentEvent.objects.count()
    assert ConsentDayMark.objects.get().last_event_id == ConsentEvent.objects.order_by("-id").first().pk
    counts = {(c.purpose.code, c.status): c.contacts for c in ConsentCount.objects.select_related("purpose")}
    assert {k: v for k, v in counts.items() if v} == {
        ("sms_marketing", "opted_in"): 1,  # ben
        ("sms_marketing", "opted_out"): 1,  # ann, despite the late opt-in
        ("profiling", "opted_in"): 1,
        ("profiling", "opted_out"): 1,
    }
    assert tallied_now() == states_by_purpose()


def test_the_late_decision_is_a_change_of_its_day_but_moves_nobody(history):
    consent_day_tally()

    late = ConsentDay.objects.get(source="customer_service", purpose__code="sms_marketing")
    assert (late.day, late.previous_status, late.status, late.moved, late.events) == (
        date(2026, 11, 25), "opted_out", "opted_in", False, 1,
    )  # fmt: skip


def test_small_chunks_store_the_same_tallies_as_one_pass(history):
    consent_day_tally(chunk=2)
    in_chunks = sorted(
        ConsentDay.objects.values_list("day", "purpose_id", "source", "status", "moved", "events")
    )
    counts = sorted(ConsentCount.objects.values_list("purpose_id", "status", "contacts"))
    ConsentDay.objects.all().delete()
    ConsentCount.objects.all().delete()
    ConsentDayMark.objects.all().delete()

    consent_day_tally()

    assert sorted(
        ConsentDay.objects.values_list("day", "purpose_id", "source", "status", "moved", "events")
    ) == (in_chunks)
    assert sorted(ConsentCount.objects.values_list("purpose_id", "status", "contacts")) == counts


def test_the_pages_count_events_past_the_mark_so_figures_never_wait_for_beat(record, history):
    before_any_tally = tallied_now()
    consent_day_tally()
    after_tally = tallied_now()
    record("dan@example.com", "sms_marketing", "opted_in", at=MONDAY + timedelta(hours=2))
    record(
        "ben@example.com", "sms_marketing", "opted_out", source="email_link", at=MONDAY + timedelta(hours=3)
    )

    with_new_events = tallied_now()

    assert (
        before_any_tally
        == after_tally
        == {
            "sms_marketing": {"opted_in": 1, "opted_out": 1},
            "profiling": {"opted_in": 1, "opted_out": 1},
        }
    )
    assert (
        with_new_events
        == states_by_purpose()
        == {
            "sms_marketing": {"opted_in": 1, "opted_out": 2},
            "profiling": {"opted_in": 1, "opted_out": 1},
        }
    )
    assert not ConsentDay.objects.filter(day=MONDAY.date(), source="email_link", events=2).exists()


def test_changes_this_week_and_last_week_by_source(history):
    consent_day_tally()

    with time_machine.travel(MONDAY + timedelta(hours=5), tick=False):
        changes = selectors.changes_this_week(today=MONDAY.date())

    assert {(c.source, c.this_week, c.last_week) for c in changes} == {
        ("email_link", 1, 0),
        ("web_portal", 1, 1),
        ("customer_service", 1, 1),  # cat today; the late decision occurred last week
        ("mobile_app", 0, 1),
    }


def test_weekly_trends_by_source_and_opt_in_rates_walk_back_from_now(record, history):
    consent_day_tally()
    record("eve@example.com", "sms_marketing", "opted_in", at=MONDAY + timedelta(hours=2))  # live

    trends = selectors.consent_trends(since=MONDAY.date() - timedelta(days=14), until=MONDAY.date())

    assert trends.weeks == [date(2026, 11, 16), date(2026, 11, 23), date(2026, 11, 30)]
    assert trends.changes_by_source == {
        "mobile_app": [0, 1, 1],
        "web_portal": [0, 1, 1],
        "customer_service": [0, 1, 1],
        "email_link": [0, 0, 1],
    }
    assert trends.changes_by_purpose == {"sms_marketing": [0, 3, 2], "profiling": [0, 0, 2]}
    # sms: nobody, then ann and ben opted in (100 %), then ann out, eve in: 2 of 3.
    assert trends.opt_in_rate["sms_marketing"] == [None, 100.0, 66.7]
    assert trends.opt_in_rate["profiling"] == [None, None, 50.0]


def test_trends_narrow_to_a_purpose_and_a_source(history):
    consent_day_tally()

    trends = selectors.consent_trends(
        since=MONDAY.date() - timedelta(days=7),
        until=MONDAY.date(),
        purpose="sms_marketing",
        source="email_link",
    )

    assert trends.changes_by_source == {"email_link": [0, 1]}
    assert trends.changes_by_purpose == {"sms_marketing": [0, 1]}
    assert set(trends.opt_in_rate) == {"sms_marketing"}


def test_a_tally_of_many_events_agrees_with_the_states(record):
    statuses = ["opted_in", "opted_out", "opted_in", "opted_out", "opted_in"]
    for n in range(12):
        for step, status in enumerate(statuses[: 1 + n % 5]):
            record(
                f"p{n}@example.com",
                ["sms_marketing", "profiling", "phone_marketing"][n % 3],
                status,
                at=MONDAY - timedelta(days=20 - step - n % 4),
            )
    consent_day_tally(chunk=7)

    assert tallied_now() == states_by_purpose()
    per_source = Counter()
    for source, events in ConsentDay.objects.values_list("source", "events"):
        per_source[source] += events
    assert per_source == Counter(ConsentEvent.objects.values_list("source", flat=True))


def test_beat_runs_the_tally_every_few_minutes_and_the_check_every_night(settings):
    celery_app.loader.import_default_modules()  # what a worker does when it starts
    tally = settings.CELERY_BEAT_SCHEDULE["consent-day-tally"]
    nightly = settings.CELERY_BEAT_SCHEDULE["verify-ledger-nightly"]

    assert tally["task"] == "workbench.consent_day_tally" and tally["task"] in celery_app.tasks
    assert tally["options"]["expires"] < 5 * 60
    assert nightly["task"] == "workbench.verify_ledger" and nightly["task"] in celery_app.tasks
    assert nightly["schedule"].hour == {2} and nightly["schedule"].minute == {15}


# -- current opt-ins per group (OptInCount): the policies pages' and re-permission's counts ---------------


def opt_ins_by_policy() -> dict[int, int]:
    """What ConsentState says: current opt-ins per policy version (the truth the counts must match)."""
    return dict(
        ConsentState.objects.filter(status="opted_in", policy_version__isnull=False)
        .values_list("policy_version")
        .annotate(n=Count("id"))
        .order_by()
    )


def test_policy_counts_follow_each_current_opt_in_from_version_to_version(record, policy):
    newer = services.policy_version_publish(label="2026-09", effective_at="2026-09-01", text="New text.")

    def cite(email: str, purpose: str, label: str, at: datetime, recorded_at: datetime | None = None) -> None:
        decision = services.ConsentDecision(
            purpose=purpose,
            status="opted_in",
            source="mobile_app",
            occurred_at=at,
            idempotency_key=f"policy-{email}-{purpose}-{at.isoformat()}",
            policy_version=label,
        )
        with time_machine.travel(recorded_at or at + timedelta(seconds=1), tick=False):
            services.consent_ingest(identity=services.ContactIdentity(email=email), decision=decision)

    last_week = MONDAY - timedelta(days=5)
    record("ann@example.com", "sms_marketing", "opted_in", at=last_week)  # 2026-03
    cite("ann@example.com", "sms_marketing", "2026-09", MONDAY)  # re-permission: moves to 2026-09
    record("ben@example.com", "profiling", "opted_in", at=last_week)
    record("ben@example.com", "profiling", "opted_out", at=MONDAY)  # leaves 2026-03
    record("cat@example.com", "sms_marketing", "opted_in", at=last_week)
    # Occurred before cat's opt-in, recorded after it: cat stays on 2026-03.
    cite("cat@example.com", "sms_marketing", "2026-09", last_week - timedelta(hours=1), MONDAY)
    assert opt_ins_by_policy() == {policy.pk: 1, newer.pk: 1}

    # Before any tally the pages count every event; after one, the stored counts alone.
    assert selectors_policy_counts() == opt_ins_by_policy()
    consent_day_tally(chunk=3)
    stored: dict[int, int] = {}
    for policy_id, n in OptInCount.objects.exclude(policy=0).values_list("policy", "opted_in"):
        stored[policy_id] = stored.get(policy_id, 0) + n
    assert {k: v for k, v in stored.items() if v} == opt_ins_by_policy()
    assert selectors_policy_counts() == opt_ins_by_policy()

    # Events past the mark count at once, without waiting for beat.
    record("dan@example.com", "sms_marketing", "opted_in", at=MONDAY + timedelta(hours=1))
    record("ann@example.com", "sms_marketing", "opted_out", at=MONDAY + timedelta(hours=2))
    assert selectors_policy_counts() == opt_ins_by_policy() == {policy.pk: 2}
    consent_day_tally()
    assert selectors_policy_counts() == opt_ins_by_policy()


def test_policy_counts_of_many_events_agree_with_the_states(record):
    statuses = ["opted_in", "opted_out", "opted_in", "opted_in", "opted_out"]
    for n in range(12):
        for step, status in enumerate(statuses[: 1 + n % 5]):
            record(
                f"p{n}@example.com",
                ["sms_marketing", "profiling", "phone_marketing"][n % 3],
                status,
                at=MONDAY - timedelta(days=20 - step - n % 4),
            )
    consent_day_tally(chunk=7)

    assert selectors_policy_counts() == opt_ins_by_policy()
    assert sum(OptInCount.objects.exclude(policy=0).values_list("opted_in", flat=True)) == sum(
        opt_ins_by_policy().values()
    )


def opt_ins_by_group() -> dict[tuple[int, int, bool], int]:
    """What ConsentState says per (purpose, policy version or 0, imported without own evidence)."""
    found: dict[tuple[int, int, bool], int] = {}
    for state in ConsentState.objects.filter(status="opted_in").select_related("event"):
        group = (state.purpose_id, state.policy_version_id or 0, state.event.evidence.get("legacy") is True)
        found[group] = found.get(group, 0) + 1
    return found


def test_opt_in_counts_keep_purpose_version_and_legacy_apart(record, policy):
    def imported(email: str, purpose: str, at: datetime) -> None:
        services.consent_ingest(
            identity=services.ContactIdentity(email=email),
            decision=services.ConsentDecision(
                purpose=purpose,
                status="opted_in",
                source="import",
                occurred_at=at,
                idempotency_key=f"legacy-{email}-{purpose}",
                policy_version=policy.label,
                evidence={"legacy": True, "file": "older-system.csv"},
            ),
        )

    imported("eve@example.com", "sms_marketing", MONDAY - timedelta(days=9))
    imported("fay@example.com", "sms_marketing", MONDAY - timedelta(days=9))
    imported("fay@example.com", "profiling", MONDAY - timedelta(days=9))
    record("gus@example.com", "sms_marketing", "opted_in", at=MONDAY - timedelta(days=8))
    consent_day_tally(chunk=2)
    assert optin_counts() == opt_ins_by_group()
    assert {g: n for g, n in optin_counts().items() if g[2]} != {}  # the legacy ones are apart

    # Past the mark: eve confirms herself (legacy -> own evidence), fay withdraws one.
    record("eve@example.com", "sms_marketing", "opted_in", at=MONDAY)
    record("fay@example.com", "profiling", "opted_out", at=MONDAY)
    assert optin_counts() == opt_ins_by_group()
    consent_day_tally()
    assert (
        dict(
            ((p, v, legacy), n)
            for p, v, legacy, n in OptInCount.objects.exclude(opted_in=0).values_list(
                "purpose_id", "policy", "legacy", "opted_in"
            )
        )
        == opt_ins_by_group()
    )
