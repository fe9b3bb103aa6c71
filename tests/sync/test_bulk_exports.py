"""The discrepancy and alert tables: django-filter filters, and CSV exports (``?_export=csv``) that
hold exactly the filtered rows, each export logged in the access log."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.urls import reverse

from compliance.models import AccessLog
from sync.alerts import alert_auth
from sync.discrepancies import HINTS, discrepancy_record
from sync.models import Alert, Discrepancy

pytestmark = pytest.mark.django_db

SMS = "SMS_Opt_In"
PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"


@pytest.fixture
def rows(ledger: Any) -> list[Discrepancy]:
    made = []
    for n, (field, kind) in enumerate(
        [
            (SMS, Discrepancy.Kind.PERMISSION_DENIED),
            (SMS, Discrepancy.Kind.PERMISSION_DENIED),
            (PHONE, Discrepancy.Kind.OVERWRITTEN),
            ("", Discrepancy.Kind.RECORD_MISSING),
        ]
    ):
        contact = ledger.change(f"e{n}@example.com", "sms_marketing", "opted_in")
        made.append(
            discrepancy_record(
                contact_id=contact.pk,
                crm_field=field,
                kind=kind,
                expected=True,
                actual=False,
                hint=HINTS[kind].format(field=field, zoho_id="1"),
            ).discrepancy
        )
    Discrepancy.objects.filter(pk=made[1].pk).update(status="resolved")
    return made


def exported(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, [3, 2, 0]),  # open ones, any field (the page's default)
        ({"kind": "permission_denied", "status": ""}, [1, 0]),
        ({"field": ""}, [3]),  # the record-level ones
        ({"field": PHONE}, [2]),
    ],
)
def test_a_csv_export_holds_exactly_the_filtered_table(
    client_for: Any, officer: Any, rows: list[Discrepancy], query: dict[str, str], expected: list[int]
) -> None:
    client = client_for(officer)
    page = client.get(reverse("sync:discrepancy_list"), query)
    shown = [row.record.pk for row in page.context["table"].page.object_list]

    lines = exported(client.get(reverse("sync:discrepancy_list"), {**query, "_export": "csv"}))

    assert shown == [rows[i].pk for i in expected]
    assert [int(line["Discrepancy id"]) for line in lines] == shown
    assert [int(line["Contact id"]) for line in lines] == [rows[i].contact_id for i in expected]
    first = lines[0]
    assert first["Kind"] in Discrepancy.Kind.values and "<" not in "".join(first.values())
    log = AccessLog.objects.filter(kind=AccessLog.Kind.EXPORT).latest("created_at")
    assert log.username == officer.username and log.detail.startswith("discrepancies CSV")
    assert sorted(c.contact_id for c in log.contacts.all()) == sorted(rows[i].contact_id for i in expected)


def test_the_list_offers_the_export_of_its_filter(
    client_for: Any, officer: Any, rows: list[Discrepancy]
) -> None:
    html = client_for(officer).get(reverse("sync:discrepancy_list"), {"kind": "overwritten"}).content.decode()
    assert "kind=overwritten" in html and "_export=csv" in html


def test_an_unknown_export_format_is_refused_and_not_logged(client_for: Any, officer: Any, rows: Any) -> None:
    answer = client_for(officer).get(reverse("sync:discrepancy_list"), {"_export": "pdf"})
    assert answer.status_code == 400
    assert not AccessLog.objects.filter(kind=AccessLog.Kind.EXPORT).exists()


def test_the_alert_export_follows_the_alert_filter(client_for: Any, officer: Any) -> None:
    first = alert_auth(message="Zoho refused our credentials (first)")
    Alert.objects.filter(pk=first.pk).update(acknowledged_at="2026-11-01T10:00:00Z", acknowledged_by="bo")
    second = Alert.objects.create(kind=Alert.Kind.THRESHOLD, message="Too many open: 1,522")
    client = client_for(officer)

    waiting = exported(client.get(reverse("sync:alert_list"), {"_export": "csv"}))
    every = exported(client.get(reverse("sync:alert_list"), {"acknowledged": "any", "_export": "csv"}))
    threshold = exported(
        client.get(reverse("sync:alert_list"), {"acknowledged": "any", "kind": "auth", "_export": "csv"})
    )

    assert [line["Message"] for line in waiting] == [second.message]
    assert {line["Message"] for line in every} == {first.message, second.message}
    assert [line["Kind"] for line in threshold] == ["auth"]
    assert AccessLog.objects.filter(kind=AccessLog.Kind.EXPORT, detail__startswith="alerts CSV").count() == 3
    # The old link still shows every alert.
    page = client.get(reverse("sync:alert_list"), {"show": "all"})
    assert len(page.context["table"].page.object_list) == 2


@pytest.mark.parametrize("who", ["auditor", "outsider"])
def test_people_who_may_not_see_the_tables_may_not_export_them(
    who: str, request: Any, client_for: Any, rows: Any
) -> None:
    client = client_for(request.getfixturevalue(who))
    for name in ("sync:discrepancy_list", "sync:alert_list"):
        assert client.get(reverse(name), {"_export": "csv"}).status_code == 403
    assert not AccessLog.objects.filter(kind=AccessLog.Kind.EXPORT).exists()


def test_the_fast_export_gives_what_django_tables2_s_own_export_gives(rows: list[Discrepancy]) -> None:
    from sync import selectors
    from sync.tables import AlertTable, DiscrepancyTable

    Discrepancy.objects.filter(pk=rows[3].pk).update(next_retry_at=None)
    Alert.objects.create(kind=Alert.Kind.THRESHOLD, message="Too many open")
    acknowledged = Alert.objects.create(kind=Alert.Kind.RETRIES_EXHAUSTED, message="x", discrepancy=rows[0])
    Alert.objects.filter(pk=acknowledged.pk).update(
        acknowledged_at="2026-11-01T10:00:00Z", acknowledged_by="bo"
    )
    tables = [
        DiscrepancyTable(selectors.discrepancies_list()),
        AlertTable(selectors.alerts_list(include_acknowledged=True)),
    ]

    for table in tables:
        assert [list(map(str, r)) for r in table.export_rows()] == [
            list(map(str, r)) for r in table.as_values()
        ]
