"""Schemathesis against the API's own OpenAPI schema, through the WSGI app, with a key that
holds every right: valid and invalid requests alike never get a 500, and every error answers in
the JSON error shape. Bounded (SCHEMATHESIS_MAX_EXAMPLES per operation and mode) so CI stays
within a couple of minutes on two cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

from compliance import services
from compliance.models import ApiClient, Source

MAX_EXAMPLES = 100

# Built from the URLconf, the same document /api/schema/ serves (that page needs a login).
schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(public=True))
schema.app = get_wsgi_application()
schema.config.generation.update(
    modes=[schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE],
    max_examples=MAX_EXAMPLES,
)


@pytest.fixture
def wsgi_in_the_test_transaction() -> Iterator[None]:
    # The WSGI handler closes the database connection after each request; in a test that
    # would close the test's transaction. Django's own test client disconnects it the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def every_right(db: None, wsgi_in_the_test_transaction: None) -> str:
    services.policy_version_publish(label="2026-03", effective_at="2026-03-01", text="Offers you chose.")
    _, key = services.api_client_create(
        name="schemathesis", sources=list(Source.values), scopes=list(ApiClient.Scope.values)
    )
    return key


def assert_no_500_and_the_error_shape(response: Any, case: Any) -> None:
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body.get("detail"), str) and body["detail"], response.text[:500]
        assert isinstance(body.get("errors"), dict), response.text[:500]


HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@schema.parametrize()
@HYPOTHESIS
def test_the_api_never_answers_500_and_every_error_has_the_json_shape(case: Any, every_right: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {every_right}"})
    assert_no_500_and_the_error_shape(response, case)


class Workflow(schema.as_state_machine()):
    """Stateful: calls chained by the links Schemathesis infers (an event's `contact_id` into
    the contact's history, and so on)."""

    key = ""

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {self.key}"}}

    def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
        assert_no_500_and_the_error_shape(response, case)


def test_chained_calls_never_answer_500_either(every_right: str) -> None:
    Workflow.key = every_right
    Workflow.run(settings=settings(HYPOTHESIS, max_examples=MAX_EXAMPLES // 4, stateful_step_count=6))


def test_the_schema_under_test_covers_every_endpoint() -> None:
    assert sorted(schema.raw_schema["paths"]) == [
        "/api/v1/consent-events",
        "/api/v1/consent-events/batch",
        "/api/v1/contacts",
        "/api/v1/contacts/{contact_id}/consents",
        "/api/v1/contacts/{contact_id}/erasure",
        "/api/v1/contacts/{contact_id}/links",
    ]
