"""The import of the consent already in Zoho: what CRM records and Campaigns lists say, recorded
in the ledger as ``source=import`` events (``manage.py import_zoho_consent``, docs/import.md).

**Reading.** Every CRM record of ``ZOHO_MODULES`` (Contacts; Leads when configured; only
those modified since ``since``, when given), by COQL
keyset pages of 2,000 in id order, or by Bulk Read (200,000 rows a job page, the next page
asked by Zoho's ``next_page_token``) when the CRM holds more than
``RECONCILE_BULK_THRESHOLD`` records, as reconciliation decides (one COQL call with an OFFSET
at the threshold tells). Then the unsubscribed contacts of every configured Campaigns list
(``ZOHO_CAMPAIGNS_LIST_KEYS``). Rows are streamed and written in batches, so memory does not
grow with the CRM.

**What a record says**, per purpose, through the active field mappings (`sync.mappings`):

* a ``not_consented`` field that is set (``Email_Opt_Out`` true) is an **opt-out**, whatever
  else the record says (the least permissive state wins);
* else a ``consented`` field that is set (``SMS_Opt_In`` true, the consent object's
  ``Contact_Through_Email``) is an **opt-in**, recorded with ``evidence.legacy = true`` and
  the record's ``Consent_Date`` (its ``occurred_at``; else ``Modified_Time``) and
  ``Consent_Through``. The ledger's rules still hold: it cites the policy version in force on
  that date (or the one given), and a purpose with double opt-in takes it only when the
  consent object shows consent obtained through Email (Zoho's consent mail, which the person
  confirmed from their mailbox; ``double_opt_in_confirmed_at`` is its ``Consent_Date``);
* a field not set says nothing (an unticked box is no decision).

A Campaigns ``unsub`` row is an opt-out of email marketing (Campaigns gives no time: its
``occurred_at`` is when the run began). Active and bounced rows are not decisions (a list
row carries no confirmation; bounces are the Campaigns pull's suppressions).

Every event's evidence names what it came from: the record id, the field values,
``Modified_Time``, ``Modified_By`` (id, and name from the users API), or the list key, its
status and row. Contacts are found or made from the record (email, the record id as their
Zoho id when it is a Contacts record, so they are linked to it; a Lead's person is linked by
the sync, by email; the phone only when there is no email; names only where the ledger has none), through the one write path (`consent_ingest_batch`).

**The ledger's own decisions stand.** A purpose for which the ledger already holds a decision
(any but this import's own) is not imported for that contact (counted as ``ledger_decides``): the
import brings in what the ledger does not know; afterwards the sync's rule of direction
deals with CRM-side changes. Nothing is imported for an erased contact (its CRM record, kept or
anonymised, is still linked by the Zoho id the contact keeps): counted as ``ledger_decides`` too.

**Again, and after a crash.** Each event's idempotency key is the record id, its
``Modified_Time`` and the purpose (``import-zoho:crm:…``), or the list key, the address's
keyed token (never the address: compliance/address_tokens.py) and its status
(``import-zoho:campaigns:…``); keys already in the ledger are skipped before
writing, so a second run records nothing. Each batch commits its events together with the
run's cursor (`ImportRun`): a run whose process died is taken over by the next command and
goes on from the last committed batch.

**Bad records** (a field of the wrong type, no usable time, an invalid email, a CSV row that
does not fit its header) are reported with their id and reason, and the import goes on.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from compliance import services
from compliance.models import (
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
)
from compliance.services.consent import consent_check
from sync.import_models import PROBLEMS_KEPT, ImportRun
from sync.imports_zoho_rows import (
    CONTACTS,
    COQL,
    KEY_PREFIX,
    BadRecord,
    Candidate,
    campaigns_candidate,
    crm_candidates,
    crm_fields,
    crm_rows_bulk,
    crm_rows_coql,
    rules_load,
)
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoPermanentError

logger = logging.getLogger("sync.imports_zoho")

# Records per batch: one transaction with the run's cursor (its events in chunks of 100).
BATCH = 500
# A run on another host is taken for dead when its heartbeat is older than this.
STALE_AFTER = timedelta(minutes=10)


class ImportBusy(Exception):
    """Another process is running the import."""


@dataclass
class Tally:
    """What a batch did (added to the run's counters in the batch's transaction)."""

    records_read: int = 0
    records_bad: int = 0
    list_rows_read: int = 0
    events_recorded: int = 0
    events_existing: int = 0
    ledger_decides: int = 0
    refused: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)

    def problem(self, where: str, reason: str) -> None:
        self.problems.append({"where": where, "reason": reason[:300]})


def _sift(candidates: list[Candidate], tally: Tally) -> list[Candidate]:
    """Drop the decisions already in the ledger (their keys) and those for purposes the ledger
    decides from elsewhere; fit the identity to the contact the ledger holds. Reads only."""
    keys = [c.decision.idempotency_key for c in candidates]
    existing = set(
        ConsentEvent.objects.filter(idempotency_key__in=keys).values_list("idempotency_key", flat=True)
    )
    fresh = []
    for c in candidates:
        if c.decision.idempotency_key in existing:
            c.outcome = "already recorded"
            tally.events_existing += 1
        else:
            fresh.append(c)
    if not fresh:
        return []
    zoho_ids = {c.zoho_id for c in fresh if c.zoho_id}
    emails = {c.email for c in fresh if c.email}
    contacts = list(
        Contact.objects.filter(Q(zoho_id__in=zoho_ids) | Q(email__in=emails)).values(
            "pk", "zoho_id", "email", "first_name", "last_name", "erased_at"
        )
    )
    by_zoho = {c["zoho_id"]: c for c in contacts if c["zoho_id"]}
    by_email = {c["email"]: c for c in contacts if c["email"]}
    decided = {
        (contact_id, code)
        for contact_id, code in ConsentState.objects.filter(
            contact_id__in=[c["pk"] for c in contacts], version__gt=0
        )
        .exclude(event__idempotency_key__startswith=f"{KEY_PREFIX}:")
        .values_list("contact_id", "purpose__code")
    }
    out = []
    for c in fresh:
        contact = by_zoho.get(c.zoho_id) or by_email.get(c.email)
        if contact is not None:
            if contact["erased_at"] is not None:
                # An erased person's CRM record (anonymised, or kept): the erasure decided.
                c.outcome = "erased"
                tally.ledger_decides += 1
                continue
            if (contact["pk"], c.decision.purpose) in decided:
                c.outcome = "ledger decides"
                tally.ledger_decides += 1
                continue
            if contact["first_name"] or contact["last_name"]:
                # Names are identifiers too: never overwritten by the import.
                c.identity = services.ContactIdentity(
                    email=c.identity.email,
                    phone=c.identity.phone,
                    app_user_id=c.identity.app_user_id,
                    zoho_id=c.identity.zoho_id,
                )
        out.append(c)
    return out


def _precheck(
    candidates: list[Candidate], tally: Tally, lookups: services.Lookups, *, full: bool
) -> list[Candidate]:
    """Clearer words for an opt-in the import cannot give, and with ``full`` (the dry run's
    verdicts) every rule of the ledger, before any write. (A real run leaves the other rules to
    the write path, which checks each decision anyway.)"""
    now = timezone.now()
    out = []
    for c in candidates:
        d = c.decision
        reason = ""
        if d.status == ConsentStatus.OPTED_IN and not d.policy_version:
            reason = (
                f"no published policy version was in force on {d.occurred_at.date().isoformat()}: publish the "
                "notice then in force, or give --policy-version"
            )
        elif (
            d.status == ConsentStatus.OPTED_IN
            and "double_opt_in_confirmed_at" not in d.evidence
            and (lookups.purpose(d.purpose).double_opt_in_required)
        ):
            reason = (
                f"{d.purpose} asks for double opt-in, and the CRM consent object does not show consent "
                "obtained through Email (Zoho's consent mail); left for a re-permission campaign"
            )
        elif full:
            try:
                services.consent_input_check(identity=c.identity, decision=d)
                consent_check(d, api_client=None, actor_user=None, lookups=lookups, now=now)
            except services.ConsentRejected as exc:
                reason = f"{exc.field}: {exc.message}"
        if reason:
            c.outcome = f"refused: {reason}"
            tally.refused += 1
            tally.problem(c.where, f"{d.purpose} {d.status} not recorded: {reason}")
            continue
        out.append(c)
    return out


def _record(candidates: list[Candidate], tally: Tally, lookups: services.Lookups) -> None:
    if not candidates:
        return
    outcomes = services.consent_ingest_batch(
        items=[(c.identity, c.decision) for c in candidates], api_client=None, lookups=lookups
    )
    for c, outcome in zip(candidates, outcomes, strict=True):
        if isinstance(outcome, services.RecordResult):
            if outcome.created:
                c.outcome = "recorded"
                tally.events_recorded += 1
            else:
                c.outcome = "already recorded"
                tally.events_existing += 1
        elif isinstance(outcome, services.ConsentRejected):
            c.outcome = f"refused: {outcome.field}: {outcome.message}"
            tally.refused += 1
            tally.problem(
                c.where, f"{c.decision.purpose} {c.decision.status} not recorded: {outcome.message}"
            )
        else:
            c.outcome = "refused: the key was recorded before with other content"
            tally.refused += 1
            tally.problem(
                c.where, f"{c.decision.purpose}: idempotency key recorded before with other content"
            )


# The run --------------------------------------------------------------------------------------


def _me() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_alive(run: ImportRun, now: datetime) -> bool:
    """Whether the process running the run is alive (on this host: by its pid; elsewhere: by
    its heartbeat)."""
    if not run.owner:
        return False  # stopped on an error
    host, _, pid = run.owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return run.heartbeat_at is not None and now - run.heartbeat_at < STALE_AFTER


def import_run_claim(
    *, method: str, since: datetime | None, requested_by: str = "", fresh: bool = False
) -> ImportRun:
    """The run to work on: the unfinished one, taken over when its process is gone (ImportBusy
    when it still runs), or a new one. ``fresh``: a stopped run is marked failed instead."""
    now = timezone.now()
    running = ImportRun.objects.filter(status=ImportRun.Status.RUNNING).first()
    if running is not None:
        if run_alive(running, now):
            raise ImportBusy(
                f"Import {running.pk} is running ({running.owner}, last progress {running.heartbeat_at})."
            )
        if fresh:
            ImportRun.objects.filter(pk=running.pk, owner=running.owner).update(
                status=ImportRun.Status.FAILED,
                finished_at=now,
                error="Abandoned (--fresh) after its process stopped.",
            )
        else:
            taken = ImportRun.objects.filter(pk=running.pk, owner=running.owner).update(
                owner=_me(), heartbeat_at=now, resumed=running.resumed + 1
            )
            if not taken:
                raise ImportBusy(f"Import {running.pk} was just taken over by another process.")
            running.refresh_from_db()
            if running.error:
                running.error = ""
                running.save(update_fields=["error"])
            return running
    try:
        with transaction.atomic():
            return ImportRun.objects.create(
                method=method, since=since, requested_by=requested_by[:150], owner=_me(), heartbeat_at=now
            )
    except IntegrityError:
        raise ImportBusy("Another import started at the same moment.") from None


@dataclass
class Progress:
    run: ImportRun | None
    tally: Tally
    note: str = ""
    table: list[Candidate] = field(default_factory=list)


Reporter = Callable[[Progress], None]


def _commit(run: ImportRun, tally: Tally, cursor: dict[str, Any], *, phase: str | None = None) -> None:
    """Add a batch's counts, move the cursor, beat the heart: in the batch's transaction."""
    for name in ("records_read", "records_bad", "list_rows_read", "events_recorded", "events_existing",
                 "ledger_decides", "refused"):  # fmt: skip
        setattr(run, name, getattr(run, name) + getattr(tally, name))
    room = PROBLEMS_KEPT - len(run.problems)
    if room > 0 and tally.problems:
        run.problems = [*run.problems, *tally.problems[:room]]
    run.cursor = cursor
    if phase is not None:
        run.phase = phase
    run.heartbeat_at = timezone.now()
    run.save()


def zoho_import(
    *,
    zoho: ZohoClient,
    run: ImportRun | None,
    method: str,
    since: datetime | None = None,
    policy_label: str | None = None,
    list_keys: Sequence[str] | None = None,
    batch: int = BATCH,
    report: Reporter | None = None,
) -> Tally:
    """Import what Zoho says (see the module). ``run=None`` is the dry run: nothing is written,
    and ``report`` gets each batch's verdicts (`Progress.table`). Returns the totals of this call."""
    dry = run is None
    run_id = None if run is None else run.pk
    started_at = run.started_at if run is not None else timezone.now()
    lookups = services.Lookups()
    rules = rules_load(zoho=zoho, method=method, run_id=run_id, policy_label=policy_label)
    all_mappings = [m for ms in rules.mappings.values() for m in ms]
    total = Tally()
    cursor: dict[str, Any] = dict(run.cursor) if run is not None else {}

    def flush(
        candidates: list[Candidate],
        tally: Tally,
        new_cursor: dict[str, Any],
        note: str,
        phase: str | None = None,
    ) -> None:
        table = list(candidates)
        if dry:
            ready = _precheck(_sift(candidates, tally), tally, lookups, full=True)
            for c in ready:
                c.outcome = "would record"
        else:
            assert run is not None
            with transaction.atomic():
                ready = _precheck(_sift(candidates, tally), tally, lookups, full=False)
                _record(ready, tally, lookups)
                _commit(run, tally, new_cursor, phase=phase)
        for name in ("records_read", "records_bad", "list_rows_read", "events_recorded", "events_existing",
                     "ledger_decides", "refused"):  # fmt: skip
            setattr(total, name, getattr(total, name) + getattr(tally, name))
        total.problems.extend(tally.problems)
        if report is not None:
            report(Progress(run, tally, note, table))

    # CRM records, module by module (ZOHO_MODULES: Contacts, and Leads when configured)
    if run is None or run.phase == ImportRun.Phase.CRM:
        crm = dict(cursor.get("crm") or {})
        # Rows read so far (committed ones included), and those of the page a resumed run skips.
        seen = {"read": run.records_read if run is not None else 0, "skip": int(crm.get("page_rows") or 0)}
        modules = list(settings.ZOHO_MODULES) or [CONTACTS]
        first = modules.index(crm["module"]) if crm.get("module") in modules else 0
        for module in modules[first:]:
            if crm.get("module", CONTACTS) != module:
                crm = {"module": module}
            fields = crm_fields(zoho, all_mappings, module)
            last_module = module == modules[-1]
            if method == COQL:
                rows = crm_rows_coql(zoho, fields, since=since, after_id=crm.get("last_id"), module=module)
            else:

                def on_page(count: int | None, more: bool, last_module: bool = last_module) -> None:
                    # The number to read is known once the last page of the last module is.
                    if run is not None and count is not None and last_module and not more:
                        run.records_total = seen["read"] - seen["skip"] + count
                    seen["skip"] = 0

                rows = crm_rows_bulk(
                    zoho,
                    fields,
                    since=since,
                    page_token=crm.get("page_token"),
                    skip=int(crm.get("page_rows") or 0),
                    skip_last_id=str(crm.get("last_id") or ""),
                    on_page=on_page,
                    module=module,
                )
            candidates: list[Candidate] = []
            tally = Tally()
            note = "crm" if module == CONTACTS else f"crm {module}"
            for count, row in enumerate(rows, 1):
                tally.records_read += 1
                seen["read"] += 1
                try:
                    candidates.extend(crm_candidates(row, rules))
                except BadRecord as exc:
                    where = "crm" if module == CONTACTS else f"crm {module}"
                    tally.problem(f"{where} {row.values.get('id') or '?'}", str(exc))
                    tally.records_bad += 1
                record_id = str(row.values.get("id") or "")
                if method == COQL:
                    if record_id.isdigit():
                        crm = {"module": module, "last_id": record_id}
                else:
                    crm = {
                        "module": module,
                        "page_token": row.page_token,
                        "page_rows": row.page_row,
                        "last_id": record_id,
                    }
                if count % batch == 0:
                    flush(candidates, tally, {"crm": crm}, note)
                    candidates, tally = [], Tally()
            if last_module:
                cursor = {"crm": crm, "campaigns": {"list": 0}}
                flush(candidates, tally, cursor, note, ImportRun.Phase.CAMPAIGNS)
            else:
                crm = {"module": modules[modules.index(module) + 1]}
                flush(candidates, tally, {"crm": crm}, note)

    # Campaigns lists: each list read whole again after a crash (its rows carry no stable order)
    keys = list(list_keys if list_keys is not None else settings.ZOHO_CAMPAIGNS_LIST_KEYS)
    start = int((cursor.get("campaigns") or {}).get("list") or 0)
    for index in range(start, len(keys)):
        list_key = keys[index]
        candidates, tally = [], Tally()
        try:
            for count, entry in enumerate(zoho.campaigns.list_subscribers(list_key, "unsub"), 1):
                tally.list_rows_read += 1
                try:
                    candidates.append(
                        campaigns_candidate(list_key, entry, occurred=started_at, run_id=run_id)
                    )
                except BadRecord as exc:
                    tally.records_bad += 1
                    tally.problem(f"campaigns {list_key}", str(exc))
                if count % batch == 0:
                    flush(
                        candidates, tally, {**cursor, "campaigns": {"list": index}}, f"campaigns {list_key}"
                    )
                    candidates, tally = [], Tally()
        except ZohoPermanentError as exc:
            # A list Campaigns does not know (a wrong key): reported, and the other lists go on.
            # (A transient error stops the run, to be resumed.)
            tally.problem(f"campaigns {list_key}", f"the list could not be read: {exc}")
        cursor = {**cursor, "campaigns": {"list": index + 1}}
        flush(candidates, tally, cursor, f"campaigns {list_key}")
    if run is not None:
        run.phase = ImportRun.Phase.DONE
        run.status = ImportRun.Status.DONE
        run.finished_at = timezone.now()
        run.save()
    return total


def import_run_stop(run: ImportRun, exc: BaseException) -> None:
    """The run stopped on an error (Zoho down, a bug): it stays to be resumed by the next
    command, which goes on from its last committed batch."""
    ImportRun.objects.filter(pk=run.pk).update(owner="", error=f"{type(exc).__name__}: {exc}"[:2000])
