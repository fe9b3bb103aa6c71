"""What the real-worker tests assert after a storm: every change converged, Zoho holds the
ledger, and no version went to Zoho twice (or, where workers were killed, twice only after a
write Zoho never answered)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from compliance.models import OutboxEntry
from sync.models import SyncPush
from sync.projection import project, read_back


def all_verified(records: dict[int, str]) -> bool:
    """Every one of these contacts' outbox rows processed and its latest push verified."""
    if OutboxEntry.objects.filter(contact_id__in=records, processed_at__isnull=True).exists():
        return False
    latest: dict[int, str] = {}
    pushes = SyncPush.objects.filter(contact_id__in=records).order_by("id")
    for contact_id, verification in pushes.values_list("contact_id", "verification"):
        latest[contact_id] = verification
    return len(latest) == len(records) and set(latest.values()) == {"verified"}


def assert_zoho_holds_the_ledger(sim: Any, records: dict[int, str]) -> None:
    projections = project(list(records))
    for contact_id, record_id in records.items():
        projection = projections[contact_id]
        actual = read_back(sim.contact(record_id), projection.compared)
        assert projection.differences(actual) == {}, contact_id


def assert_no_version_written_twice(sim: Any, records: dict[int, str]) -> None:
    """Each accepted API write of a record carries a distinct ledger version of its contact."""
    writes = Counter(w["record_id"] for w in sim.writes() if w["source"] == "api")
    for contact_id, record_id in records.items():
        versions = {
            json.dumps(v, sort_keys=True)
            for v in SyncPush.objects.filter(contact_id=contact_id).values_list("ledger_versions", flat=True)
        }
        assert writes[record_id] <= len(versions), (contact_id, writes[record_id], versions)
    pushes = Counter(
        (contact_id, json.dumps(v, sort_keys=True))
        for contact_id, v in SyncPush.objects.filter(contact_id__in=records).values_list(
            "contact_id", "ledger_versions"
        )
    )
    assert max(pushes.values()) == 1


def assert_no_acknowledged_version_written_twice(sim: Any, records: dict[int, str]) -> None:
    """Zoho acknowledged each ledger version of a contact once at most; a version was written
    again only after a write that Zoho never answered."""
    acknowledged = Counter(
        (contact_id, json.dumps(versions, sort_keys=True))
        for contact_id, versions in SyncPush.objects.filter(
            contact_id__in=records, response__code="SUCCESS"
        ).values_list("contact_id", "ledger_versions")
    )
    assert not acknowledged or max(acknowledged.values()) == 1, acknowledged.most_common(3)
    writes = Counter(w["record_id"] for w in sim.writes() if w["source"] == "api")
    for contact_id, record_id in records.items():
        pushes = SyncPush.objects.filter(contact_id=contact_id)
        versions = {json.dumps(v, sort_keys=True) for v in pushes.values_list("ledger_versions", flat=True)}
        unanswered = pushes.filter(response={}).count()
        assert writes[record_id] <= len(versions) + unanswered, (contact_id, writes[record_id], versions)
