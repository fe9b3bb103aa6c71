"""Concurrent writers to one contact and purpose: versions have no gaps and no repeats."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from compliance import services
from compliance.models import ConsentEvent, ConsentState
from compliance.services import ContactIdentity
from compliance.verification import ledger_verify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.ledger]

WRITERS = 6
EVENTS_EACH = 15


def test_concurrent_writers_to_one_chain_get_consecutive_versions(decide):
    start = threading.Barrier(WRITERS)
    identity = ContactIdentity(email="busy@example.com", app_user_id="u-busy")

    def writer(number: int) -> list[int]:
        versions = []
        start.wait()
        try:
            for index in range(EVENTS_EACH):
                status = "opted_in" if (number + index) % 2 else "opted_out"
                decision = decide(
                    status=status,
                    policy_version="2026-03" if status == "opted_in" else None,
                    idempotency_key=f"writer-{number}-{index}",
                )
                versions.append(services.consent_ingest(identity=identity, decision=decision).event.version)
        finally:
            connection.close()
        return versions

    with ThreadPoolExecutor(WRITERS) as pool:
        results = list(pool.map(writer, range(WRITERS)))

    total = WRITERS * EVENTS_EACH
    seen = sorted(v for versions in results for v in versions)
    assert seen == list(range(1, total + 1))
    stored = list(ConsentEvent.objects.order_by("version").values_list("version", flat=True))
    assert stored == list(range(1, total + 1))
    assert ConsentState.objects.get().version == total
    assert ledger_verify().ok


def test_concurrent_first_writers_to_new_contacts_make_one_contact_each(decide):
    start = threading.Barrier(WRITERS)

    def writer(number: int) -> int:
        start.wait()
        try:
            identity = ContactIdentity(email="new@example.com")
            decision = decide(purpose="profiling", idempotency_key=f"first-{number}")
            return services.consent_ingest(identity=identity, decision=decision).event.contact_id
        finally:
            connection.close()

    with ThreadPoolExecutor(WRITERS) as pool:
        contact_ids = set(pool.map(writer, range(WRITERS)))

    assert len(contact_ids) == 1
    assert list(ConsentEvent.objects.order_by("version").values_list("version", flat=True)) == list(
        range(1, WRITERS + 1)
    )


def test_the_same_request_sent_concurrently_is_recorded_once(decide):
    start = threading.Barrier(WRITERS)
    decision = decide(purpose="profiling", idempotency_key="retry-storm")

    def writer(_: int) -> tuple[int, bool]:
        start.wait()
        try:
            result = services.consent_ingest(
                identity=ContactIdentity(email="retry@example.com"), decision=decision
            )
            return result.event.pk, result.created
        finally:
            connection.close()

    with ThreadPoolExecutor(WRITERS) as pool:
        outcomes = list(pool.map(writer, range(WRITERS)))

    assert len({pk for pk, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
    assert ConsentEvent.objects.count() == 1
