"""The current-state row names its current decision's policy version, on every write path."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from compliance import services
from compliance.models import ConsentState
from compliance.services import ContactIdentity

pytestmark = [pytest.mark.django_db, pytest.mark.ledger]


def test_one_by_one_the_state_follows_the_current_decisions_policy(decide, policy):
    ana = ContactIdentity(email="ana@example.com")
    services.consent_ingest(identity=ana, decision=decide(status="opted_in"))
    state = ConsentState.objects.get(contact__email="ana@example.com")
    assert state.policy_version == policy

    # An older decision arriving late changes nothing current, its policy included.
    services.consent_ingest(
        identity=ana,
        decision=decide(
            status="opted_out", policy_version=None, occurred_at=timezone.now() - timedelta(days=3)
        ),
    )
    state.refresh_from_db()
    assert (state.status, state.policy_version) == ("opted_in", policy)

    services.consent_ingest(identity=ana, decision=decide(status="opted_out", policy_version=None))
    state.refresh_from_db()
    assert (state.status, state.policy_version) == ("opted_out", None)


def test_in_a_batch_the_state_names_the_policy_too(decide, policy):
    items = [
        (ContactIdentity(email=f"p{n}@example.com"), decide(status="opted_in" if n % 2 else "opted_out"))
        for n in range(6)
    ]
    items = [
        (i, d if d.status == "opted_in" else decide(status="opted_out", policy_version=None))
        for i, d in items
    ]
    outcomes = services.consent_ingest_batch(items=items, api_client=None)

    assert all(isinstance(o, services.RecordResult) for o in outcomes)
    by_email = {s.contact.email: s for s in ConsentState.objects.select_related("contact")}
    assert {e: (s.status, s.policy_version_id) for e, s in by_email.items()} == {
        f"p{n}@example.com": ("opted_in", policy.pk) if n % 2 else ("opted_out", None) for n in range(6)
    }
