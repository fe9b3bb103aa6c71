"""Webhooks per API client: the endpoint, each delivery and every attempt (sync/webhooks.py)."""

from __future__ import annotations

from django.db import models

from sync.models import webhook_secret_new


class WebhookEndpoint(models.Model):
    """Where an API client wants to hear that its changes reached Zoho (`sync.webhooks`).

    Kept here, keyed by the client, so that the ledger's `ApiClient` knows nothing of the sync.
    The secret signs every delivery (HMAC-SHA256 over the body); admins read it on the admin
    page and give it to the client's developers.
    """

    api_client = models.OneToOneField("compliance.ApiClient", on_delete=models.PROTECT, related_name="+")
    url = models.URLField(max_length=500, help_text="HTTPS URL that receives the POSTs.")
    secret = models.CharField(max_length=64, default=webhook_secret_new, editable=False)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.api_client} → {self.url}"


class WebhookDelivery(models.Model):
    """One message to a client's webhook: its change (an event) was verified in Zoho, or failed."""

    class Outcome(models.TextChoices):
        VERIFIED = "verified", "Verified in Zoho"
        FAILED = "failed", "Failed (a discrepancy)"

    class Status(models.TextChoices):
        PENDING = "pending", "Being delivered"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.PROTECT, related_name="deliveries")
    event = models.ForeignKey("compliance.ConsentEvent", on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    payload = models.JSONField(help_text="The message, without its send time (each attempt adds one).")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        constraints = [
            # Each change is told once per outcome, however often its push is read back.
            models.UniqueConstraint(
                fields=["endpoint", "event", "outcome"], name="sync_webhookdelivery_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.outcome} event {self.event_id} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: written before the request, finished after it."""

    class Status(models.TextChoices):
        PENDING = "pending", "Sending"
        OK = "ok", "Accepted (2xx)"
        ERROR = "error", "Failed"

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.PROTECT, related_name="attempt_rows")
    number = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="sync_webhookattempt_once"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.status}"
