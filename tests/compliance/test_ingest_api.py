"""The ingest API as the mobile app's backend uses it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from compliance import services
from compliance.models import ApiClient, ConsentEvent, Contact

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent-events"
BATCH_URL = "/api/v1/consent-events/batch"


@pytest.fixture
def reader(db):
    """The web portal's backend, granted contacts:read (reads are off unless granted)."""
    _, key = services.api_client_create(name="portal-reader", sources=[], scopes=["contacts:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_it_records_an_event_and_answers_201_with_the_stored_event(api, event_body):
    body = event_body()
    response = api.post(URL, body, format="json")

    assert response.status_code == 201, response.json()
    stored = response.json()
    event = ConsentEvent.objects.get()
    assert stored["id"] == event.pk
    assert stored["contact_id"] == Contact.objects.get(email="ana@example.com").pk
    assert (stored["purpose"], stored["status"], stored["version"], stored["previous_status"]) == (
        "sms_marketing",
        "opted_out",
        1,
        "",
    )
    assert stored["hash"] == event.hash and stored["ip_address"] == "203.0.113.7"
    assert stored["policy_version"] == "2026-03" and stored["actor"] == "api:mobile-app"
    assert stored["recorded_at"]


def test_a_replay_answers_200_with_the_same_body(api, event_body):
    body = event_body()
    first = api.post(URL, body, format="json")
    again = api.post(URL, body, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert ConsentEvent.objects.count() == 1


def test_the_idempotency_key_may_come_as_a_header(api, event_body):
    body = event_body()
    del body["idempotency_key"]
    first = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="hdr-1")
    again = api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="hdr-1")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["idempotency_key"] == "hdr-1"


def test_the_same_key_with_other_content_is_a_409(api, event_body):
    api.post(URL, event_body(idempotency_key="dup"), format="json")
    response = api.post(URL, event_body(idempotency_key="dup", purpose="profiling"), format="json")

    assert response.status_code == 409
    assert "idempotency_key" in response.json()["errors"]
    assert ConsentEvent.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"purpose": "pigeons"}, "purpose"),
        ({"status": "sure"}, "status"),
        ({"source": "telepathy"}, "source"),
        ({"contact": {"email": "not-an-email"}}, "contact.email"),
        ({"contact": {"phone": "0151 1234"}}, "contact.phone"),
        ({"ip_address": "999.1.1.1"}, "ip_address"),
        ({"policy_version": "1999-01", "status": "opted_in"}, "policy_version"),
        ({"occurred_at": (timezone.now() + timedelta(days=1)).isoformat()}, "occurred_at"),
        ({"occurred_at": "yesterday-ish"}, "occurred_at"),
        ({"idempotency_key": None}, "idempotency_key"),
        ({"contact": "ana"}, "contact"),
        ({"evidence": ["not", "an", "object"]}, "evidence"),
    ],
)
def test_bad_input_gets_400_naming_the_field_and_writes_nothing(api, event_body, change, field):
    body = event_body(**change)
    if body.get("idempotency_key") is None:
        body.pop("idempotency_key")
    response = api.post(URL, body, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()["errors"], response.json()
    assert ConsentEvent.objects.count() == 0 and Contact.objects.count() == 0


def test_malformed_json_gets_400(api):
    response = api.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert (
        response.json()["detail"].startswith("JSON parse error")
        or "parse" in response.json()["detail"].lower()
    )


def test_a_body_that_is_not_an_object_gets_400(api):
    response = api.post(URL, data=json.dumps([1, 2]), content_type="application/json")
    assert response.status_code == 400


def test_a_client_may_only_write_its_own_sources(api, event_body):
    response = api.post(URL, event_body(source="customer_service"), format="json")
    assert response.status_code == 403
    assert "source" in response.json()["errors"]


@pytest.mark.parametrize("header", [None, "Bearer nonsense", "Bearer cd_abcd1234_wrong", "Token abc"])
def test_it_refuses_requests_without_a_valid_key(event_body, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.post(URL, event_body(), format="json")
    assert response.status_code == 401
    assert ConsentEvent.objects.count() == 0


def test_a_deactivated_client_is_refused(api, mobile_app, event_body):
    ApiClient.objects.filter(pk=mobile_app[0].pk).update(is_active=False)
    assert api.post(URL, event_body(), format="json").status_code == 401


def test_a_signed_in_person_cannot_write_through_the_api(event_body, django_user_model):
    client = APIClient()
    client.force_authenticate(django_user_model.objects.create_superuser("boss", password="x" * 12))
    assert client.post(URL, event_body(), format="json").status_code == 403


def test_throttled_clients_get_429(api, event_body, throttle_rates):
    throttle_rates(api_client="2/min")
    codes = [api.post(URL, event_body(), format="json").status_code for _ in range(3)]
    assert codes == [201, 201, 429]


def test_a_batch_answers_one_result_per_item_in_order_and_bad_items_do_not_block_good_ones(api, event_body):
    first = event_body(idempotency_key="b-0")
    items = [
        first,
        event_body(idempotency_key="b-1", purpose="pigeons"),
        event_body(idempotency_key="b-2", contact={"email": "bo@example.com"}, purpose="profiling"),
        event_body(idempotency_key="b-3", occurred_at="not a time"),
        first,
        event_body(idempotency_key="b-5", source="crm", status="opted_in"),
    ]
    response = api.post(BATCH_URL, {"events": items}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert [r["status"] for r in body["results"]] == [201, 400, 201, 400, 200, 403]
    assert (body["created"], body["replayed"], body["failed"]) == (2, 1, 3)
    assert "purpose" in body["results"][1]["errors"]
    assert "occurred_at" in body["results"][3]["errors"]
    assert body["results"][4]["event"]["id"] == body["results"][0]["event"]["id"]
    assert ConsentEvent.objects.count() == 2


def test_a_batch_of_more_than_1000_is_refused_with_413(api, event_body):
    body = event_body()
    response = api.post(BATCH_URL, {"events": [body] * 1001}, format="json")
    assert response.status_code == 413
    assert ConsentEvent.objects.count() == 0


def test_a_batch_without_events_is_400(api):
    assert api.post(BATCH_URL, {"events": []}, format="json").status_code == 400
    assert api.post(BATCH_URL, {"nothing": 1}, format="json").status_code == 400


def test_contacts_are_found_by_email_phone_or_app_user_id(api, reader, event_body):
    api.post(URL, event_body(), format="json")
    contact_id = Contact.objects.get().pk

    for query in ("email=ANA@example.com", "phone=%2B4915112345678", "app_user_id=u-1842"):
        response = reader.get(f"/api/v1/contacts?{query}")
        assert response.status_code == 200
        assert [c["id"] for c in response.json()] == [contact_id]
    assert reader.get("/api/v1/contacts?email=nobody@example.com").json() == []
    assert reader.get("/api/v1/contacts").status_code == 400
    assert reader.get("/api/v1/contacts?phone=12").status_code == 400


def test_a_contacts_consents_show_current_state_and_full_history(api, reader, event_body):
    api.post(URL, event_body(status="opted_in", frequency="weekly"), format="json")
    api.post(URL, event_body(status="opted_out"), format="json")
    contact_id = Contact.objects.get().pk

    body = reader.get(f"/api/v1/contacts/{contact_id}/consents").json()
    assert [(s["purpose"], s["status"], s["version"]) for s in body["states"]] == [
        ("sms_marketing", "opted_out", 2)
    ]
    assert [(e["version"], e["status"]) for e in body["history"]] == [(2, "opted_out"), (1, "opted_in")]
    assert reader.get("/api/v1/contacts/999999/consents").status_code == 404


def test_reading_needs_the_contacts_read_scope_or_history_permission(event_body, django_user_model, api):
    api.post(URL, event_body(), format="json")
    contact_id = Contact.objects.get().pk
    nobody = APIClient()
    nobody.force_login(django_user_model.objects.create_user("nobody", password="x" * 12))

    assert APIClient().get(f"/api/v1/contacts/{contact_id}/consents").status_code in (401, 403)
    assert nobody.get(f"/api/v1/contacts/{contact_id}/consents").status_code == 403
    # A key that may write mobile_app reads nothing unless granted contacts:read.
    refused = api.get(f"/api/v1/contacts/{contact_id}/consents")
    assert refused.status_code == 403
    assert "contacts:read" in refused.json()["detail"]
    assert api.get("/api/v1/contacts?email=ana@example.com").status_code == 403


def test_the_openapi_schema_and_docs_are_served_without_a_cdn(client, officer):
    assert client.get("/api/schema/").status_code in (401, 403)  # behind login
    client.force_login(officer)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/consent-events/batch" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    assert "/static/drf_spectacular_sidecar/" in html


def test_create_api_client_prints_the_key_on_its_last_line_and_stores_only_its_hash(capsys):
    call_command("create_api_client", "web-portal", "--source", "web_portal", "--scope", "contacts:read")
    key = capsys.readouterr().out.strip().splitlines()[-1]

    client = ApiClient.objects.get(name="web-portal")
    assert key.startswith("cd_") and key not in (client.key_hash, client.key_prefix)
    assert client.sources == ["web_portal"]
    assert client.scopes == ["contacts:read"]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/contacts?email=x@example.com").status_code == 200


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
field_values = {
    "contact": st.one_of(
        json_values, st.fixed_dictionaries({}, optional={"email": json_values, "phone": json_values})
    ),
    "purpose": st.one_of(json_values, st.sampled_from(["sms_marketing", "email_marketing"])),
    "status": st.one_of(json_values, st.sampled_from(["opted_in", "opted_out", "pending", "expired"])),
    "source": st.one_of(json_values, st.sampled_from(["mobile_app", "crm", "admin"])),
    "occurred_at": st.one_of(json_values, st.just("2026-11-20T09:14:03Z"), st.just("9999-99-99")),
    "ip_address": json_values,
    "frequency": json_values,
    "evidence": json_values,
    "policy_version": json_values,
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mutations=st.dictionaries(st.sampled_from(sorted(field_values)), st.none(), max_size=4), data=st.data()
)
def test_no_input_produces_a_500(api, event_body, mutations, data):
    body = event_body()
    for name in mutations:
        body[name] = data.draw(field_values[name])
    single = api.post(URL, body, format="json")
    batch = api.post(BATCH_URL, {"events": [body, data.draw(json_values)]}, format="json")

    assert single.status_code < 500, single.content
    assert batch.status_code < 500, batch.content
