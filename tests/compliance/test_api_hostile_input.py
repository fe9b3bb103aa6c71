"""Hostile input never gives a 500: each answers a 4xx in the JSON error shape and records nothing.

The shape: {"detail": "...", "errors": {"field": ["message"]}}.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from compliance.models import ConsentEvent, Contact

pytestmark = pytest.mark.django_db

URL = "/api/v1/consent-events"
BATCH_URL = "/api/v1/consent-events/batch"


def assert_error_shape(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], dict)
    assert all(isinstance(v, list) and all(isinstance(m, str) for m in v) for v in body["errors"].values())
    return body


def nothing_recorded() -> bool:
    return ConsentEvent.objects.count() == 0 and Contact.objects.count() == 0


def raw_post(api: APIClient, url: str, body: str) -> Any:
    """Post JSON text as given (the test client would refuse to encode a lone surrogate)."""
    return api.post(url, data=body.encode("utf-8", "surrogatepass"), content_type="application/json")


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth - 1):
        value = {"k": value}
    return {"k": value}


# --- Evidence limits -------------------------------------------------------------------------


def test_evidence_of_16_kb_is_taken_and_one_byte_more_is_refused(api, event_body):
    frame = len(json.dumps({"note": ""}, separators=(",", ":")))
    fits = api.post(URL, event_body(evidence={"note": "x" * (16 * 1024 - frame)}), format="json")
    too_big = api.post(URL, event_body(evidence={"note": "x" * (16 * 1024 - frame + 1)}), format="json")

    assert fits.status_code == 201, fits.content
    body = assert_error_shape(too_big, 400)
    assert "16384 bytes" in body["errors"]["evidence"][0]
    assert ConsentEvent.objects.count() == 1


def test_evidence_of_2_mb_is_refused(api, event_body):
    response = api.post(URL, event_body(evidence={"blob": "x" * 2_000_000}), format="json")
    assert_error_shape(response, 400)
    assert nothing_recorded()


def test_evidence_with_more_than_200_keys_is_refused(api, event_body):
    assert (
        api.post(URL, event_body(evidence={f"k{i}": i for i in range(200)}), format="json").status_code == 201
    )
    response = api.post(URL, event_body(evidence={f"k{i}": i for i in range(10_000)}), format="json")
    body = assert_error_shape(response, 400)
    assert "200 keys" in body["errors"]["evidence"][0]
    # Keys count at every level.
    spread = {f"g{g}": {f"k{i}": i for i in range(60)} for g in range(4)}
    assert_error_shape(api.post(URL, event_body(evidence=spread), format="json"), 400)
    assert ConsentEvent.objects.count() == 1


def test_evidence_nests_10_levels_at_most(api, event_body):
    assert api.post(URL, event_body(evidence=nested(10)), format="json").status_code == 201
    body = assert_error_shape(api.post(URL, event_body(evidence=nested(11)), format="json"), 400)
    assert "10 levels" in body["errors"]["evidence"][0]
    assert_error_shape(
        api.post(URL, event_body(evidence={"list": [[[[[[[[[[[1]]]]]]]]]]]}), format="json"), 400
    )
    assert ConsentEvent.objects.count() == 1


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
def test_evidence_nested_a_thousand_levels_or_more_is_a_400(api, event_body, depth):
    body = json.dumps(event_body(evidence={}))
    hostile = body.replace('"evidence": {}', '"evidence": ' + '{"k": ' * depth + "1" + "}" * depth)
    assert_error_shape(raw_post(api, URL, hostile), 400)
    batch = '{"events": [' + hostile + "]}"
    assert_error_shape(raw_post(api, BATCH_URL, batch), 400)
    assert nothing_recorded()


@override_settings(EVIDENCE_MAX_BYTES=100, EVIDENCE_MAX_KEYS=3, EVIDENCE_MAX_DEPTH=2)
def test_the_evidence_limits_come_from_the_settings(api, event_body):
    assert api.post(URL, event_body(evidence={"a": {"b": 1}}), format="json").status_code == 201
    for evidence in ({"a": {"b": {"c": 1}}}, {"a": 1, "b": 2, "c": 3, "d": 4}, {"a": "x" * 100}):
        assert_error_shape(api.post(URL, event_body(evidence=evidence), format="json"), 400)


# --- Unicode ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw_value"),
    [
        ("evidence", '{"note": "\\ud800"}'),
        ("evidence", '{"\\udfff": 1}'),
        ("evidence", '{"deep": [{"x": "a\\udc00b"}]}'),
        ("user_agent", '"Shop\\ud800App"'),
        ("reason", '"\\ud83d"'),
    ],
)
def test_a_lone_surrogate_anywhere_is_refused_with_400(api, event_body, field, raw_value):
    hostile = json.dumps(event_body(**{field: "@@HOLE@@"})).replace('"@@HOLE@@"', raw_value)

    response = raw_post(api, URL, hostile)

    body = assert_error_shape(response, 400)
    assert field in body["errors"], body
    assert "urrogate" in body["errors"][field][0]
    assert nothing_recorded()


def test_a_lone_surrogate_in_a_contact_identifier_is_refused(api, event_body):
    body = json.dumps(event_body()).replace('"first_name": "Ana"', '"first_name": "A\\ud800na"')
    response = raw_post(api, URL, body)
    assert "contact.first_name" in assert_error_shape(response, 400)["errors"]
    assert nothing_recorded()


def test_a_nul_character_in_evidence_is_refused(api, event_body):
    response = api.post(URL, event_body(evidence={"note": "a\x00b"}), format="json")
    assert_error_shape(response, 400)
    assert nothing_recorded()


def test_a_number_too_large_for_a_float_in_evidence_is_refused(api, event_body):
    body = json.dumps(event_body(evidence={})).replace('"evidence": {}', '"evidence": {"n": 1e999}')
    assert_error_shape(raw_post(api, URL, body), 400)
    assert nothing_recorded()


def test_valid_unicode_beyond_the_basic_plane_is_kept(api, event_body):
    response = api.post(URL, event_body(evidence={"note": "Zoë ✓ 🙂"}), format="json")
    assert response.status_code == 201
    assert ConsentEvent.objects.select_related("personal").get().shown_evidence == {"note": "Zoë ✓ 🙂"}


# --- occurred_at -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "occurred_at",
    [
        "2026-11-20T09:14:03",  # no time zone
        "2026-11-20 09:14:03",
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+05:00",
        "0001-01-01T00:00:00-05:00",
        "1999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-12:00",
    ],
)
def test_occurred_at_needs_a_time_zone_and_must_lie_after_2000(api, event_body, occurred_at):
    response = api.post(URL, event_body(occurred_at=occurred_at), format="json")
    assert "occurred_at" in assert_error_shape(response, 400)["errors"]
    assert nothing_recorded()


def test_occurred_at_with_an_offset_is_taken(api, event_body):
    response = api.post(URL, event_body(occurred_at="2026-03-01T10:00:00+01:00"), format="json")
    assert response.status_code == 201
    assert ConsentEvent.objects.get().occurred_at.isoformat() == "2026-03-01T09:00:00+00:00"


# --- The body --------------------------------------------------------------------------------


def test_a_20_mb_body_answers_413_in_json(api):
    response = api.post(URL, data=b'{"x": "' + b"a" * 20_000_000 + b'"}', content_type="application/json")
    body = assert_error_shape(response, 413)
    assert "bytes" in body["detail"]
    assert nothing_recorded()


@override_settings(API_MAX_BODY_BYTES=1000)
def test_the_body_limit_comes_from_the_settings_and_counts_the_bytes_sent(api, event_body):
    assert api.post(URL, event_body(), format="json").status_code == 201
    assert_error_shape(api.post(URL, event_body(user_agent="x" * 1000), format="json"), 413)
    assert_error_shape(api.post(BATCH_URL, {"events": [event_body()] * 4}, format="json"), 413)


def test_a_body_that_is_not_json_answers_415(api):
    response = api.post(URL, data="contact=1", content_type="application/x-www-form-urlencoded")
    assert_error_shape(response, 415)


def test_a_body_in_another_charset_that_does_not_decode_is_a_400(api):
    response = api.post(URL, data=b'{"a": "\xff"}', content_type="application/json")
    assert_error_shape(response, 400)


# --- A bad item in a batch fails alone -------------------------------------------------------


def test_each_hostile_item_of_a_batch_fails_alone(api, event_body):
    good = [event_body(idempotency_key=f"good-{i}", contact={"app_user_id": f"u-{i}"}) for i in range(3)]
    hostile_items = [
        '{"evidence": {"note": "\\ud800"}}',
        '{"evidence": ' + json.dumps(nested(11)) + "}",
        '{"evidence": {"blob": "' + "x" * 20_000 + '"}}',
        '{"occurred_at": "0001-01-01T00:00:00Z"}',
        '{"occurred_at": "2026-11-20T09:14:03"}',
        '{"contact": {"email": "a\\ud800@example.com"}}',
    ]
    items = []
    for index, patch in enumerate(hostile_items):
        item = event_body(idempotency_key=f"bad-{index}", contact={"app_user_id": f"bad-{index}"})
        merged = json.dumps(item)[:-1] + ", " + patch[1:-1] + "}"  # later keys win
        items.append(merged)
    text = (
        '{"events": ['
        + ", ".join([json.dumps(good[0]), *items, json.dumps(good[1]), json.dumps(good[2])])
        + "]}"
    )

    response = raw_post(api, BATCH_URL, text)

    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["status"] for r in body["results"]] == [201, 400, 400, 400, 400, 400, 400, 201, 201]
    assert (body["created"], body["failed"]) == (3, 6)
    for result in body["results"][1:7]:
        assert result["detail"] and result["errors"], result
    assert sorted(ConsentEvent.objects.values_list("idempotency_key", flat=True)) == [
        "good-0",
        "good-1",
        "good-2",
    ]
    assert not Contact.objects.filter(app_user_id__startswith="bad-").exists()


# --- Fuzz: the batch path, with unicode and nesting ------------------------------------------

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.lists(st.one_of(st.characters(), surrogates), max_size=6).map("".join),
    st.just("\x00"),
)
leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), hostile_text
)
json_like = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3),
    max_leaves=12,
)
deep_nesting = st.integers(1, 40).map(nested)
wide = st.integers(150, 260).map(lambda n: {f"k{i}": i for i in range(n)})
evidence = st.one_of(json_like, deep_nesting, wide, st.dictionaries(hostile_text, json_like, max_size=4))
occurred_at = st.one_of(
    st.just("2026-11-20T09:14:03Z"),
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.isoformat() + "-11:30"),
    hostile_text,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "evidence": evidence,
                "occurred_at": occurred_at,
                "user_agent": hostile_text,
                "reason": hostile_text,
                "contact": st.fixed_dictionaries(
                    {}, optional={"email": hostile_text, "first_name": hostile_text}
                ),
            },
        ),
        min_size=1,
        max_size=4,
    )
)
def test_the_batch_path_never_answers_500_and_a_bad_item_fails_alone(api, event_body, items):
    anchor = event_body()
    events = [json.dumps({**event_body(), **item}, ensure_ascii=True) for item in items]
    text = '{"events": [' + ", ".join([*events, json.dumps(anchor)]) + "]}"

    response = raw_post(api, BATCH_URL, text)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert len(results) == len(items) + 1
    assert results[-1]["status"] in (200, 201), results[-1]  # the good item at the end went through
    for result in results:
        assert result["status"] < 500, result
        if result["status"] >= 400:
            assert result["detail"] and isinstance(result["errors"], dict), result


def test_a_nul_character_or_a_huge_value_in_a_lookup_is_a_400():
    from compliance import services

    _, key = services.api_client_create(name="reader", sources=[], scopes=["contacts:read"])
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    for query in ("app_user_id=%00", "email=a%00b@example.com", "phone=" + "1" * 300):
        assert "errors" in assert_error_shape(reader.get(f"/api/v1/contacts?{query}"), 400)
