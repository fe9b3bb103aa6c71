"""The admin page of API clients: change their rights and expiry, revoke, rotate, expire.

Registered from compliance/admin.py (autodiscovery imports that module only). Every change
goes through the services in compliance/services/api_clients.py; a new key is shown once,
on the page the rotation answers with, and never stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from compliance.models import ApiClient, Source
from compliance.services import (
    ConsentRejected,
    api_client_expire,
    api_client_revoke,
    api_client_rotate,
    api_client_update,
)

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[ApiClient]
else:
    _ModelAdmin = admin.ModelAdmin


class ApiClientForm(forms.ModelForm):  # type: ignore[type-arg]
    sources = forms.MultipleChoiceField(
        choices=Source.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="events:write: the sources this client may record events for.",
    )
    scopes = forms.MultipleChoiceField(
        choices=ApiClient.Scope.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Rights beyond writing; reads are off unless ticked here.",
    )

    class Meta:
        model = ApiClient
        fields = ("sources", "scopes", "expires_at")


class ApiClientAdmin(_ModelAdmin):
    form = ApiClientForm
    list_display = (
        "name",
        "key_prefix",
        "sources",
        "scopes",
        "is_active",
        "expires_at",
        "last_used_at",
        "previous_key_expires_at",
        "previous_key_last_used_at",
    )
    list_filter = ("is_active",)
    readonly_fields = (
        "name",
        "key_prefix",
        "is_active",
        "revoked_at",
        "created_at",
        "last_used_at",
        "rotated_at",
        "previous_key_prefix",
        "previous_key_expires_at",
        "previous_key_last_used_at",
    )
    fields = ("name", "sources", "scopes", "expires_at", *readonly_fields[1:])
    actions = ("revoke", "rotate", "expire_now")

    # The admin role manages API clients (the site's own check); they are made with
    # `manage.py create_api_client`, which shows the key, and never deleted (events name them).
    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.admin_site.has_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.admin_site.has_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        data = form.cleaned_data
        try:
            api_client_update(
                client=obj, sources=data["sources"], scopes=data["scopes"], expires_at=data["expires_at"]
            )
        except ConsentRejected as exc:
            # The form let it through; the service's rule (a client needs some right) did not.
            obj.refresh_from_db()
            messages.error(request, exc.message)

    @admin.action(description="Revoke: refuse every key of the selected clients now", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            api_client_revoke(client=client)
        messages.success(request, f"Revoked {len(queryset)} API client(s); their keys are refused.")

    @admin.action(
        description="Expire now: let every key of the selected clients expire", permissions=["change"]
    )
    def expire_now(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        for client in queryset:
            api_client_expire(client=client)
        messages.success(request, f"Every key of {len(queryset)} API client(s) has expired.")

    @admin.action(
        description="Rotate: give the selected clients new keys (old keys stay valid for the grace period)",
        permissions=["change"],
    )
    def rotate(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> TemplateResponse | None:
        grace = timedelta(hours=settings.API_KEY_ROTATION_GRACE_HOURS)
        rotated = []
        for client in queryset.filter(is_active=True):
            rotated.append(api_client_rotate(client=client, grace=grace))
        if not rotated:
            messages.error(request, "Revoked clients cannot be rotated; make a new client instead.")
            return None
        response = TemplateResponse(
            request,
            "admin/compliance/apiclient/keys_rotated.html",
            {
                **self.admin_site.each_context(request),
                "title": "New API keys",
                "opts": self.model._meta,
                "rotated": rotated,
                "grace_hours": settings.API_KEY_ROTATION_GRACE_HOURS,
            },
        )
        response["Cache-Control"] = "no-store"  # the keys are on this page, once
        return response
