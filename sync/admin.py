from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from sync.models import ZohoCall


@admin.register(ZohoCall)
class ZohoCallAdmin(admin.ModelAdmin):
    """The call log is evidence: whoever may enter the admin site reads it (the admin
    role, through the site's own check), nobody adds, edits or deletes it."""

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
        return admin.site.has_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin.site.has_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
