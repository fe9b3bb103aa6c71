"""Report pages: ask for a report, watch it being made, download it, verify one.

Who: requesting, reading and downloading reports takes `compliance.download_reports`
(REPORTS_PERMISSION); the download log takes `compliance.view_dashboards` (officers, admins);
the verify page and the root certificate, only a sign-in. Every page is for a signed-in
person: API keys authenticate the ingest API only, and reach nothing here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseGone, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_GET, require_http_methods
from django_tables2 import RequestConfig

from reports import services
from reports.forms import FORMS, VerifyForm
from reports.models import Report, ReportDownload, report_storage
from reports.signing import SigningUnavailable, signing_key_load, trust_roots_pem
from reports.tables import DownloadTable, ReportTable
from reports.verification import report_verify

REPORTS_PERMISSION = "compliance.download_reports"
DOWNLOAD_LOG_PERMISSION = "compliance.view_dashboards"
REPORTS_PER_PAGE = 25
DOWNLOADS_PER_PAGE = 50


def _signing_problem() -> str:
    """What stops reports from being signed, for the reports pages to say before anyone waits."""
    try:
        signing_key_load()
    except SigningUnavailable as exc:
        return str(exc)
    return ""


@login_required
@permission_required(REPORTS_PERMISSION, raise_exception=True)
@require_GET
def report_list(request: HttpRequest) -> HttpResponse:
    table = ReportTable(Report.objects.select_related("requested_by").order_by("-created_at"))
    RequestConfig(request, paginate={"per_page": REPORTS_PER_PAGE}).configure(table)
    return render(
        request,
        "reports/report_list.html",
        {"table": table, "signing_problem": _signing_problem(), "has_root": bool(trust_roots_pem())},
    )


@login_required
@permission_required(REPORTS_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def report_new(request: HttpRequest, kind: str = "") -> HttpResponse:
    forms = {name: form_class() for name, form_class in FORMS.items()}
    if request.method == "POST":
        if kind not in FORMS:
            raise Http404("no such kind of report")
        form = FORMS[kind](request.POST)
        if form.is_valid():
            report = services.report_request(scope=form.scope, user=request.user)  # type: ignore[arg-type]
            return redirect(report)
        forms[kind] = form
    return render(
        request,
        "reports/report_new.html",
        {
            "forms": forms,
            "signing_problem": _signing_problem(),
            "max_days": settings.REPORT_MAX_DAYS,
            "kind": kind,
        },
    )


@login_required
@permission_required(REPORTS_PERMISSION, raise_exception=True)
@require_GET
def report_detail(request: HttpRequest, report_id: Any) -> HttpResponse:
    report = get_object_or_404(Report.objects.select_related("requested_by"), pk=report_id)
    downloads = None
    if request.user.has_perm(DOWNLOAD_LOG_PERMISSION):
        downloads = DownloadTable(
            report.downloads.select_related("user", "report").order_by("-downloaded_at")
        )
        RequestConfig(request, paginate={"per_page": DOWNLOADS_PER_PAGE}).configure(downloads)
    return render(request, "reports/report_detail.html", {"report": report, "downloads": downloads})


@login_required
@permission_required(REPORTS_PERMISSION, raise_exception=True)
@require_GET
def report_progress(request: HttpRequest, report_id: Any) -> JsonResponse:
    report = get_object_or_404(Report, pk=report_id)
    return JsonResponse(
        {
            "status": report.status,
            "status_label": report.get_status_display(),
            "phase": report.phase,
            "percent": report.percent,
            "error": report.error,
            "finished": report.finished,
        }
    )


@login_required
@permission_required(REPORTS_PERMISSION, raise_exception=True)
@require_GET
def report_download(request: HttpRequest, report_id: Any) -> HttpResponseBase:
    report = get_object_or_404(Report, pk=report_id, status=Report.Status.READY)
    if report.file_deleted_at is not None:
        # Gone for good, and nothing handed out, so no download is logged.
        return HttpResponseGone(report.file_deleted_text, content_type="text/plain; charset=utf-8")
    handle = report_storage().open(report.file.name, "rb")
    services.report_download_record(report=report, request=request)
    return FileResponse(handle, as_attachment=True, filename=report.filename, content_type="application/pdf")


@login_required
@permission_required(DOWNLOAD_LOG_PERMISSION, raise_exception=True)
@require_GET
def download_list(request: HttpRequest) -> HttpResponse:
    table = DownloadTable(ReportDownload.objects.select_related("user", "report").order_by("-downloaded_at"))
    RequestConfig(request, paginate={"per_page": DOWNLOADS_PER_PAGE}).configure(table)
    return render(request, "reports/download_list.html", {"table": table})


@login_required
@require_http_methods(["GET", "POST"])
def report_verify_page(request: HttpRequest) -> HttpResponse:
    """Anyone signed in uploads a report PDF and gets every check's verdict (never a 500)."""
    limit = settings.REPORT_UPLOAD_MAX_BYTES
    context: dict[str, Any] = {"limit": limit, "form": VerifyForm()}
    if request.method != "POST":
        return render(request, "reports/report_verify.html", context)
    # Refuse an oversized upload from its declared length, before reading it.
    declared = int(request.META.get("CONTENT_LENGTH") or 0)
    if declared > limit + 64 * 1024:
        context["rejected"] = _too_large(limit)
        return render(request, "reports/report_verify.html", context, status=413)
    form = VerifyForm(request.POST, request.FILES)
    context["form"] = form
    if not form.is_valid():
        context["rejected"] = "Choose a PDF file to verify."
        return render(request, "reports/report_verify.html", context, status=400)
    upload = form.cleaned_data["file"]
    if upload.size > limit:
        context["rejected"] = _too_large(limit)
        return render(request, "reports/report_verify.html", context, status=413)
    with tempfile.TemporaryDirectory(prefix="verify-") as work:
        path = Path(work) / "upload.pdf"
        with path.open("wb") as copy:
            for chunk in upload.chunks():
                copy.write(chunk)
        try:
            verdict = report_verify(path)
        except Exception as exc:  # whatever the file holds, the person gets a verdict, not a 500
            context["rejected"] = f"This file could not be verified: {type(exc).__name__}: {exc}"
            return render(request, "reports/report_verify.html", context, status=400)
    context.update({"verdict": verdict, "filename": upload.name})
    status = 400 if verdict.bad_input else 200
    if verdict.bad_input:
        context["rejected"] = f"{upload.name}: {verdict.bad_input}."
    return render(request, "reports/report_verify.html", context, status=status)


def _too_large(limit: int) -> str:
    return (
        f"This file is larger than {filesizeformat(limit)}, the most this page takes: verify it with "
        "`python manage.py verify_report FILE` instead."
    )


@login_required
@require_GET
def trust_root_download(request: HttpRequest) -> HttpResponse:
    pem = trust_roots_pem()
    if not pem:
        raise Http404("No root certificate is configured.")
    response = HttpResponse(pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="consent-desk-report-ca.pem"'
    return response
