from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest

from compliance.admin import ReadOnlyAdmin, SiteEditable, ViewOnly
from sync.models import (
    Alert,
    CrmLink,
    CrmLinkRecord,
    Discrepancy,
    DuplicateDecision,
    FieldMapping,
    FieldMappingVersion,
    SyncPush,
    ZohoCall,
)


@admin.register(ZohoCall)
class ZohoCallAdmin(ViewOnly, admin.ModelAdmin):
    """The call log is evidence: read, never added, edited or deleted."""

    actions = None

    list_display = (
        "started_at",
        "service",
        "operation",
        "http_status",
        "zoho_code",
        "outcome",
        "permanent",
        "records",
        "credits",
        "credits_remaining",
        "duration_ms",
    )
    list_filter = ("service", "outcome", "permanent", "operation")
    search_fields = ("operation", "path", "zoho_code", "error")
    date_hierarchy = "started_at"
    ordering = ("-started_at",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)


@admin.register(SyncPush)
class SyncPushAdmin(admin.ModelAdmin):
    """Pushes are evidence of what was sent and what Zoho answered: read-only."""

    actions = None
    list_display = (
        "created_at",
        "contact",
        "zoho_id",
        "attempt",
        "verification",
        "verify_due_at",
        "verified_at",
    )
    list_filter = ("verification",)
    search_fields = ("zoho_id", "contact__email")
    raw_id_fields = ("contact", "call")
    ordering = ("-created_at",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Discrepancy)
class DiscrepancyAdmin(admin.ModelAdmin):
    list_display = ("opened_at", "contact", "crm_field", "kind", "status", "retries", "next_retry_at")
    list_filter = ("status", "kind")
    search_fields = ("zoho_id", "crm_field", "contact__email")
    raw_id_fields = ("contact",)
    readonly_fields = ("expected", "actual", "evidence", "hint", "opened_at", "updated_at")
    ordering = ("-opened_at",)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "discrepancy", "acknowledged_at", "acknowledged_by")
    list_filter = ("kind",)
    raw_id_fields = ("discrepancy",)
    readonly_fields = ("kind", "discrepancy", "message", "created_at", "emailed_to")
    ordering = ("-created_at",)


@admin.register(CrmLink)
class CrmLinkAdmin(admin.ModelAdmin):
    list_display = ("contact", "state", "candidates", "checked_at", "last_verified_at")
    list_filter = ("state",)
    search_fields = ("contact__email",)
    raw_id_fields = ("contact",)


@admin.register(CrmLinkRecord)
class CrmLinkRecordAdmin(ReadOnlyAdmin):
    """Which CRM records (module and id) each contact's consent is written to. Read-only: links
    change through linking (a changed email, a Lead converted) and the duplicates page, whose
    choices are recorded; an edit here would write a person's consent to a record nobody chose."""

    list_display = ("contact", "module", "record_id", "role", "consent_id", "converted_from", "created_at")
    list_filter = ("module", "role")
    search_fields = ("=record_id", "=converted_from", "=consent_id", "contact__email")
    raw_id_fields = ("contact",)
    ordering = ("-created_at", "-id")
    fields = list_display
    readonly_fields = list_display


@admin.register(DuplicateDecision)
class DuplicateDecisionAdmin(ReadOnlyAdmin):
    """Admins' choices for duplicate CRM records (who, when, why): evidence, appended, never changed."""

    list_display = (
        "decided_at",
        "contact",
        "choice",
        "primary_module",
        "primary_record_id",
        "decided_by_name",
    )
    list_filter = ("choice", "primary_module")
    search_fields = ("=primary_record_id", "contact__email", "decided_by_name")
    search_help_text = (
        "A record id finds the decisions that chose it or chose among it; or an email, or a name."
    )
    date_hierarchy = "decided_at"
    ordering = ("-decided_at", "-id")
    fields = (
        "decided_at",
        "contact",
        "choice",
        "primary_module",
        "primary_record_id",
        "candidates",
        "reason",
        "decided_by",
        "decided_by_name",
    )
    readonly_fields = fields

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DuplicateDecision], search_term: str
    ) -> tuple[QuerySet[DuplicateDecision], bool]:
        """Also the decisions whose candidates include the record id searched for."""
        found, duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term.isdigit() and connection.features.supports_json_field_contains:
            found |= queryset.filter(candidates__contains=[{"record_id": term}])
        return found, duplicates


class FieldMappingVersionInline(ViewOnly, admin.TabularInline):
    """A mapping's history, newest first: shown, never added, changed or deleted here."""

    model = FieldMappingVersion
    fields = (
        "version",
        "crm_field",
        "purpose",
        "transform",
        "direction",
        "is_active",
        "created_at",
        "changed_by",
    )
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    can_delete = False
    verbose_name = "version"
    verbose_name_plural = "history (every saved version)"


@admin.register(FieldMapping)
class FieldMappingAdmin(SiteEditable, admin.ModelAdmin):
    """Admins (the role, like the rest of this site) add and edit mappings. Each save is a new
    version whose values join the history below the form; a mapping is deactivated, not deleted
    (its history stays, as do the pushes made with it)."""

    actions = None
    list_display = ("crm_field", "purpose", "transform", "direction", "is_active", "version", "updated_at")
    list_filter = ("is_active", "direction", "purpose")
    search_fields = ("crm_field",)
    fields = ("purpose", "crm_field", "transform", "direction", "is_active", "version", "updated_at")
    readonly_fields = ("version", "updated_at")
    inlines = (FieldMappingVersionInline,)

    def save_model(self, request: HttpRequest, obj: FieldMapping, form: Any, change: bool) -> None:
        obj.save(changed_by=request.user.get_username())
