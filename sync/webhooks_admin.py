"""Admin pages of API clients' webhooks: set an endpoint, read its deliveries and every attempt.

Registered from `SyncConfig.ready()` (autodiscovery imports sync/admin.py only). Admins (the
site's own check) add and change endpoints; deliveries and attempts are evidence, read only.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from compliance.admin import ReadOnlyAdmin, SiteEditable, ViewOnly
from sync.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(SiteEditable, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("api_client", "url", "is_active", "created_at", "updated_at")
    list_filter = ("is_active",)
    fields = ("api_client", "url", "is_active", "secret", "created_at", "updated_at")
    readonly_fields = ("secret", "created_at", "updated_at")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # The client of an endpoint is set once: its deliveries name it.
        return (*self.readonly_fields, "api_client") if obj is not None else self.readonly_fields


class WebhookAttemptInline(ViewOnly, admin.TabularInline):  # type: ignore[type-arg]
    model = WebhookAttempt
    fields = ("number", "status", "response_code", "error", "started_at", "finished_at")
    readonly_fields = fields
    extra = 0


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "endpoint", "event", "outcome", "status", "attempts", "delivered_at")
    list_filter = ("status", "outcome")
    ordering = ("-created_at",)
    inlines = (WebhookAttemptInline,)
    readonly_fields = (
        "endpoint",
        "event",
        "outcome",
        "payload",
        "status",
        "attempts",
        "created_at",
        "delivered_at",
    )
