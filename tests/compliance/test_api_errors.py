"""On the API every error answers in the JSON error shape: 400, 401, 403, 404, 405, 413, 415, 429, 500."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient

from compliance.api.views import ApiView
from tests.compliance.test_api_hostile_input import assert_error_shape

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent-events"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here",
        "/api/v1/contacts/",
        "/api/v1/contacts/abc/consents",
        "/api/v1/",
        "/api/v1/a/b/c",
    ],
)
def test_an_unknown_api_path_answers_404_in_json(api, path):
    for method in ("get", "post", "put", "delete", "patch", "options"):
        response = getattr(api, method)(path)
        assert_error_shape(response, 404)


def test_a_path_with_an_encoded_newline_answers_in_json(reader_key):
    # As Schemathesis sends it (%0A): Django's HTML 404 answered this before.
    response = reader_key.get("/api/v1/contacts/0\n/consents")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert "detail" in response.json()


def test_an_unknown_contact_answers_404_in_json(reader_key):
    assert_error_shape(reader_key.get("/api/v1/contacts/999999/consents"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", URL),
        ("put", URL),
        ("delete", URL),
        ("patch", "/api/v1/consent-events/batch"),
        ("post", "/api/v1/contacts"),
        ("delete", "/api/v1/contacts/1/consents"),
    ],
)
def test_a_wrong_method_answers_405_in_json(api, reader_key, method, path):
    client = reader_key if "contacts" in path else api
    response = getattr(client, method)(path)
    assert_error_shape(response, 405)


def test_no_key_and_a_bad_key_answer_401_in_json(event_body):
    assert_error_shape(APIClient().post(URL, event_body(), format="json"), 401)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Bearer cd_nope")
    assert_error_shape(bad.post(URL, event_body(), format="json"), 401)


class Broken(ApiView):
    """Stands for any bug in a view: the error shape and the log are what is tested."""

    permission_classes: list[Any] = []

    def get(self, request: Request) -> Response:
        raise RuntimeError("a bug")


urlpatterns = [
    path("api/v1/broken", Broken.as_view()),
    path("", include("config.urls")),
]


@pytest.mark.urls("tests.compliance.test_api_errors")
def test_an_unexpected_error_answers_500_in_json_and_is_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="compliance.api.errors"):
        response = APIClient().get("/api/v1/broken")

    body = assert_error_shape(response, 500)
    assert "a bug" not in body["detail"]
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)


@pytest.fixture
def reader_key(db: None) -> APIClient:
    from compliance import services

    _, key = services.api_client_create(name="reader", sources=[], scopes=["contacts:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client
