"""The lifecycle's optional CRM fields (issue 11): the email frequency in a custom picklist whose
values come from the field's metadata, and the preference centre's URL for Campaigns merge tags,
written by the push through real HTTP to zohosim."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from compliance import services
from compliance.lifecycle.tokens import links_revoke
from compliance.models import Contact
from sync.models import ZohoCall
from sync.projection import PICKLISTS_KEY, project
from tests.sync.test_push import push_all

_keys = itertools.count(1)


@pytest.fixture
def lifecycle_fields(engine_settings: Any) -> Any:
    engine_settings.ZOHO_FIELD_FREQUENCY = "Email_Frequency"
    engine_settings.ZOHO_FIELD_PREFERENCES_URL = "Preferences_URL"
    engine_settings.PUBLIC_BASE_URL = "http://testserver"
    engine_settings.LINK_SIGNING_KEYS = ["crm-link-key-0123456789abcdef"]
    cache.delete(PICKLISTS_KEY)
    yield engine_settings
    cache.delete(PICKLISTS_KEY)


def choose(contact: Contact, status: str, frequency: str | None = None) -> None:
    services.consent_record(
        contact=contact,
        decision=services.ConsentDecision(
            purpose="email_marketing",
            status=status,
            source="web_portal",
            occurred_at=timezone.now() - timedelta(seconds=30),
            idempotency_key=f"freq-{next(_keys)}",
            frequency=frequency,
            policy_version="2026-03" if status == "opted_in" else None,
            evidence={"double_opt_in_confirmed_at": timezone.now().isoformat()}
            if status == "opted_in"
            else {},
        ),
    )


def test_the_frequency_reaches_the_crm_picklist_and_follows_each_change(
    ledger: Any, crm: Any, zoho: Any, sim: Any, lifecycle_fields: Any
) -> None:
    # Given Ana subscribed to the newsletter weekly, linked to her CRM record
    record_id = crm("ana@example.com")
    ana = ledger.change("ana@example.com", "sms_marketing", "opted_in", zoho_id=record_id)
    choose(ana, "opted_in", "weekly")

    # When the sync pushes
    push_all(zoho)

    # Then CRM's picklist holds the org's value, read from the field's metadata (one call)
    assert sim.contact(record_id)["Email_Frequency"] == "Weekly"
    assert ZohoCall.objects.filter(operation="crm.fields").count() == 2  # Consents, Contacts

    # And a change of frequency, then an opt-out, follow
    choose(ana, "opted_in", "monthly")
    push_all(zoho)
    assert sim.contact(record_id)["Email_Frequency"] == "Monthly"
    choose(ana, "opted_out")
    push_all(zoho)
    assert sim.contact(record_id)["Email_Frequency"] is None
    assert sim.contact(record_id)["Email_Opt_Out"] is True


def test_a_frequency_the_org_does_not_offer_is_left_out_never_guessed(
    ledger: Any, crm: Any, zoho: Any, sim: Any, lifecycle_fields: Any
) -> None:
    # The field is mapped but the org has no such field: nothing is written to it
    lifecycle_fields.ZOHO_FIELD_FREQUENCY = "No_Such_Field"
    record_id = crm("ben@example.com")
    ben = ledger.change("ben@example.com", "sms_marketing", "opted_in", zoho_id=record_id)
    choose(ben, "opted_in", "daily")

    push_all(zoho)

    assert "No_Such_Field" not in project([ben.pk])[ben.pk].values
    assert sim.contact(record_id)["Email_Opt_Out"] is False


def test_the_frequency_field_is_off_when_its_setting_is_empty(
    ledger: Any, crm: Any, zoho: Any, sim: Any, engine_settings: Any
) -> None:
    engine_settings.ZOHO_FIELD_FREQUENCY = ""
    engine_settings.ZOHO_FIELD_PREFERENCES_URL = ""
    cache.delete(PICKLISTS_KEY)
    record_id = crm("cem@example.com")
    cem = ledger.change("cem@example.com", "sms_marketing", "opted_in", zoho_id=record_id)
    choose(cem, "opted_in", "daily")

    push_all(zoho)

    record = sim.contact(record_id)
    assert record.get("Email_Frequency") is None and record.get("Preferences_URL") is None
    assert set(project([cem.pk])[cem.pk].values).isdisjoint({"Email_Frequency", "Preferences_URL"})


def test_the_preference_url_is_written_to_crm_and_opens_the_preference_centre(
    ledger: Any, crm: Any, zoho: Any, sim: Any, lifecycle_fields: Any
) -> None:
    record_id = crm("dora@example.com")
    dora = ledger.change("dora@example.com", "sms_marketing", "opted_in", zoho_id=record_id)

    push_all(zoho)

    url = sim.contact(record_id)["Preferences_URL"]
    assert url.startswith("http://testserver/p/")
    page = Client().get(urlsplit(url).path)
    assert page.status_code == 200 and "SMS" in page.content.decode()
    # Stable between pushes (a projection that changes nothing writes nothing) ...
    assert project([dora.pk])[dora.pk].values["Preferences_URL"] == url
    # ... and a revoked contact's next projection carries a new link; the old one is refused
    links_revoke(contact=dora)
    assert project([dora.pk])[dora.pk].values["Preferences_URL"] != url
    assert Client().get(urlsplit(url).path).status_code == 410
