"""An erasure empties the caches that hold the person (docs/erasure.md, "Logs, caches and
files"): the duplicates page's cached CRM records, read from zohosim, go with the erasure."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache

from compliance import services
from sync.duplicates import duplicate_record_cache_key
from sync.models import CrmLink
from sync.outbox import outbox_claim
from sync.push import outbox_batch_push

pytestmark = pytest.mark.django_db

EMAIL = "hrodebert.twice@example.com"


@pytest.fixture
def held(ledger: Any, crm: Any, zoho: Any, engine_settings: Any) -> tuple[Any, list[str]]:
    """A contact whose address two CRM contacts share: the duplicates page shows both records."""
    records = [crm(EMAIL, First_Name="Hrodebert"), crm(EMAIL, First_Name="Bert")]
    person = ledger.change(EMAIL, "sms_marketing", "opted_in")
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)
    assert CrmLink.objects.get(contact=person).state == CrmLink.State.DUPLICATE
    return person, sorted(records)


def test_the_duplicates_pages_cached_records_go_with_the_erasure(
    held: tuple[Any, list[str]],
    client_for: Any,
    admin_user: Any,
    sim_settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    person, records = held
    client = client_for(admin_user)
    page = client.get("/sync/duplicates/")
    assert page.status_code == 200 and EMAIL in page.content.decode()
    keys = [duplicate_record_cache_key("Contacts", record) for record in records]
    assert all(cache.get(key)["Email"] == EMAIL for key in keys)  # the page's cache holds the person

    with django_capture_on_commit_callbacks(execute=True):
        services.erasure_request(contact=person, channel="admin", reason="ticket 77", actor_user=admin_user)
        assert all(cache.get(key) for key in keys)  # not before the erasure is committed

    assert cache.get_many(keys) == {}
