"""Sync models. `ZohoCall` is the log of every HTTP call made to Zoho."""

from __future__ import annotations

from django.db import models


class ZohoCall(models.Model):
    """One HTTP call to Zoho Accounts, CRM or Campaigns.

    The row is written (outcome ``pending``) before the request goes out and
    completed after it, even when the call raised. It never holds an access
    token, a refresh token or a client secret: ``path`` has no query string.
    """

    class Service(models.TextChoices):
        CRM = "crm", "CRM"
        CAMPAIGNS = "campaigns", "Campaigns"
        ACCOUNTS = "accounts", "Accounts"

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        OK = "ok", "OK"
        ERROR = "error", "Error"

    service = models.CharField(max_length=16, choices=Service.choices)
    operation = models.CharField(max_length=64)
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=512)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    zoho_code = models.CharField(max_length=64, blank=True)
    records = models.PositiveIntegerField(default=0)
    credits = models.PositiveIntegerField(default=0)
    credits_remaining = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=8, choices=Outcome.choices, default=Outcome.PENDING)
    error = models.TextField(blank=True)
    permanent = models.BooleanField(null=True, blank=True)

    class Meta:
        indexes = [
            # Error-rate dashboard and quota budget: calls of one service in a time window,
            # `ZohoCall.objects.filter(service=..., started_at__gte=...)`.
            models.Index(fields=["service", "started_at"], name="sync_zohocall_service_started"),
            # Latest known remaining credits: `filter(credits_remaining__isnull=False)
            # .order_by("-started_at").first()`.
            models.Index(
                fields=["-started_at"],
                name="sync_zohocall_credits_seen",
                condition=models.Q(credits_remaining__isnull=False),
            ),
            # Recent failures for the "why does the sync fail" page:
            # `filter(outcome="error").order_by("-started_at")`.
            models.Index(
                fields=["-started_at"],
                name="sync_zohocall_errors",
                condition=models.Q(outcome="error"),
            ),
        ]

    def __str__(self) -> str:
        status = self.http_status if self.http_status is not None else "-"
        return f"{self.operation} {self.method} {self.path} → {status} {self.outcome}"
