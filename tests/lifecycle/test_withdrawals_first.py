"""A one-click withdrawal jumps the sync queue: claimed before changes that were waiting longer."""

from __future__ import annotations

from collections.abc import Callable

from django.test import Client
from django.utils import timezone

from compliance import services
from compliance.models import ConsentEvent, OutboxEntry
from sync.outbox import outbox_claim


def test_a_one_click_withdrawal_is_claimed_before_older_opt_ins(
    public: Client, pending: ConsentEvent, unsubscribe_path: Callable[..., str]
) -> None:
    # Given Ana's pending opt-in pushed already, and 120 other people's opt-ins waiting in the outbox
    ana = pending.contact
    OutboxEntry.objects.filter(contact=ana).update(processed_at=timezone.now())
    for i in range(120):
        services.consent_ingest(
            identity=services.ContactIdentity(email=f"waiting{i}@example.com"),
            decision=services.ConsentDecision(
                purpose="sms_marketing",
                status="opted_in",
                source="web_portal",
                occurred_at=pending.occurred_at,
                idempotency_key=f"waiting-{i}",
                policy_version="2026-03",
            ),
        )

    # When Ana unsubscribes with one click, after all of them
    public.post(
        unsubscribe_path(ana), "List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded"
    )

    # Then the first claim of 10 contacts starts with her
    claim = outbox_claim(worker="test", max_contacts=10)
    assert claim.contact_ids[0] == ana.pk
