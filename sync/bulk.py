"""Discrepancies in bulk: grouped by likely cause and CRM field, then retried, resolved or recorded at once.

A **group** is the open discrepancies of one kind on one CRM field whose hints name the same
cause. Hints carry the record's particulars (a Zoho id, an email, a number of seconds), so
the cause is the hint with those blanked (`cause_of`): 1,522 "permission denied on
SMS_Opt_In" rows are one group, not 1,522.

An admin's action on a group (`bulk_action_request`) is recorded first (`BulkAction`: who,
when, which group, how many the page showed, and the newest of them) and then run in the
background (`bulk_action_run`, the Celery task ``sync.bulk_action_run``). The run acts only on
what still matches: the group's rows that are still open and no newer than the newest the
page showed; it counts them (``matched``) and its progress (``done``, ``refused``) as it goes.

- **Retry all**: the rows are claimed like the retry sweep claims them (`discrepancies_retry_due`)
  and their contacts re-pushed 100 a call, so 1,000 discrepancies go out in at most 10 push
  calls; the read-back then resolves or confirms each one.
- **Resolve all with a note**: closed with the note and the admin's name.
- **Record as the person's decision**: for an opt-out set in CRM over our write (``overwritten``),
  an opt-out event through the ledger's one write path with the CRM evidence, then the row is
  resolved. Only toward less permission: a row whose CRM value is not the mapping's opt-out,
  or whose ledger state is not an opt-in, is refused (left open, counted in ``refused``).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import connection, transaction
from django.db.models import Count, F, Func, Max, Min, QuerySet, TextField, Value
from django.db.models.functions import Trim
from django.utils import timezone

from compliance import services
from compliance.models import ConsentState, ConsentStatus, Contact, Source
from sync.discrepancies import discrepancies_resolve
from sync.interventions import NOT_RETRYABLE, NOTE_MAX_LENGTH, OperatorError
from sync.models import BulkAction, Discrepancy, FieldMapping
from sync.outbox import BATCH_CONTACTS, lease
from sync.push import contacts_push
from sync.zoho import ZohoClient

logger = logging.getLogger(__name__)

# Resolutions are written this many rows a statement, so the progress moves on a large group.
RESOLVE_CHUNK = 500
# The kinds whose CRM value may be the person's own decision: an opt-out set over our write.
RECORDABLE = frozenset({Discrepancy.Kind.OVERWRITTEN})

# A record's particulars in a hint. The same patterns run in Python and in PostgreSQL's
# regexp_replace (both read \w and \d as Unicode classes); `test_bulk` holds them equal.
EMAIL_PATTERN = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
NUMBER_PATTERN = r"\d+(?:\.\d+)?"
_EMAIL = re.compile(EMAIL_PATTERN)
_NUMBER = re.compile(NUMBER_PATTERN)


def cause_of(hint: str) -> str:
    """The hint without a record's particulars: emails and numbers blanked, so one cause reads once."""
    return _NUMBER.sub("#", _EMAIL.sub("…", hint or "")).strip(" ")


class _RegexpReplace(Func):
    function = "REGEXP_REPLACE"
    output_field = TextField()


def _in_sql() -> bool:
    return connection.vendor == "postgresql"


def _cause_sql() -> Func:
    """`cause_of` of the hint column, computed by PostgreSQL (so a group is one GROUP BY row)."""
    emails = _RegexpReplace(F("hint"), Value(EMAIL_PATTERN), Value("…"), Value("g"))
    return Trim(_RegexpReplace(emails, Value(NUMBER_PATTERN), Value("#"), Value("g")))


def group_key(kind: str, crm_field: str, cause: str) -> str:
    return hashlib.sha256(f"{kind}\x1f{crm_field}\x1f{cause}".encode()).hexdigest()[:16]


@dataclass
class Group:
    """Open discrepancies of one kind, on one CRM field, with one likely cause."""

    kind: str
    crm_field: str
    cause: str
    count: int = 0
    newest_id: int = 0
    oldest_opened_at: datetime | None = None
    hints: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        return group_key(self.kind, self.crm_field, self.cause)

    @property
    def kind_label(self) -> str:
        return str(Discrepancy.Kind(self.kind).label)

    @property
    def retryable(self) -> bool:
        return self.kind not in NOT_RETRYABLE

    @property
    def recordable(self) -> bool:
        return self.kind in RECORDABLE and bool(self.crm_field)

    def actions(self) -> list[str]:
        allowed = [BulkAction.Action.RETRY] if self.retryable else []
        allowed.append(BulkAction.Action.RESOLVE)
        if self.recordable:
            allowed.append(BulkAction.Action.RECORD_DECISION)
        return [str(a) for a in allowed]

    def rows(self) -> QuerySet[Discrepancy]:
        """The group's open discrepancies now."""
        rows = Discrepancy.objects.filter(
            status=Discrepancy.Status.OPEN, kind=self.kind, crm_field=self.crm_field
        )
        if _in_sql():
            return rows.annotate(cause=_cause_sql()).filter(cause=self.cause)
        return rows.filter(hint__in=self.hints)


def _open_tallies(rows: QuerySet[Discrepancy], by: tuple[str, ...]) -> Iterable[dict[str, Any]]:
    """Open discrepancies counted per ``by`` and cause: in SQL on PostgreSQL, else per hint
    (the caller merges hints of one cause)."""
    if _in_sql():
        rows = rows.annotate(cause=_cause_sql())
        fields = (*by, "cause")
    else:
        fields = (*by, "hint")
    return (
        rows.values(*fields).annotate(count=Count("id"), newest=Max("id"), oldest=Min("opened_at")).order_by()
    )


def _add(group: Group, row: dict[str, Any]) -> None:
    group.count += row["count"]
    group.newest_id = max(group.newest_id, row["newest"])
    if group.oldest_opened_at is None or row["oldest"] < group.oldest_opened_at:
        group.oldest_opened_at = row["oldest"]
    if "hint" in row:
        group.hints.add(row["hint"])


def discrepancy_groups() -> list[Group]:
    """Every group of open discrepancies, the largest first (one GROUP BY)."""
    groups: dict[tuple[str, str, str], Group] = {}
    open_rows = Discrepancy.objects.filter(status=Discrepancy.Status.OPEN)
    for row in _open_tallies(open_rows, ("kind", "crm_field")):
        cause = row["cause"] if "cause" in row else cause_of(row["hint"])
        key = (row["kind"], row["crm_field"], cause)
        _add(groups.setdefault(key, Group(*key)), row)
    return sorted(groups.values(), key=lambda g: (-g.count, g.kind, g.crm_field, g.cause))


def discrepancy_group_get(*, kind: str, crm_field: str, cause: str) -> Group:
    """The group as it is now (possibly empty: everything in it was resolved)."""
    group = Group(kind, crm_field, cause)
    open_rows = Discrepancy.objects.filter(status=Discrepancy.Status.OPEN, kind=kind, crm_field=crm_field)
    if _in_sql():
        open_rows = open_rows.annotate(cause=_cause_sql()).filter(cause=cause)
    for row in _open_tallies(open_rows, ()):
        if (row["cause"] if "cause" in row else cause_of(row["hint"])) == cause:
            _add(group, row)
    return group


def discrepancy_group_by_key(*, key: str) -> Group | None:
    return next((g for g in discrepancy_groups() if g.key == key), None)


def bulk_actions_of_group(*, group: Group, limit: int = 10) -> QuerySet[BulkAction]:
    return BulkAction.objects.filter(kind=group.kind, crm_field=group.crm_field, hint=group.cause).order_by(
        "-created_at"
    )[:limit]


# -- asking ------------------------------------------------------------------------------------


def bulk_action_request(
    *,
    action: str,
    group: Group,
    seen_count: int,
    seen_max_id: int,
    by: AbstractBaseUser | AnonymousUser,
    note: str = "",
) -> BulkAction:
    """Record the admin's action on the group and queue its run (after the commit).

    Refuses (OperatorError, nothing recorded) an action the group's kind does not allow, a
    resolve without a note, and an empty group.
    """
    note = note.strip()
    if action not in group.actions():
        raise OperatorError(
            f"“{BulkAction.Action(action).label}” does not apply to “{group.kind_label}” discrepancies."
            if action in BulkAction.Action.values
            else "Unknown action."
        )
    if action == BulkAction.Action.RESOLVE and not note:
        raise OperatorError("Write a note saying why these discrepancies are resolved.")
    if len(note) > NOTE_MAX_LENGTH:
        raise OperatorError(f"The note is too long: at most {NOTE_MAX_LENGTH} characters.")
    if seen_count <= 0 or seen_max_id <= 0:
        raise OperatorError("This group has nothing open: nothing to do.")
    name = str(by.get_username())
    with transaction.atomic():
        bulk = BulkAction.objects.create(
            action=action,
            kind=group.kind,
            crm_field=group.crm_field,
            hint=group.cause,
            seen_count=seen_count,
            seen_max_id=seen_max_id,
            note=note,
            requested_by_id=getattr(by, "pk", None),
            requested_by_name=name,
        )
        transaction.on_commit(lambda: _enqueue(bulk.pk), robust=True)
    logger.info("Bulk %s of %s %s/%s requested by %s", action, seen_count, group.kind, group.crm_field, name)
    return bulk


def _enqueue(bulk_id: int) -> None:
    from config.celery import app

    try:
        # By name: the task module imports this one.
        app.send_task("sync.bulk_action_run", args=[bulk_id])
    except Exception:
        # The action stays recorded as queued (its page says so); `manage.py shell` can run
        # `bulk_action_run(bulk_id=...)` by hand once the broker is back.
        logger.exception("Could not queue bulk action %s", bulk_id)


# -- running -----------------------------------------------------------------------------------


def bulk_action_run(*, bulk_id: int, zoho_factory: Callable[[], ZohoClient] | None = None) -> BulkAction:
    """Run a queued bulk action once (a conditional UPDATE claims it; a second run finds it taken)."""
    now = timezone.now()
    claimed = BulkAction.objects.filter(pk=bulk_id, status=BulkAction.Status.QUEUED).update(
        status=BulkAction.Status.RUNNING, started_at=now
    )
    bulk = BulkAction.objects.get(pk=bulk_id)
    if not claimed:
        return bulk
    group = discrepancy_group_get(kind=bulk.kind, crm_field=bulk.crm_field, cause=bulk.hint)
    ids = list(group.rows().filter(pk__lte=bulk.seen_max_id).order_by("id").values_list("id", flat=True))
    bulk.matched = len(ids)
    bulk.save(update_fields=["matched"])
    try:
        if bulk.action == BulkAction.Action.RESOLVE:
            _resolve_all(bulk, ids)
        elif bulk.action == BulkAction.Action.RETRY:
            factory = zoho_factory or ZohoClient.from_settings
            with factory() as zoho:
                _retry_all(bulk, ids, zoho)
        elif bulk.action == BulkAction.Action.RECORD_DECISION:
            _record_all(bulk, ids)
        else:  # pragma: no cover  (the request refuses other actions)
            raise ValueError(f"unknown bulk action {bulk.action!r}")
    except Exception as exc:
        bulk.status = BulkAction.Status.FAILED
        bulk.error = f"{type(exc).__name__}: {exc}"[:2000]
        bulk.finished_at = timezone.now()
        bulk.save(update_fields=["status", "error", "finished_at", "done", "refused"])
        logger.exception("Bulk action %s failed", bulk.pk)
        raise
    bulk.status = BulkAction.Status.DONE
    bulk.finished_at = timezone.now()
    bulk.save(update_fields=["status", "finished_at", "done", "refused"])
    return bulk


def _progress(bulk: BulkAction, done: int = 0, refused: int = 0) -> None:
    bulk.done += done
    bulk.refused += refused
    bulk.save(update_fields=["done", "refused"])


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _resolve_all(bulk: BulkAction, ids: list[int]) -> None:
    resolution = f"Resolved in bulk by {bulk.requested_by_name} (bulk action {bulk.pk}): {bulk.note}"
    for chunk in _chunks(ids, RESOLVE_CHUNK):
        resolved = discrepancies_resolve(ids=chunk, resolution=resolution)
        # (Rows resolved meanwhile, by a read-back or a person, are left as they are.)
        _progress(bulk, done=resolved, refused=len(chunk) - resolved)


def _retry_all(bulk: BulkAction, ids: list[int], zoho: ZohoClient) -> None:
    """Claim the rows as the retry sweep does, then push their contacts 100 a call."""
    now = timezone.now()
    ceiling = max(settings.SYNC_MAX_RETRIES - 1, 0)
    by_contact: dict[int, list[int]] = {}
    with transaction.atomic():
        claimed = list(
            Discrepancy.objects.select_for_update().filter(pk__in=ids, status=Discrepancy.Status.OPEN)
        )
        for d in claimed:
            # One more try each, like "Retry now": a group retried after a fix starts its count again
            # below the ceiling, and the push this run makes is the retry the read-back judges.
            d.retries = min(d.retries, ceiling)
            d.next_retry_at = now + lease()
            d.evidence = {**d.evidence, "retry_since": now.isoformat()}
            by_contact.setdefault(d.contact_id, []).append(d.pk)
        Discrepancy.objects.bulk_update(claimed, ["retries", "next_retry_at", "evidence"])
    gone = len(ids) - len(claimed)
    if gone:
        _progress(bulk, refused=gone)
    contact_ids = sorted(by_contact)
    for batch in _chunks(contact_ids, BATCH_CONTACTS):
        contacts_push(contact_ids=batch, zoho=zoho, force=True)
        _progress(bulk, done=sum(len(by_contact[c]) for c in batch))


def _record_all(bulk: BulkAction, ids: list[int]) -> None:
    mapping = (
        FieldMapping.objects.filter(crm_field=bulk.crm_field, is_active=True)
        .select_related("purpose")
        .first()
    )
    for discrepancy in Discrepancy.objects.filter(pk__in=ids).order_by("id").iterator(chunk_size=200):
        try:
            discrepancy_decision_record(discrepancy=discrepancy, mapping=mapping, bulk=bulk)
        except OperatorError as exc:
            logger.info("Bulk action %s left discrepancy %s open: %s", bulk.pk, discrepancy.pk, exc)
            _progress(bulk, refused=1)
        else:
            _progress(bulk, done=1)


def discrepancy_decision_record(
    *, discrepancy: Discrepancy, mapping: FieldMapping | None, bulk: BulkAction, now: datetime | None = None
) -> int:
    """Record the CRM opt-out as the person's decision and resolve the discrepancy; the event's id.

    Only toward less permission: the CRM value must be the mapping's "not consented" value,
    the ledger's the consented one, and the ledger's state an opt-in. Otherwise OperatorError.
    """
    now = now or timezone.now()
    if discrepancy.status != Discrepancy.Status.OPEN:
        raise OperatorError("already resolved")
    if discrepancy.kind not in RECORDABLE:
        raise OperatorError("not an opt-out set in CRM over our write")
    if mapping is None or mapping.crm_field != discrepancy.crm_field:
        raise OperatorError(f"no active field mapping for {discrepancy.crm_field}")
    if discrepancy.actual != mapping.value_for(False) or discrepancy.expected != mapping.value_for(True):
        raise OperatorError("CRM does not show less permission than the ledger: nothing is recorded")
    state = ConsentState.objects.filter(contact_id=discrepancy.contact_id, purpose=mapping.purpose).first()
    if state is None or state.status != ConsentStatus.OPTED_IN:
        raise OperatorError("the ledger holds no opt-in for this purpose: there is nothing to withdraw")
    evidence: dict[str, Any] = discrepancy.evidence or {}
    modified_time = evidence.get("Modified_Time") or evidence.get("modified_time")
    occurred = _parse_time(modified_time) or now
    occurred = min(occurred, now)
    if state.occurred_at is not None and occurred <= state.occurred_at:
        raise OperatorError("the ledger holds a newer decision of the person than the CRM change")
    try:
        outcome = _record_opt_out(discrepancy, mapping, bulk, occurred, evidence)
    except (services.ConsentRejected, services.IdempotencyConflict) as exc:
        raise OperatorError(f"the ledger refused the event: {exc}") from exc
    discrepancies_resolve(
        ids=[discrepancy.pk],
        resolution=(
            f"Recorded as the person's decision by {bulk.requested_by_name} "
            f"(event {outcome.event.pk}, bulk action {bulk.pk})"
        ),
        now=now,
    )
    return int(outcome.event.pk)


def _record_opt_out(
    discrepancy: Discrepancy,
    mapping: FieldMapping,
    bulk: BulkAction,
    occurred: datetime,
    evidence: dict[str, Any],
) -> services.RecordResult:
    return services.consent_record(
        contact=Contact.objects.get(pk=discrepancy.contact_id),
        decision=services.ConsentDecision(
            purpose=mapping.purpose.code,
            status=ConsentStatus.OPTED_OUT,
            source=Source.CRM,
            occurred_at=occurred,
            idempotency_key=f"crm-discrepancy:{discrepancy.pk}",
            evidence={
                "crm_field": discrepancy.crm_field,
                "crm_value": discrepancy.actual,
                "zoho_id": discrepancy.zoho_id,
                "discrepancy": discrepancy.pk,
                "bulk_action": bulk.pk,
                "crm_evidence": evidence,
            },
            reason=(
                f"Opt-out set in Zoho CRM ({discrepancy.crm_field}), recorded as the person's decision "
                f"by {bulk.requested_by_name} (bulk action {bulk.pk})"
            ),
        ),
        actor_user=bulk.requested_by,
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
