"""Re-permission after a new policy version (issue 11, item 6).

Publishing a policy version leaves every current opt-in that cites an older version (or none)
asking for a fresh one. This module reads them (`superseded_*`, `legacy_*`: opt-ins imported from
an older system, whose evidence says ``legacy: true``, lack the person's own evidence) and runs an
admin's action on them in the background (`repermission_start`, then the Celery task
`lifecycle.repermission_run` calling `repermission_run_execute`):

- ``mail``: a re-permission mail per opt-in, through the lifecycle's mail machinery (recorded,
  sent and retried by Celery); its confirm link records a fresh ``opted_in`` under the run's policy
  version, whose evidence says it was a re-permission (`compliance.lifecycle.services.doi_confirm`);
- ``campaigns_list``: the addresses go to a Zoho Campaigns list. `compliance` knows nothing of
  Zoho: the sync registers that action here (`repermission_action_register`, from its
  ``AppConfig.ready()``), and this module calls it with batches of targets.

Whether a person answered is read from the ledger: a later opt-in to the same purpose citing the
run's policy version (`repermission_responses`), whichever way it came.

A contact held by "do not contact" (`compliance.lifecycle.suppressions`: an erased person's address
came back) is never asked: it is left out of the opt-ins listed and counted, of a run's targets,
and (held since the targets were made) skipped by the run, its target saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from compliance.lifecycle import mail
from compliance.lifecycle.suppressions import DO_NOT_CONTACT, do_not_contact
from compliance.models import (
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    LifecycleMessage,
    PolicyVersion,
    Purpose,
    RepermissionRun,
    RepermissionTarget,
)
from compliance.tallies import optin_counts

logger = logging.getLogger(__name__)

RUN_TASK = "lifecycle.repermission_run"
# Targets made and handled per step of the run's task (one transaction each).
BATCH = 200


# --- The registry of actions other apps provide (the sync's Campaigns list) ------------------


@dataclass(frozen=True)
class TargetAddress:
    """What an action is given of one target: its id, the contact's address and purpose."""

    target_id: int
    email: str
    purpose: str


# Returns {target id: error} for the targets it could not handle (empty: all done).
ActionHandler = Callable[[RepermissionRun, Sequence[TargetAddress]], dict[int, str]]


@dataclass(frozen=True)
class RegisteredAction:
    label: str
    handler: ActionHandler
    # Whether it can run now (e.g. its setting is set): offered only then.
    available: Callable[[], bool]


_actions: dict[str, RegisteredAction] = {}


def repermission_action_register(
    *, action: str, label: str, handler: ActionHandler, available: Callable[[], bool]
) -> None:
    """Add (or replace: ``ready()`` may run twice) the handler of a run action other than ``mail``."""
    if action not in RepermissionRun.Action.values or action == RepermissionRun.Action.MAIL:
        raise ValueError(f"unknown re-permission action {action!r}")
    _actions[action] = RegisteredAction(label=label, handler=handler, available=available)


def repermission_actions() -> list[tuple[str, str]]:
    """The actions an admin may start now: (value, label)."""
    offered = [(RepermissionRun.Action.MAIL.value, RepermissionRun.Action.MAIL.label)]
    for action, registered in sorted(_actions.items()):
        if registered.available():
            offered.append((action, registered.label))
    return offered


# --- Reads ------------------------------------------------------------------------------------


def older_versions(policy: PolicyVersion) -> QuerySet[PolicyVersion]:
    """Published versions that `policy` supersedes: in effect before it (or on the same day,
    published before it)."""
    return PolicyVersion.objects.filter(published_at__isnull=False).filter(
        Q(effective_at__lt=policy.effective_at)
        | Q(effective_at=policy.effective_at, published_at__lt=policy.published_at)
    )


def _superseded_q(policy: PolicyVersion) -> Q:
    return Q(policy_version__isnull=True) | Q(policy_version__in=older_versions(policy))


def _legacy_q() -> Q:
    return Q(event__evidence__legacy=True)


def repermission_states(
    *, policy: PolicyVersion, purposes: Sequence[str] = (), include_legacy: bool = True
) -> QuerySet[ConsentState]:
    """Current opt-ins asked about: those citing an older version (or none) and, with
    ``include_legacy``, those imported without the person's own evidence (whatever they cite);
    never those of a contact held by "do not contact"."""
    wanted = _superseded_q(policy)
    if include_legacy:
        wanted |= _legacy_q()
    states = (
        ConsentState.objects.filter(status=ConsentStatus.OPTED_IN)
        .filter(wanted)
        .exclude(contact_id__in=do_not_contact().values("contact_id"))
    )
    if purposes:
        # By id, not by a join on the code: the list then walks compliance_state_optin_purpose.
        states = states.filter(
            purpose_id__in=list(Purpose.objects.filter(code__in=list(purposes)).values_list("pk", flat=True))
        )
    return states


def repermission_list(
    *, policy: PolicyVersion, purposes: Sequence[str] = (), include_legacy: bool = True
) -> QuerySet[ConsentState]:
    """The opt-ins asked about, with their contact, purpose, version and event: the page's list and
    its CSV export (one query). In purpose and contact order, which the partial index
    compliance_state_optin_purpose walks: a page of them reads about as many rows as it shows."""
    return (
        repermission_states(policy=policy, purposes=purposes, include_legacy=include_legacy)
        .select_related("contact", "purpose", "policy_version", "event")
        .annotate(legacy=Q(event__evidence__legacy=True))
        .order_by("purpose_id", "contact_id")
    )


@dataclass(frozen=True)
class PurposeCount:
    purpose: Purpose
    older: int  # citing an older version
    none: int  # citing no version
    legacy: int  # imported without the person's own evidence (citing any version, this one too)
    current: int  # citing `policy` itself
    asked_legacy: int  # legacy, citing neither an older version nor none (asked only with legacy)

    @property
    def superseded(self) -> int:
        return self.older + self.none


def _held_optins() -> dict[tuple[int, int, bool], int]:
    """The current opt-ins of contacts held by "do not contact", grouped as `optin_counts` groups
    them (purpose, version cited or 0, legacy). One query, read from the suppressions' side."""
    rows = (
        ConsentState.objects.filter(
            status=ConsentStatus.OPTED_IN, contact_id__in=do_not_contact().values("contact_id")
        )
        .annotate(is_legacy=Q(event__evidence__legacy=True))
        .values("purpose_id", "policy_version_id", "is_legacy")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {
        (row["purpose_id"], row["policy_version_id"] or 0, bool(row["is_legacy"])): row["n"] for row in rows
    }


def repermission_counts(*, policy: PolicyVersion) -> list[PurposeCount]:
    """Per purpose: current opt-ins citing an older version, none, or `policy`, and the legacy ones.
    From the opt-in counts beat keeps (`compliance.tallies.optin_counts`): a few rows, whatever the
    number of current opt-ins; less those of contacts held by "do not contact" (never asked, not
    listed)."""
    older = set(older_versions(policy).values_list("pk", flat=True))
    counts = optin_counts()
    for group, n in _held_optins().items():
        counts[group] = counts.get(group, 0) - n
    figures: dict[int, dict[str, int]] = {}
    for (purpose_id, cited, legacy), n in counts.items():
        if n <= 0:
            continue
        row = figures.setdefault(
            purpose_id, dict.fromkeys(("older", "none", "legacy", "current", "asked_legacy"), 0)
        )
        kind = (
            "older" if cited in older else "none" if cited == 0 else "current" if cited == policy.pk else ""
        )
        if kind:
            row[kind] += n
        if legacy:
            row["legacy"] += n
            if kind not in ("older", "none"):
                row["asked_legacy"] += n
    empty = dict.fromkeys(("older", "none", "legacy", "current", "asked_legacy"), 0)
    return [
        PurposeCount(purpose=purpose, **figures.get(purpose.pk, empty))
        for purpose in Purpose.objects.order_by("code")
    ]


def repermission_asked(
    counts: Sequence[PurposeCount], *, purposes: Sequence[str], include_legacy: bool
) -> int:
    """How many opt-ins an action on these purposes asks about (what `repermission_states` lists)."""
    chosen = set(purposes)
    return sum(
        count.superseded + (count.asked_legacy if include_legacy else 0)
        for count in counts
        if not chosen or count.purpose.code in chosen
    )


def repermission_runs(*, policy: PolicyVersion | None = None) -> QuerySet[RepermissionRun]:
    runs = RepermissionRun.objects.select_related("policy", "created_by")
    return runs.filter(policy=policy) if policy is not None else runs


def _answers(run: RepermissionRun) -> QuerySet[ConsentEvent]:
    """Opt-ins under the run's policy version recorded after it started, for a target's contact and
    purpose (found through the chain's index: contact, purpose)."""
    return ConsentEvent.objects.filter(
        contact_id=OuterRef("contact_id"),
        purpose_id=OuterRef("purpose_id"),
        status=ConsentStatus.OPTED_IN,
        policy_version_id=run.policy_id,
        recorded_at__gte=run.created_at,
    )


@dataclass(frozen=True)
class Responses:
    run: RepermissionRun
    asked: int
    answered: int
    days: list[date]
    # Per day since the run started: answers that day, and the cumulative rate in percent.
    daily: list[int]
    rate: list[float]

    @property
    def rate_now(self) -> float | None:
        return round(100 * self.answered / self.asked, 1) if self.asked else None


def repermission_responses(*, run: RepermissionRun, now: datetime | None = None) -> Responses:
    """The response rate of a run over time: per day since it started, how many of the people asked
    had opted in again under its policy version (by any way: the mail's link, the app, the
    preference centre). One query over the run's targets."""
    now = now or timezone.now()
    asked_targets = run.targets.filter(done_at__isnull=False)
    first = asked_targets.annotate(
        answered_at=Subquery(_answers(run).order_by("recorded_at").values("recorded_at")[:1])
    ).values_list("answered_at", flat=True)
    answer_times = list(first)
    asked = len(answer_times)
    start = timezone.localdate(run.created_at)
    end = max(timezone.localdate(now), start)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    per_day = dict.fromkeys(days, 0)
    for at in answer_times:
        if at is not None:
            day = timezone.localdate(at)
            per_day[min(max(day, start), end)] += 1
    daily = [per_day[d] for d in days]
    rate, total = [], 0
    for count in daily:
        total += count
        rate.append(round(100 * total / asked, 1) if asked else 0.0)
    return Responses(run=run, asked=asked, answered=total, days=days, daily=daily, rate=rate)


# --- Writes -----------------------------------------------------------------------------------


class RepermissionRefused(Exception):
    """An action that may not start (unknown, unavailable, nothing to ask)."""


def repermission_start(
    *,
    policy: PolicyVersion,
    action: str,
    purposes: Sequence[str],
    include_legacy: bool,
    user: Any,
) -> RepermissionRun:
    """Record an admin's re-permission action (who, when, what) and queue its task once that
    commits. How many it asks is counted by the task, when it makes the targets."""
    if policy.published_at is None:
        raise RepermissionRefused("The policy version is not published.")
    if action not in dict(repermission_actions()):
        raise RepermissionRefused(f"The action {action!r} is not available.")
    if not purposes:
        raise RepermissionRefused("Choose at least one purpose.")
    known = set(Purpose.objects.filter(code__in=list(purposes)).values_list("code", flat=True))
    if known != set(purposes):
        raise RepermissionRefused(f"Unknown purposes: {', '.join(sorted(set(purposes) - known))}.")
    run = RepermissionRun.objects.create(
        policy=policy,
        action=action,
        purposes=sorted(purposes),
        include_legacy=include_legacy,
        total=repermission_asked(
            repermission_counts(policy=policy), purposes=purposes, include_legacy=include_legacy
        ),
        created_by=user if getattr(user, "is_authenticated", False) else None,
        created_by_name=getattr(user, "get_username", lambda: "")() or "system",
    )
    transaction.on_commit(lambda: _run_soon(run.pk))
    return run


def _run_soon(run_pk: int) -> None:
    # Off as mails' sends are (LIFECYCLE_SEND_ON_COMMIT): the lifecycle cycle runs it then.
    if not settings.LIFECYCLE_SEND_ON_COMMIT:
        return
    try:
        current_app.send_task(RUN_TASK, args=[run_pk])
    except Exception:
        logger.warning("Could not queue re-permission run %s; `lifecycle_now` runs it", run_pk, exc_info=True)


def _targets_make(run: RepermissionRun) -> int:
    """Snapshot the opt-ins asked about as the run's targets (once; a re-run finds them made)."""
    if run.targets.exists():
        return run.targets.count()
    states = repermission_states(
        policy=run.policy, purposes=run.purposes, include_legacy=run.include_legacy
    ).values_list("contact_id", "purpose_id", "event_id", "event__evidence__legacy")
    made = 0
    batch: list[RepermissionTarget] = []
    for contact_id, purpose_id, event_id, legacy in states.iterator(chunk_size=2000):
        if event_id is None:
            continue
        batch.append(
            RepermissionTarget(
                run=run,
                contact_id=contact_id,
                purpose_id=purpose_id,
                event_id=event_id,
                legacy=legacy is True,
            )
        )
        if len(batch) >= 2000:
            RepermissionTarget.objects.bulk_create(batch, ignore_conflicts=True)
            made += len(batch)
            batch = []
    if batch:
        RepermissionTarget.objects.bulk_create(batch, ignore_conflicts=True)
        made += len(batch)
    return made


def _still_asked(targets: QuerySet[RepermissionTarget]) -> QuerySet[RepermissionTarget]:
    """Targets whose opt-in is still the current one (not withdrawn or renewed since)."""
    current = ConsentState.objects.filter(
        contact_id=OuterRef("contact_id"),
        purpose_id=OuterRef("purpose_id"),
        event_id=OuterRef("event_id"),
        status=ConsentStatus.OPTED_IN,
    )
    return targets.filter(Exists(current))


def repermission_run_execute(*, run_pk: int, now: datetime | None = None) -> RepermissionRun:
    """Run (or resume) one re-permission run: make its targets, then mail them or hand them to
    the registered action, BATCH at a time, counting progress. Safe to run twice, at once too: a
    target done is never done again, and a batch in hand is not taken by another execution. A
    target whose contact is held by "do not contact" is skipped, saying why."""
    now = now or timezone.now()
    with transaction.atomic():
        run = RepermissionRun.objects.select_for_update().select_related("policy").get(pk=run_pk)
        if run.status in (RepermissionRun.Status.DONE, RepermissionRun.Status.FAILED):
            return run
        run.status = RepermissionRun.Status.RUNNING
        run.started_at = run.started_at or now
        run.save(update_fields=["status", "started_at"])
    with transaction.atomic():
        total = _targets_make(run)
        RepermissionRun.objects.filter(pk=run.pk).update(total=total)
    handler = None
    if run.action != RepermissionRun.Action.MAIL:
        registered = _actions.get(run.action)
        if registered is None:
            RepermissionRun.objects.filter(pk=run.pk).update(
                status=RepermissionRun.Status.FAILED,
                error=f"No handler for {run.action} in this process.",
                finished_at=timezone.now(),
            )
            run.refresh_from_db()
            return run
        handler = registered.handler
    while True:
        with transaction.atomic():
            # Claimed for the batch's transaction: two executions of one run at once (its task,
            # and the lifecycle cycle's safety net when the task was slow to start) take
            # different batches, and nobody is mailed or subscribed twice.
            pending = list(
                run.targets.filter(done_at__isnull=True, error="")
                .select_related("contact", "purpose", "event")
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("id")[:BATCH]
            )
            if not pending:
                if run.targets.filter(done_at__isnull=True, error="").exists():
                    # The rest is in another execution's hands: it finishes the run.
                    run.refresh_from_db()
                    return run
                break
            still = set(
                _still_asked(run.targets.filter(pk__in=[t.pk for t in pending])).values_list("pk", flat=True)
            )
            held = set(
                do_not_contact()
                .filter(contact_id__in={t.contact_id for t in pending})
                .values_list("contact_id", flat=True)
            )
            skipped = [t for t in pending if t.pk not in still or not t.contact.email or t.contact_id in held]
            asked = [t for t in pending if t.pk in still and t.contact.email and t.contact_id not in held]
            errors: dict[int, str] = {}
            if handler is None:
                messages = mail.repermission_messages_queue(targets=asked, policy=run.policy, now=now)
                for target, message in zip(asked, messages, strict=True):
                    target.message = message
                RepermissionTarget.objects.bulk_update(asked, ["message"])
            elif asked:
                errors = handler(
                    run,
                    [TargetAddress(t.pk, t.contact.email or "", t.purpose.code) for t in asked],
                )
            stamp = timezone.now()
            RepermissionTarget.objects.filter(pk__in=[t.pk for t in asked if t.pk not in errors]).update(
                done_at=stamp
            )
            for target_id, error in errors.items():
                RepermissionTarget.objects.filter(pk=target_id).update(error=error[:500] or "failed")
            RepermissionTarget.objects.filter(
                pk__in=[t.pk for t in skipped if t.contact_id not in held]
            ).update(error="no email address or no longer opted in under that event")
            RepermissionTarget.objects.filter(pk__in=[t.pk for t in skipped if t.contact_id in held]).update(
                error=DO_NOT_CONTACT
            )
            RepermissionRun.objects.filter(pk=run.pk).update(
                processed=F("processed") + len(pending),
                skipped=F("skipped") + len(skipped),
                failed=F("failed") + len(errors),
            )
    RepermissionRun.objects.filter(pk=run.pk).update(
        status=RepermissionRun.Status.DONE, finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def repermission_run_stopped(*, run_pk: int, attempts: int, error: BaseException) -> None:
    """The run's task gave up: the run ends as failed, its page saying why and what stays done."""
    RepermissionRun.objects.filter(pk=run_pk, status=RepermissionRun.Status.RUNNING).update(
        status=RepermissionRun.Status.FAILED,
        error=(
            f"Stopped after {attempts} attempts: {type(error).__name__}: {error}. The targets handled "
            "so far stay handled; the others were not asked."
        )[:500],
        finished_at=timezone.now(),
    )


def repermission_runs_resume(*, older_than_s: int = 300) -> int:
    """The lifecycle cycle's safety net: run the runs whose task never ran (a broker down)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    stale = RepermissionRun.objects.filter(
        Q(status=RepermissionRun.Status.QUEUED, created_at__lte=cutoff)
    ).values_list("pk", flat=True)
    count = 0
    for run_pk in list(stale):
        repermission_run_execute(run_pk=run_pk)
        count += 1
    return count


def message_target(message: LifecycleMessage) -> RepermissionTarget | None:
    return (
        RepermissionTarget.objects.select_related("event", "event__policy_version", "run", "run__policy")
        .filter(message=message)
        .first()
    )
