"""Reasons not to mail that are not consent: a hard bounce, a complaint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from compliance.models import Contact, OutboxEntry, Purpose, Suppression
from compliance.outbox import outbox_written_on_commit


def suppression_add(
    *, contact: Contact, kind: str, source: str, detail: str = "", evidence: Mapping[str, Any] | None = None
) -> tuple[Suppression, bool]:
    """Record a reason not to mail that is not consent. Returns (suppression, created)."""
    with transaction.atomic():
        existing = Suppression.objects.filter(
            contact=contact, channel=Purpose.Channel.EMAIL, kind=kind, lifted_at__isnull=True
        ).first()
        if existing is not None:
            return existing, False
        suppression = Suppression.objects.create(
            contact=contact, kind=kind, source=source, detail=detail, evidence=dict(evidence or {})
        )
        OutboxEntry.objects.create(contact=contact, priority=OutboxEntry.Priority.WITHDRAWAL)
        outbox_written_on_commit()
        return suppression, True
