"""Workbench fixtures: decisions recorded through the one write path, at chosen times."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from compliance import services
from compliance.models import ConsentEvent, PolicyVersion

_keys = itertools.count(1)

Record = Callable[..., ConsentEvent]


@pytest.fixture
def policy(db: None) -> PolicyVersion:
    return services.policy_version_publish(
        label="2026-03", effective_at="2026-03-01", text="We use your data to send you offers you chose."
    )


@pytest.fixture
def record(policy: PolicyVersion) -> Record:
    """record(email, purpose, status, source=..., at=...): one decision made at `at` and recorded
    then (or now, with `recorded_at`), through `consent_ingest`."""

    def make(
        email: str,
        purpose: str,
        status: str,
        *,
        source: str = "mobile_app",
        at: datetime | None = None,
        recorded_at: datetime | None = None,
    ) -> ConsentEvent:
        occurred = at or timezone.now() - timedelta(minutes=1)
        evidence: dict[str, Any] = {}
        if purpose == "email_marketing" and status == "opted_in":
            evidence["double_opt_in_confirmed_at"] = occurred.isoformat()
        decision = services.ConsentDecision(
            purpose=purpose,
            status=status,
            source=source,
            occurred_at=occurred,
            idempotency_key=f"workbench-{next(_keys)}",
            policy_version=policy.label if status == "opted_in" else None,
            evidence=evidence,
            reason="by phone" if source == "customer_service" else "",
        )
        with time_machine.travel(recorded_at or occurred + timedelta(seconds=1), tick=False):
            result = services.consent_ingest(
                identity=services.ContactIdentity(email=email), decision=decision
            )
        return result.event

    return make
