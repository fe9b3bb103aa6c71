"""Setup diagnostics (DESIGN.md "Diagnostics"): what would make the sync fail, found before it does.

`zoho_diagnose` runs every check against the configured Zoho org and returns them in order,
each with what it found and, when it failed, its fix in words: where in Zoho's setup (or in
our settings) to change it. `manage.py zoho_doctor` prints them and exits 1 on a failure;
admins see the same checks on the doctor page (`sync.views_doctor`).

1. the token and the data centre (a refresh-token grant);
2. the scopes granted, by exercising each one we need (``OAUTH_SCOPE_MISMATCH`` names it);
3. the API user and its profile;
4. every mapped field: it exists, is visible and editable for the API user (Zoho's metadata:
   ``read_only`` for this user, ``field_read_only`` for everyone, ``operation_type.api_update``;
   consent keys through their own metadata), and the consent picklists hold what the
   projection writes;
5. workflows seen resetting fields after our writes (from the discrepancies verify recorded:
   no call);
6. optionally (``ZOHO_DIAGNOSTIC_RECORD_ID``) a live probe: write each mapped field of that
   record, wait, read it back, write the old values back: a silent drop or a workflow reset shows;
7. the Campaigns list keys exist;
8. the credits left today.

Each check makes at most a few calls (recorded and gated like every other); the probe writes
one record that the admin named for it and restores it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from compliance.models import Source
from sync import quota
from sync.models import Discrepancy, ZohoCall
from sync.projection import CONSENT_OBJECT, THROUGH_WORDS, ConsentPicklists, active_mappings, bounce_field
from sync.zoho import CrmUser, FieldInfo, ZohoClient
from sync.zoho.errors import ZohoAuthError, ZohoAuthRevoked, ZohoError, ZohoPermanentError

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"
# Where each scope is exercised, and the error a missing one gives.
SCOPE_MISMATCH = "OAUTH_SCOPE_MISMATCH"
FIELD_PERMISSION_FIX = (
    "In Zoho CRM: Setup > Customization > Modules and Fields > Contacts > Fields, open the field "
    "'{label}', choose Set Permission, and give the profile '{profile}' Read and Write "
    "(or give the API user a profile that has it)."
)
WORKFLOW_FIX = (
    "In Zoho CRM: Setup > Automation > Workflow Rules, find the rule on Contacts whose field update "
    "sets '{field}', and stop it from running after API edits (add a condition, or remove that "
    "field update). Then retry the discrepancies."
)


@dataclass(frozen=True)
class Check:
    """One diagnostic: its outcome (``ok``, ``fail``, ``warn``, ``skip``), what it found, and
    for a failure or warning the fix in words."""

    key: str
    title: str
    status: str
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == FAIL


@dataclass
class Diagnosis:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return not any(c.failed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.failed]


def _scope_fix(scope: str) -> str:
    return (
        f"The refresh token lacks the scope {scope}. In the Zoho API console (api-console.zoho.<dc>) "
        "generate a new grant token for this client with every scope Consent Desk needs "
        "(docs/zoho-client.md), exchange it for a refresh token, and set ZOHO_REFRESH_TOKEN."
    )


def _check_token(zoho: ZohoClient) -> Check:
    title = "Token and data centre"
    try:
        token = zoho.tokens.get()
    except ZohoAuthRevoked as exc:
        return Check(
            "token",
            title,
            FAIL,
            str(exc),
            "The refresh token was revoked or evicted (Zoho keeps 20 per user). Generate a new one in "
            "the Zoho API console and set ZOHO_REFRESH_TOKEN.",
        )
    except ZohoAuthError as exc:
        return Check(
            "token",
            title,
            FAIL,
            str(exc),
            f"Check ZOHO_CLIENT_ID and ZOHO_CLIENT_SECRET, and that ZOHO_DC ({zoho.config.dc}) is the data "
            "centre where the client was registered: a client exists in one data centre only "
            f"(accounts host {zoho.config.accounts_url}).",
        )
    except ZohoError as exc:
        return Check("token", title, FAIL, f"Zoho Accounts did not answer: {exc}", "Retry later.")
    domain = zoho.config.api_domain or token.api_domain
    return Check("token", title, OK, f"A token was minted at {zoho.config.accounts_url}; CRM host {domain}.")


def _exercise(call: Callable[[], Any]) -> ZohoError | None:
    """Run a call that needs a scope; None when Zoho let it through (even with another error)."""
    try:
        call()
    except ZohoError as exc:
        if exc.http_status == 401 or exc.code == SCOPE_MISMATCH:
            return exc
    return None


def _check_scopes(zoho: ZohoClient) -> list[Check]:
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("ZohoCRM.modules.ALL", lambda: zoho.crm.get_many(["1"], ["Email"])),
        ("ZohoCRM.coql.READ", lambda: zoho.crm.coql("select id from Contacts limit 1")),
        ("ZohoCRM.settings.fields.READ", lambda: zoho.crm.fields("Contacts")),
        ("ZohoCRM.users.READ", lambda: zoho.crm.current_user()),
        ("ZohoCRM.bulk.ALL", lambda: zoho.crm.bulk.status("1")),
    ]
    checks = []
    for scope, call in calls:
        error = _exercise(call)
        if error is None:
            checks.append(
                Check(f"scope:{scope}", f"Scope {scope}", OK, "Granted: a call that needs it went through.")
            )
        elif error.code == SCOPE_MISMATCH:
            checks.append(
                Check(
                    f"scope:{scope}",
                    f"Scope {scope}",
                    FAIL,
                    f"Missing: Zoho answered {error.code}.",
                    _scope_fix(scope),
                )
            )
        else:
            checks.append(
                Check(
                    f"scope:{scope}",
                    f"Scope {scope}",
                    FAIL,
                    f"Zoho refused the token: {error}",
                    "See the token check.",
                )
            )
    return checks


def _check_user(zoho: ZohoClient) -> tuple[Check, CrmUser | None]:
    title = "API user and profile"
    try:
        user = zoho.crm.current_user()
    except ZohoError as exc:
        return Check(
            "user", title, FAIL, f"Zoho did not say who the API user is: {exc}", "See the scope checks."
        ), None
    detail = (
        f"{user.full_name} <{user.email}>, profile {user.profile_name or '?'}, role {user.role_name or '?'}"
    )
    if user.status and user.status != "active":
        return (
            Check(
                "user",
                title,
                FAIL,
                f"{detail}; status {user.status}.",
                "In Zoho CRM: Setup > Users and Control > Users, activate the user, or authorise the "
                "client as an active user.",
            ),
            user,
        )
    return Check("user", title, OK, detail + "."), user


def _field_check(name: str, info: FieldInfo | None, profile: str, where: str) -> Check:
    title = f"Field {name}"
    if info is None:
        return Check(
            f"field:{name}",
            title,
            FAIL,
            f"The {where} has no field with the API name {name}.",
            f"Create it in Zoho CRM (Setup > Customization > Modules and Fields > {where}) or change the "
            "mapping (Admin > Field mappings) to a field that exists.",
        )
    if info.api_editable:
        return Check(f"field:{name}", title, OK, f"Exists ({info.data_type}); the API user may edit it.")
    fix = (
        "Map another field: nobody can edit a system field (Admin > Field mappings)."
        if info.field_read_only
        else FIELD_PERMISSION_FIX.format(label=info.label, profile=profile)
    )
    return Check(f"field:{name}", title, FAIL, f"The API user cannot write it: {info.why_not_editable}.", fix)


def _check_fields(zoho: ZohoClient, user: CrmUser | None) -> tuple[list[Check], dict[str, FieldInfo]]:
    profile_id = user.profile_id if user else None
    profile = (user.profile_name if user else None) or "the API user's profile"
    try:
        contacts = zoho.crm.fields("Contacts", profile_id=profile_id)
    except ZohoError as exc:
        return [
            Check(
                "fields",
                "Mapped fields",
                FAIL,
                f"Zoho's field metadata could not be read: {exc}",
                "See the scope checks.",
            )
        ], {}
    checks = []
    consent: dict[str, FieldInfo] | None
    try:
        consent = zoho.crm.consent_fields(profile_id=profile_id)
    except ZohoPermanentError as exc:
        # The pushes go on without the consent object's picklist values (sync.projection).
        consent = None
        checks.append(
            Check(
                "consent-metadata",
                "The consent object's field metadata",
                WARN,
                f"Zoho did not give it ({exc}): whether the API user may edit the consent object's keys "
                "cannot be checked here, and pushes write no Data_Processing_Basis or Consent_Through "
                "value (the consent flags are written all the same).",
                "Check in Zoho CRM (Setup > Customization > Modules and Fields > Consents) that the API "
                "user's profile may edit the consent fields, and that GDPR compliance is enabled for "
                "Contacts.",
            )
        )
    names = sorted({m.crm_field for m in active_mappings() if m.pushes})
    if bounce_field():
        names.append(bounce_field())
    for name in names:
        top, _, key = name.partition(".")
        if key and top in contacts:
            if consent is not None:
                checks.append(_field_check(name, consent.get(key), profile, "Consents (the consent object)"))
        else:
            checks.append(_field_check(name, contacts.get(name), profile, "Contacts"))
    for key in ("Data_Processing_Basis", "Consent_Through"):  # written with every opt-in
        if consent is not None and f"{CONSENT_OBJECT}.{key}" not in names:
            checks.append(
                _field_check(
                    f"{CONSENT_OBJECT}.{key}", consent.get(key), profile, "Consents (the consent object)"
                )
            )
    app_field = settings.ZOHO_FIELD_APP_USER_ID
    if app_field:  # only read, to link contacts: it must exist and be visible
        info = contacts.get(app_field)
        if info is None or not info.visible:
            checks.append(_field_check(app_field, None, profile, "Contacts"))
        else:
            checks.append(
                Check(
                    f"field:{app_field}",
                    f"Field {app_field}",
                    OK,
                    "Exists; it is read to link contacts by app user id.",
                )
            )
    if consent is not None:
        checks.append(_check_picklists(consent))
    return checks, contacts


def _check_picklists(consent: dict[str, FieldInfo]) -> Check:
    title = "Consent picklists"
    basis = consent.get("Data_Processing_Basis")
    through = consent.get("Consent_Through")
    picklists = ConsentPicklists(basis.picklist if basis else (), through.picklist if through else ())
    missing = [
        f"Data_Processing_Basis has no value for '{state.replace('_', ' ')}'"
        for state in ("obtained", "awaiting", "not_responded")
        if picklists.basis_for(state) is None
    ]
    missing += [
        f"Consent_Through has no value for {Source(source).label}"
        for source in THROUGH_WORDS
        if picklists.through_for(source) is None
    ]
    found = f"Data_Processing_Basis: {', '.join(picklists.basis) or 'none'}; Consent_Through: {', '.join(picklists.through) or 'none'}."
    if missing:
        return Check(
            "picklists",
            title,
            FAIL,
            "; ".join(missing) + f". The org offers {found} Such a value is left out of every push.",
            "In Zoho CRM: Setup > Customization > Modules and Fields > Consents (GDPR compliance settings), "
            "add the missing picklist values (for example 'Obtained', 'Awaiting', 'Not Responded', "
            "'Portal', 'Call', 'Email', 'Others').",
        )
    return Check("picklists", title, OK, f"Every value the projection writes is offered. {found}")


def _check_workflows(zoho: ZohoClient, api_user_id: str | None) -> Check:
    """Workflows seen resetting fields after our writes: from verify's discrepancies, no call."""
    title = "Workflows resetting mapped fields"
    since = timezone.now() - timedelta(days=7)
    rows = (
        Discrepancy.objects.filter(kind=Discrepancy.Kind.OVERWRITTEN, opened_at__gte=since)
        .values("crm_field", "evidence__Modified_By__id", "evidence__Modified_By__name")
        .annotate(times=Count("id"))
        .order_by("-times")
    )
    found = [
        r
        for r in rows
        if r["evidence__Modified_By__id"] and str(r["evidence__Modified_By__id"]) != api_user_id
    ]
    if not found:
        return Check(
            "workflows",
            title,
            OK,
            "No field was seen reset by anyone else after our writes in the last 7 days.",
        )
    lines = [
        f"{r['evidence__Modified_By__name'] or r['evidence__Modified_By__id']} reset {r['crm_field']} "
        f"after our writes ({r['times']} time{'s' if r['times'] != 1 else ''} in 7 days)"
        for r in found[:5]
    ]
    fields = sorted({str(r["crm_field"]) for r in found})
    return Check(
        "workflows", title, FAIL, "; ".join(lines) + ".", WORKFLOW_FIX.format(field="', '".join(fields))
    )


def _flipped(value: Any) -> Any:
    return (not value) if isinstance(value, bool) or value is None else value


def _check_probe(zoho: ZohoClient, record_id: str, wait_s: float, api_user_id: str | None) -> Check:
    """Write each mapped boolean of the diagnostic record to its opposite, wait, read back, restore."""
    title = f"Live probe on record {record_id}"
    names = sorted({m.crm_field for m in active_mappings() if m.pushes})
    try:
        record = zoho.crm.get(record_id)
        if record is None:
            return Check(
                "probe",
                title,
                FAIL,
                "Zoho has no such record.",
                "Set ZOHO_DIAGNOSTIC_RECORD_ID to the id of a test contact that may be written.",
            )
        before = {n: _flat(record, n) for n in names}
        probe = {n: _flipped(v) for n, v in before.items() if isinstance(v, bool) or v is None}
        consent = record.get(CONSENT_OBJECT)
        consent_id = str(consent["id"]) if isinstance(consent, dict) and consent.get("id") else None
        update = zoho.crm.update([_nested(record_id, probe, consent_id)])
        result = update.results[0]
        if not result.ok:
            return Check(
                "probe",
                title,
                FAIL,
                f"Zoho refused the write: {result.code} {result.message}.",
                "See the field checks.",
            )
        time.sleep(wait_s)
        after = zoho.crm.get(record_id) or {}
        zoho.crm.update([_nested(record_id, before, consent_id)])  # put the record back
    except ZohoError as exc:
        return Check("probe", title, FAIL, f"The probe failed: {exc}", "See the checks above.")
    raw_by = after.get("Modified_By")
    modified_by: dict[str, Any] = raw_by if isinstance(raw_by, dict) else {}
    # A reset is someone else's edit at or after our write; an unchanged record is a silent drop.
    changed_after = _when(after.get("Modified_Time")) >= _when(result.modified_time)
    by_other = changed_after and modified_by.get("id") and str(modified_by.get("id")) != api_user_id
    problems = [n for n, v in probe.items() if _flat(after, n) != v]
    if not problems:
        return Check(
            "probe", title, OK, f"Wrote {len(probe)} fields, waited {wait_s:g} s, read them all back."
        )
    if by_other:
        who = modified_by.get("name") or modified_by.get("id")
        return Check(
            "probe",
            title,
            FAIL,
            f"{who} reset {', '.join(problems)} within {wait_s:g} s of our write.",
            WORKFLOW_FIX.format(field="', '".join(problems)),
        )
    return Check(
        "probe",
        title,
        FAIL,
        f"Zoho answered SUCCESS but did not keep {', '.join(problems)} (a silent drop): the API user "
        "may not edit them.",
        FIELD_PERMISSION_FIX.format(label=", ".join(problems), profile="the API user's profile"),
    )


def _when(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _flat(record: dict[str, Any], name: str) -> Any:
    top, _, key = name.partition(".")
    value = record.get(top)
    if key:
        return value.get(key) if isinstance(value, dict) else None
    return value


def _nested(record_id: str, values: dict[str, Any], consent_id: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record_id}
    for name, value in values.items():
        top, _, key = name.partition(".")
        if key:
            out.setdefault(top, {"id": consent_id} if consent_id else {})[key] = value
        else:
            out[name] = value
    return out


def _check_lists(zoho: ZohoClient) -> list[Check]:
    keys = list(settings.ZOHO_CAMPAIGNS_LIST_KEYS)
    if not keys:
        return [
            Check(
                "lists",
                "Campaigns lists",
                SKIP,
                "ZOHO_CAMPAIGNS_LIST_KEYS names no list: Campaigns is not written.",
            )
        ]
    checks = []
    for key in keys:
        title = f"Campaigns list {key}"
        try:
            next(iter(zoho.campaigns.list_subscribers(key, "active", page_size=1)), None)
        except ZohoError as exc:
            checks.append(
                Check(
                    f"list:{key}",
                    title,
                    FAIL,
                    f"Zoho Campaigns refused the list key: {exc}",
                    "In Zoho Campaigns: Contacts > Manage Lists, open the list, copy its list key (Setup > "
                    "Developer Space > API shows the keys), and correct ZOHO_CAMPAIGNS_LIST_KEYS.",
                )
            )
            continue
        checks.append(Check(f"list:{key}", title, OK, "The list exists and its contacts can be read."))
    return checks


def _check_credits(zoho: ZohoClient) -> Check:
    title = "API credits left"
    budget = quota.gate(zoho.config.cache_prefix).budget(fresh=True)
    header = (
        ZohoCall.objects.filter(
            credits_remaining__isnull=False, started_at__gte=timezone.now() - timedelta(hours=24)
        )
        .order_by("-started_at")
        .values_list("credits_remaining", flat=True)
        .first()
    )
    detail = f"{budget.remaining:,} of {budget.daily:,} left in the rolling 24 h ({budget.used:,} used by us)"
    if header is not None:
        detail += f"; Zoho's last X-API-CREDITS-REMAINING said {header:,}"
    if budget.tight:
        return Check(
            "credits",
            title,
            WARN,
            detail
            + f": below the reserve of {budget.reserve:,}, so reconciliation waits for the off-peak hours.",
            "Buy add-on credits (Setup > Developer Space > APIs > API Dashboard), or lower the load.",
        )
    return Check("credits", title, OK, detail + ".")


def zoho_diagnose(
    *, zoho: ZohoClient, probe_record_id: str | None = None, probe_wait_s: float = 30.0
) -> Diagnosis:
    """Run every check (see the module docstring) and return them in order."""
    checks = [_check_token(zoho)]
    if checks[0].failed:
        return Diagnosis([*checks, Check("rest", "Other checks", SKIP, "Not run: no token.")])
    checks += _check_scopes(zoho)
    user_check, user = _check_user(zoho)
    checks.append(user_check)
    field_checks, _ = _check_fields(zoho, user)
    checks += field_checks
    api_user_id = user.id if user else None
    checks.append(_check_workflows(zoho, api_user_id))
    record_id = probe_record_id if probe_record_id is not None else settings.ZOHO_DIAGNOSTIC_RECORD_ID
    if record_id:
        checks.append(_check_probe(zoho, record_id, probe_wait_s, api_user_id))
    else:
        checks.append(
            Check(
                "probe",
                "Live probe",
                SKIP,
                "Set ZOHO_DIAGNOSTIC_RECORD_ID to a test contact's id to write, wait and read back "
                "(catches silent drops and workflow resets before real contacts meet them).",
            )
        )
    checks += _check_lists(zoho)
    checks.append(_check_credits(zoho))
    return Diagnosis(checks)
