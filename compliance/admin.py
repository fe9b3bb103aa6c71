"""Django admin for the admin role: the ledger read-only, policy versions published through the service.

Only people in the `admin` role (with is_staff) and superusers get into the admin site; officers and
auditors are refused even if someone made them staff. Admins read every compliance table through
the role, not through per-model permissions; nothing here edits a ledger row.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from compliance.models import (
    ApiClient,
    ConsentEvent,
    ConsentState,
    Contact,
    OutboxEntry,
    PolicyVersion,
    Purpose,
    Seal,
    Suppression,
)
from compliance.roles import Role, roles_of
from compliance.services import policy_version_publish


def admin_site_has_permission(request: HttpRequest) -> bool:
    """The admin site is for superusers and active staff in the admin role."""
    user = request.user
    if not (user.is_active and user.is_staff):
        return False
    return bool(user.is_superuser or Role.ADMIN in roles_of(user))


admin.site.has_permission = admin_site_has_permission  # type: ignore[method-assign]
admin.site.site_header = "Consent Desk administration"
admin.site.site_title = "Consent Desk admin"
admin.site.index_title = "Ledger and configuration"
admin.site.site_url = "/"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable by whoever may enter the admin site; never added, changed or deleted here."""

    actions = None

    def has_module_permission(self, request: HttpRequest) -> bool:
        return admin_site_has_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin_site_has_permission(request)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(ReadOnlyAdmin):
    list_display = ("id", "email", "phone", "app_user_id", "zoho_id", "first_name", "last_name", "created_at")
    search_fields = ("email", "phone", "app_user_id", "zoho_id", "last_name")
    show_full_result_count = False


@admin.register(Purpose)
class PurposeAdmin(ReadOnlyAdmin):
    list_display = ("code", "name", "channel", "double_opt_in_required", "validity_months")


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdmin):
    """Adding a policy version publishes it through the service; published versions never change."""

    list_display = ("label", "effective_at", "published_at", "sha256")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = ("label", "effective_at", "text", "url")
    readonly_fields_when_stored = (
        "label",
        "effective_at",
        "text",
        "url",
        "sha256",
        "published_at",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return admin_site_has_permission(request)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields_when_stored if obj is not None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields_when_stored if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: PolicyVersion, form: Any, change: bool) -> None:
        published = policy_version_publish(
            label=obj.label, effective_at=obj.effective_at, text=obj.text, url=obj.url
        )
        obj.pk = published.pk
        obj.sha256 = published.sha256
        obj.published_at = published.published_at
        obj.created_at = published.created_at


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "contact",
        "purpose",
        "version",
        "status",
        "previous_status",
        "source",
        "occurred_at",
        "recorded_at",
        "actor",
    )
    list_filter = ("purpose", "status", "source")
    list_select_related = ("contact", "purpose")
    raw_id_fields = ("contact",)
    show_full_result_count = False


@admin.register(ConsentState)
class ConsentStateAdmin(ReadOnlyAdmin):
    list_display = ("contact", "purpose", "status", "frequency", "occurred_at", "version", "refresh_due_at")
    list_filter = ("purpose", "status")
    list_select_related = ("contact", "purpose")
    show_full_result_count = False


@admin.register(Suppression)
class SuppressionAdmin(ReadOnlyAdmin):
    list_display = ("contact", "channel", "kind", "source", "created_at", "lifted_at")
    list_filter = ("kind", "channel")
    list_select_related = ("contact",)


@admin.register(Seal)
class SealAdmin(ReadOnlyAdmin):
    list_display = ("sequence", "created_at", "first_event_id", "last_event_id", "event_count", "hash")


@admin.register(OutboxEntry)
class OutboxEntryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "contact",
        "purpose",
        "priority",
        "created_at",
        "claimed_at",
        "attempts",
        "processed_at",
    )
    list_filter = ("priority",)
    list_select_related = ("contact", "purpose")
    show_full_result_count = False


@admin.register(ApiClient)
class ApiClientAdmin(ReadOnlyAdmin):
    list_display = ("name", "key_prefix", "sources", "is_active", "created_at", "last_used_at")
    exclude = ("key_hash",)
