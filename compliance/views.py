"""History pages, the desk's recording pages and the policy versions. Each view checks who may
see it, then reads through a selector or writes through one service."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core import signing
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django_tables2 import RequestConfig
from django_tables2.export import TableExport

from compliance import panels, selectors, services
from compliance.filters import AccessLogFilter, ContactEventFilter, ContactSearchFilter, PolicyVersionFilter
from compliance.forms import (
    CorrectionForm,
    DeskDecisionForm,
    PhoneRequestForm,
    PolicyDiffForm,
    PolicyPublishForm,
)
from compliance.models import AccessLog, Contact
from compliance.tables import (
    AccessLogTable,
    ConsentEventTable,
    ConsentStateTable,
    ContactHistoryTable,
    ContactSearchTable,
    PolicyVersionTable,
    SuppressionTable,
)
from compliance.views_erasure import erased_refusal, erasure_context

EXPORT_FORMATS = (TableExport.CSV, TableExport.XLSX)
HISTORY_PERMISSION = "compliance.view_history"
CONTACTS_PER_PAGE = 25
EVENTS_PER_PAGE = 25
IDENTITY_EVENTS_SHOWN = 100


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def contact_search(request: HttpRequest) -> HttpResponseBase:
    search = ContactSearchFilter(request.GET or None, queryset=Contact.objects.none())
    query = request.GET.get("q", "").strip()
    table = None
    if query and search.is_valid():
        if _export_format(request):
            export = ContactSearchTable(search.qs)
            return _export(
                request,
                export,
                name="contacts",
                contact_ids_of=lambda rows: [r.pk for r in rows],
                query=query,
            )
        table = ContactSearchTable(search.qs)
        RequestConfig(request, paginate={"per_page": CONTACTS_PER_PAGE}).configure(table)
        # The terms only as their hash; the contacts this page of results shows.
        services.access_log_record(
            request=request,
            kind=AccessLog.Kind.SEARCH,
            query=query,
            contact_ids=[row.record.pk for row in table.page.object_list],
        )
    return render(
        request,
        "compliance/contact_search.html",
        {"query": query, "filter": search, "table": table, "export_query": _query_without(request, "page")},
    )


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def contact_detail(request: HttpRequest, contact_id: int) -> HttpResponse:
    contact = get_object_or_404(Contact, pk=contact_id)
    services.access_log_record(request=request, kind=AccessLog.Kind.HISTORY_VIEW, contact_ids=[contact.pk])
    events = ConsentEventTable(selectors.event_history(contact=contact), prefix="events-")
    RequestConfig(request, paginate={"per_page": EVENTS_PER_PAGE}).configure(events)
    return render(
        request,
        "compliance/contact_detail.html",
        {
            "contact": contact,
            "states": ConsentStateTable(selectors.contact_states(contact=contact)),
            "suppressions": SuppressionTable(selectors.contact_suppressions(contact=contact)),
            "events": events,
            "identity_history": selectors.identity_history(contact=contact)[:IDENTITY_EVENTS_SHOWN],
            # What the apps built on the ledger know of this contact (the sync's Zoho proof).
            "panels": panels.contact_panels(request=request, contact=contact),
            **erasure_context(request=request, contact=contact),
        },
    )


ACCESS_LOG_PERMISSION = "compliance.view_access_log"
ACCESS_LOG_PER_PAGE = 50
ACCESS_LOG_CSV_HEADER = ["when (UTC)", "user", "ip", "kind", "path", "contact ids", "query hash", "detail"]


@login_required
@permission_required(ACCESS_LOG_PERMISSION, raise_exception=True)
def access_log(request: HttpRequest) -> HttpResponseBase:
    """Who read whose data: filters, a page of entries by keyset, and exports (themselves logged)."""
    log_filter = AccessLogFilter(request.GET or None, queryset=selectors.access_log_entries())
    entries = _filtered(log_filter, selectors.access_log_entries())
    if request.GET.get("format") == "csv":
        # The first export, kept for its callers: streamed, so it has no row limit.
        services.access_log_record(request=request, kind=AccessLog.Kind.EXPORT, detail="access log CSV")
        return _access_log_csv(entries)
    if _export_format(request):
        return _export(
            request,
            AccessLogTable(entries.prefetch_related(None).order_by("-created_at", "-id")),
            name="access-log",
            rows_ready=selectors.access_log_contact_ids_attach,
        )
    oldest_first = request.GET.get("sort") == "created_at"
    page = selectors.access_log_page(
        selectors.access_log_shown(entries),
        after=request.GET.get("after", ""),
        before=request.GET.get("before", ""),
        size=ACCESS_LOG_PER_PAGE,
        oldest_first=oldest_first,
    )
    table = AccessLogTable(page.rows, order_by="created_at" if oldest_first else "-created_at")
    return render(
        request,
        "compliance/access_log.html",
        {
            "filter": log_filter,
            "table": table,
            "page": page.rows,
            "previous_query": _query_with(request, before=page.previous_cursor)
            if page.previous_cursor
            else "",
            "next_query": _query_with(request, after=page.next_cursor) if page.next_cursor else "",
            "export_query": _query_without(request, "after", "before"),
        },
    )


class _Echo:
    def write(self, value: str) -> str:
        return value


def _access_log_csv(entries: QuerySet[AccessLog]) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(ACCESS_LOG_CSV_HEADER)
        for entry in entries.order_by("-created_at", "-id").iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    entry.created_at.astimezone(UTC).isoformat(),
                    entry.username,
                    entry.ip or "",
                    entry.kind,
                    entry.path,
                    " ".join(str(c.contact_id) for c in entry.contacts.all()),
                    entry.query_hash,
                    entry.detail,
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="access-log.csv"'
    return response


# --- Exports: django-tables2's ?_export=csv|xlsx, every one logged ----------------------------

# More rows than this are not exported at once (the file is built in memory): narrow the filter.
EXPORT_MAX_ROWS = 100_000


def _filtered(filterset: Any, everything: QuerySet[Any]) -> QuerySet[Any]:
    """What a table shows: what the filter keeps; nothing when the filter is invalid (its form
    says why), so an export never holds more than was asked for."""
    if not filterset.is_bound:
        return everything
    result: QuerySet[Any] = filterset.qs if filterset.is_valid() else everything.none()
    return result


def _export_format(request: HttpRequest) -> str:
    fmt = request.GET.get("_export", "")
    return fmt if fmt in EXPORT_FORMATS else ""


def _export(
    request: HttpRequest,
    table: Any,
    *,
    name: str,
    contact_ids_of: Callable[[list[Any]], Iterable[int]] | None = None,
    query: str = "",
    rows_ready: Callable[[list[Any]], None] | None = None,
) -> HttpResponseBase:
    """The table's rows (every row the filter keeps, not one page) as CSV or XLSX, logged with
    the format, the row count and, where the rows are people or their events, whose they are.
    `rows_ready` gets the rows read, before they are written (to attach what a column needs in one
    query for all of them)."""
    fmt = _export_format(request)
    RequestConfig(request, paginate=False).configure(table)  # the page's sort order, no pages
    rows = (
        list(table.data.data[: EXPORT_MAX_ROWS + 1])
        if isinstance(table.data.data, QuerySet)
        else list(table.data.data)
    )
    if len(rows) > EXPORT_MAX_ROWS:
        messages.error(
            request, f"More than {EXPORT_MAX_ROWS:,} rows match: narrow the filter to export them."
        )
        return HttpResponseRedirect(f"{request.path}?{_query_without(request, '_export')}")
    if rows_ready is not None:
        rows_ready(rows)
    table = type(table)(rows, exclude=table.exclude, order_by=())  # the rows, in the order read
    exporter = TableExport(fmt, table)
    services.access_log_record(
        request=request,
        kind=AccessLog.Kind.EXPORT,
        contact_ids=contact_ids_of(rows) if contact_ids_of else (),
        query=query,
        detail=f"{name} {fmt.upper()}, {len(rows)} row{'s' if len(rows) != 1 else ''}",
    )
    response: HttpResponse = exporter.response(filename=f"{name}.{fmt}")
    return response


def _query_without(request: HttpRequest, *names: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


def _query_with(request: HttpRequest, **values: str) -> str:
    query = request.GET.copy()
    for name in ("after", "before", "_export"):
        query.pop(name, None)
    for name, value in values.items():
        query[name] = value
    return query.urlencode()


# --- A contact's history as a table of its own: filters, sorting, exports ---------------------


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def contact_history(request: HttpRequest, contact_id: int) -> HttpResponseBase:
    contact = get_object_or_404(Contact, pk=contact_id)
    history = ContactEventFilter(request.GET or None, queryset=selectors.event_history(contact=contact))
    events = _filtered(history, selectors.event_history(contact=contact))
    if _export_format(request):
        return _export(
            request,
            ContactHistoryTable(events),
            name=f"contact-{contact.pk}-history",
            contact_ids_of=lambda _: [contact.pk],
        )
    services.access_log_record(request=request, kind=AccessLog.Kind.HISTORY_VIEW, contact_ids=[contact.pk])
    table = ContactHistoryTable(events)
    RequestConfig(request, paginate={"per_page": EVENTS_PER_PAGE}).configure(table)
    return render(
        request,
        "compliance/contact_history.html",
        {
            "contact": contact,
            "filter": history,
            "table": table,
            "export_query": _query_without(request, "page", "_export"),
        },
    )


# --- Recording at the desk: a phone request (officers), a correction (admins) -----------------

DESK_SALT = "compliance.views.desk-decision"
# A confirmation page left open longer than this must be filled in again.
DESK_CONFIRM_MAX_AGE_S = 3600
DESK_KINDS: dict[str, dict[str, Any]] = {
    "phone": {
        "permission": "compliance.record_phone_consent",
        "form": PhoneRequestForm,
        "text_field": "note",
        "title": "Record a phone request",
        "done": "Phone request recorded",
    },
    "correction": {
        "permission": "compliance.correct_consent",
        "form": CorrectionForm,
        "text_field": "reason",
        "title": "Record a correction",
        "done": "Correction recorded",
    },
}


@login_required
@permission_required(DESK_KINDS["phone"]["permission"], raise_exception=True)
def contact_phone_request(request: HttpRequest, contact_id: int) -> HttpResponse:
    """An officer, as customer service, records what the person asked for on the phone."""
    return _desk_decision(request, contact_id, kind="phone")


@login_required
@permission_required(DESK_KINDS["correction"]["permission"], raise_exception=True)
def contact_correction(request: HttpRequest, contact_id: int) -> HttpResponse:
    """An admin records a compensating event, with a reason and optionally an evidence file."""
    return _desk_decision(request, contact_id, kind="correction")


def _desk_decision(request: HttpRequest, contact_id: int, *, kind: str) -> HttpResponse:
    """Two steps, no JavaScript: the form, then the outcome to confirm. The confirmation carries
    the decision as a signed payload (for this user, this contact, an hour), with the idempotency
    key chosen at the first step, so confirming twice records once."""
    spec = DESK_KINDS[kind]
    contact = get_object_or_404(Contact, pk=contact_id)
    if contact.erased_at is not None:
        return erased_refusal(request, contact, "An erased contact records no more decisions or corrections.")
    form: DeskDecisionForm
    if request.method != "POST":
        form = spec["form"](initial={"purpose": request.GET.get("purpose", "")})
        return _desk_form(request, contact, kind, form)
    if "payload" in request.POST:
        payload = _desk_payload(request, contact, kind)
        if payload is None:
            form = spec["form"]()
            problem = "This confirmation expired or was altered: fill in the form again."
            return _desk_form(request, contact, kind, form, status=400, problem=problem)
        if request.POST.get("action") != "confirm":
            # "Change": back to the form, filled in as it was (a file is attached again).
            form = spec["form"](initial=payload["values"])
            return _desk_form(request, contact, kind, form)
        return _desk_confirm(request, contact, kind, payload)
    form = spec["form"](request.POST, request.FILES)
    if not form.is_valid():
        return _desk_form(request, contact, kind, form, status=400)
    draft: dict[str, Any] = {
        "kind": kind,
        "contact": contact.pk,
        "user": request.user.pk,
        "values": {**form.decision_values(), spec["text_field"]: form.cleaned_data[spec["text_field"]]},
        "occurred_at": timezone.now().isoformat(),
        "key": f"desk:{kind}:{uuid.uuid4()}",
        "file": None,
    }
    decision = _desk_decision_of(kind, draft, staged=None)
    user: Any = request.user
    try:
        preview = services.consent_preview(contact=contact, decision=decision, actor_user=user)
    except services.ConsentRejected as rejected:
        form.add_rejection(rejected)
        return _desk_form(request, contact, kind, form, status=400)
    upload = form.cleaned_data.get("evidence_file")
    staged = services.correction_file_stage(upload=upload) if upload else None
    draft["file"] = staged.as_payload() if staged else None
    return render(
        request,
        "compliance/desk_confirm.html",
        {
            "contact": contact,
            "kind": kind,
            "title": spec["title"],
            "preview": preview,
            "values": draft["values"],
            "staged": staged,
            "payload": signing.dumps(draft, salt=DESK_SALT, compress=True),
        },
    )


def _desk_form(
    request: HttpRequest,
    contact: Contact,
    kind: str,
    form: DeskDecisionForm,
    *,
    status: int = 200,
    problem: str = "",
) -> HttpResponse:
    """The form; `problem` says why an unbound one is shown again (its fields have no errors)."""
    spec = DESK_KINDS[kind]
    return render(
        request,
        "compliance/desk_form.html",
        {
            "contact": contact,
            "kind": kind,
            "title": spec["title"],
            "form": form,
            "states": _states_of(contact),
            "problem": problem,
        },
        status=status,
    )


def _states_of(contact: Contact) -> ConsentStateTable:
    return ConsentStateTable(selectors.contact_states(contact=contact))


def _desk_payload(request: HttpRequest, contact: Contact, kind: str) -> dict[str, Any] | None:
    try:
        payload: dict[str, Any] = signing.loads(
            request.POST["payload"], salt=DESK_SALT, max_age=DESK_CONFIRM_MAX_AGE_S
        )
    except signing.BadSignature:  # SignatureExpired is one
        return None
    if (payload.get("kind"), payload.get("contact"), payload.get("user")) != (
        kind,
        contact.pk,
        request.user.pk,
    ):
        return None
    return payload


def _desk_decision_of(kind: str, payload: dict[str, Any], *, staged: services.StagedFile | None) -> Any:
    values = payload["values"]
    common = {
        "purpose": values["purpose"],
        "status": values["status"],
        "frequency": values["frequency"],
        "policy_version": values["policy_version"],
        "occurred_at": datetime.fromisoformat(payload["occurred_at"]),
        "idempotency_key": payload["key"],
    }
    if kind == "phone":
        return services.phone_request_decision(**common, note=values["note"])
    return services.correction_decision(**common, reason=values["reason"], evidence_file=staged)


def _desk_confirm(request: HttpRequest, contact: Contact, kind: str, payload: dict[str, Any]) -> HttpResponse:
    spec = DESK_KINDS[kind]
    staged = services.StagedFile.from_payload(payload["file"]) if payload.get("file") else None
    decision = _desk_decision_of(kind, payload, staged=staged)
    user: Any = request.user
    try:
        if kind == "phone":
            result = services.consent_phone_record(contact=contact, decision=decision, actor_user=user)
        else:
            result = services.consent_correct(
                contact=contact, decision=decision, actor_user=user, evidence_file=staged
            )
    except (services.ConsentRejected, ValidationError) as refused:
        # The chain moved on since the preview (or the file expired): nothing was written.
        form = spec["form"](initial=payload["values"])
        message = (
            refused.message if isinstance(refused, services.ConsentRejected) else " ".join(refused.messages)
        )
        problem = f"Nothing was recorded: {message}"
        return _desk_form(request, contact, kind, form, status=409, problem=problem)
    event = result.event
    if result.created:
        messages.success(
            request,
            f"{spec['done']}: {event.purpose.code} is now “{event.get_status_display()}” (event {event.version}).",
        )
    else:
        messages.info(request, f"{spec['done']} already: this confirmation was sent before.")
    return HttpResponseRedirect(contact.get_absolute_url())


# --- Policy versions ---------------------------------------------------------------------------

POLICY_PUBLISH_PERMISSION = "compliance.add_policyversion"


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def policy_list(request: HttpRequest) -> HttpResponseBase:
    """Every published version, how many current opt-ins cite it, and two to compare."""
    versions = PolicyVersionFilter(request.GET or None, queryset=selectors.policy_versions())
    rows = list(_filtered(versions, selectors.policy_versions()))
    counts = selectors.policy_version_consent_counts()
    for policy in rows:
        policy.consent_count = counts.get(policy.pk, 0)
    table = PolicyVersionTable(rows)
    if _export_format(request):
        return _export(request, table, name="policy-versions")
    RequestConfig(request, paginate={"per_page": 50}).configure(table)
    latest = rows[:2]
    diff_form = PolicyDiffForm(
        initial={"old": latest[1].label, "new": latest[0].label} if len(latest) == 2 else None
    )
    return render(
        request,
        "compliance/policy_list.html",
        {
            "filter": versions,
            "table": table,
            "diff_form": diff_form,
            "may_publish": request.user.has_perm(POLICY_PUBLISH_PERMISSION),
            "newest": rows[0] if rows else None,
            "export_query": _query_without(request, "page", "_export"),
        },
    )


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def policy_detail(request: HttpRequest, policy_id: int) -> HttpResponse:
    policy = get_object_or_404(selectors.policy_versions(), pk=policy_id)
    return render(
        request,
        "compliance/policy_detail.html",
        {"policy": policy, "consent_count": selectors.policy_version_consent_counts().get(policy.pk, 0)},
    )


@login_required
@permission_required(POLICY_PUBLISH_PERMISSION, raise_exception=True)
def policy_publish(request: HttpRequest) -> HttpResponse:
    """Publish a new version; a published one never changes (a new text is a new version)."""
    form = PolicyPublishForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            policy = services.policy_version_publish(
                label=data["label"], effective_at=data["effective_at"], text=data["text"], url=data["url"]
            )
        except ValidationError as refused:
            form.add_validation_error(refused)
        else:
            messages.success(
                request,
                f"Policy version {policy.label} is published. These current opt-ins cite an older version.",
            )
            # Publishing opens the re-permission view (compliance/lifecycle/views_repermission.py).
            return HttpResponseRedirect(reverse("lifecycle:repermission", args=[policy.pk]))
    return render(
        request, "compliance/policy_publish.html", {"form": form}, status=400 if form.errors else 200
    )


@login_required
@permission_required(HISTORY_PERMISSION, raise_exception=True)
def policy_diff(request: HttpRequest) -> HttpResponse:
    form = PolicyDiffForm(request.GET or None)
    lines = None
    if form.is_bound and form.is_valid():
        lines = selectors.policy_version_diff(old=form.cleaned_data["old"], new=form.cleaned_data["new"])
    return render(
        request,
        "compliance/policy_diff.html",
        {
            "form": form,
            "lines": lines,
            "old": form.cleaned_data.get("old") if lines is not None else None,
            "new": form.cleaned_data.get("new") if lines is not None else None,
        },
        status=400 if form.errors else 200,
    )
