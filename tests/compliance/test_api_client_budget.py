"""What an API client notices of the key cache and the request budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from compliance.api import authentication
from compliance.models import ApiClient, ConsentEvent
from compliance.services.reference import reference_forget

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent-events"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def two_a_minute(throttle_rates: Any) -> None:
    throttle_rates(api_client="2/min")


def test_a_throttled_client_is_told_when_to_retry_and_gets_its_budget_back(api, event_body, two_a_minute):
    with time_machine.travel(START, tick=False) as clock:
        codes = [api.post(URL, event_body(), format="json").status_code for _ in range(2)]
        clock.shift(timedelta(seconds=20))
        refused = api.post(URL, event_body(), format="json")
        clock.shift(timedelta(seconds=41))
        again = api.post(URL, event_body(), format="json")

    assert codes == [201, 201]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "40"
    assert again.status_code == 201
    assert ConsentEvent.objects.count() == 3


def test_a_deactivated_key_is_refused_within_the_key_cache_time(api, mobile_app, event_body):
    client, _ = mobile_app
    with time_machine.travel(START, tick=False) as clock:
        assert api.post(URL, event_body(), format="json").status_code == 201
        ApiClient.objects.filter(pk=client.pk).update(is_active=False)
        clock.shift(timedelta(seconds=authentication.CLIENT_CACHE_S + 1))
        assert api.post(URL, event_body(), format="json").status_code == 401


def test_clearing_the_key_cache_refuses_a_deactivated_key_at_once(api, mobile_app, event_body):
    client, _ = mobile_app
    assert api.post(URL, event_body(), format="json").status_code == 201
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)
    reference_forget()

    assert api.post(URL, event_body(), format="json").status_code == 401
    assert ConsentEvent.objects.count() == 1


def test_a_wrong_key_with_a_known_prefix_is_refused_even_when_the_client_is_cached(
    api, mobile_app, event_body
):
    from rest_framework.test import APIClient

    _, key = mobile_app
    assert api.post(URL, event_body(), format="json").status_code == 201
    forged = APIClient()
    forged.credentials(HTTP_AUTHORIZATION=f"Bearer {key[:-4]}xxxx")

    assert forged.post(URL, event_body(), format="json").status_code == 401
