"""The trends page: weekly changes, opt-in rates, Zoho error rates and credits, filters and CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from html import unescape

import openpyxl
import pytest
import time_machine

from compliance.models import AccessLog
from compliance.tallies import consent_day_tally
from sync.models import ZohoCall
from sync.tallies import callhour_tally

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)  # a Thursday
URL = "/trends/"


def call(at: datetime, *, operation: str, failed: bool = False, credits: int = 1) -> None:
    ZohoCall.objects.create(
        service="crm", operation=operation, method="PUT", path="/crm/v8/Contacts", started_at=at,
        finished_at=at + timedelta(milliseconds=90), duration_ms=90, http_status=500 if failed else 200,
        credits=credits, outcome=ZohoCall.Outcome.ERROR if failed else ZohoCall.Outcome.OK,
    )  # fmt: skip


@pytest.fixture
def activity(record):
    """Decisions in three weeks; calls on two days of November and today."""
    record("ann@example.com", "sms_marketing", "opted_in", at=NOW - timedelta(days=15))
    record("ben@example.com", "sms_marketing", "opted_in", source="web_portal", at=NOW - timedelta(days=8))
    record("ann@example.com", "sms_marketing", "opted_out", source="email_link", at=NOW - timedelta(days=1))
    record("cat@example.com", "profiling", "opted_in", at=NOW - timedelta(days=1))
    for n in range(4):
        call(datetime(2026, 11, 20, 10, n, tzinfo=UTC), operation="crm.update", failed=n == 0, credits=2)
        call(datetime(2026, 11, 20, 11, n, tzinfo=UTC), operation="crm.get")
    call(datetime(2026, 11, 21, 10, 0, tzinfo=UTC), operation="crm.get", failed=True)
    call(NOW - timedelta(minutes=5), operation="crm.update", failed=True)
    consent_day_tally()
    callhour_tally(now=NOW)


def get(client, query: str = ""):
    with time_machine.travel(NOW, tick=False):
        return client.get(URL + query)


def table_of(html: str, chart_id: str) -> list[list[str]]:
    """The rows of the table beside the chart `chart_id`, as the page shows them."""
    figure = html[html.index(f'id="{chart_id}"') :]
    table = figure[figure.index("<table") : figure.index("</table>")]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        rows.append([unescape(c.strip()) for c in cells])
    return rows


def test_the_page_shows_each_chart_with_title_description_and_table(client_for, officer, activity):
    response = get(client_for(officer), "?since=2026-11-09&until=2026-12-03")
    html = response.content.decode()

    assert response.status_code == 200
    keys = [key for key, _chart in response.context["charts"]]
    assert keys == ["changes", "purposes", "optin", "errors-daily", "errors-monthly", "credits"]
    for key, chart in response.context["charts"]:
        assert f'id="{key}"' in html and chart.title in html and chart.svg in html
    assert "<script" not in html
    changes = table_of(html, "changes")
    # Sources busiest first (then by name), and the total.
    assert changes == [
        ["", "Mobile app", "Email unsubscribe link", "Web portal", "Total"],
        ["2026-11-09", "0", "0", "0", "0"],
        ["2026-11-16", "1", "0", "0", "1"],
        ["2026-11-23", "0", "0", "1", "1"],
        ["2026-11-30", "1", "1", "0", "2"],
    ]


def test_opt_in_rates_per_week(client_for, officer, activity):
    response = get(client_for(officer), "?since=2026-11-09&until=2026-12-03")

    optin = dict(response.context["charts"])["optin"]
    assert optin.headers == (
        "", "email_marketing", "phone_marketing", "profiling", "sms_marketing", "third_party_sharing",
    )  # fmt: skip
    column = optin.headers.index("sms_marketing")
    assert [row[column] for row in optin.rows] == [None, 100.0, 100.0, 50.0]


def test_error_rates_per_day_and_month_by_endpoint_and_credits(client_for, officer, activity):
    response = get(client_for(officer), "?since=2026-11-20&until=2026-12-03")
    charts = dict(response.context["charts"])

    daily = charts["errors-daily"]
    by_day = {row[0]: dict(zip(daily.headers[1:], row[1:], strict=True)) for row in daily.rows}
    assert by_day["2026-11-20"] == {"crm.get": 0.0, "crm.update": 25.0}
    assert by_day["2026-11-21"] == {"crm.get": 100.0, "crm.update": None}
    assert by_day["2026-12-03"] == {"crm.get": None, "crm.update": 100.0}  # today, from the call log
    monthly = {row[0]: row[1:] for row in charts["errors-monthly"].rows}
    assert monthly["2026-11"] == (20.0, 25.0) and monthly["2026-12"] == (None, 100.0)
    credits = dict(charts["credits"].rows)
    assert (credits["2026-11-20"], credits["2026-11-21"], credits["2026-12-03"]) == (12, 1, 1)


def test_filters_narrow_the_changes_to_a_purpose_and_a_source(client_for, officer, activity):
    response = get(
        client_for(officer), "?since=2026-11-09&until=2026-12-03&purpose=sms_marketing&source=email_link"
    )

    changes = dict(response.context["charts"])["changes"]
    assert changes.headers == ("", "Email unsubscribe link", "Total")
    assert [row[-1] for row in changes.rows] == [0, 0, 0, 1]


def test_the_csv_export_equals_the_table_and_is_logged(client_for, officer, activity):
    client = client_for(officer)
    query = "?since=2026-11-09&until=2026-12-03&purpose=sms_marketing"
    html = get(client, query).content.decode()

    for key in ("changes", "optin", "errors-daily", "credits"):
        response = get(client, f"{query}&_export=csv&chart={key}")
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert f"trends-{key}-2026-11-09-2026-12-03.csv" in response["Content-Disposition"]
        exported = list(csv.reader(io.StringIO(response.content.decode())))
        shown = table_of(html, key)
        assert exported[0][1:] == shown[0][1:]
        assert [[cell or "—" for cell in row] for row in exported[1:]] == shown[1:]
    logged = AccessLog.objects.filter(kind=AccessLog.Kind.EXPORT, user=officer)
    assert logged.count() == 4
    assert logged.filter(
        detail__startswith="trends changes 2026-11-09..2026-12-03 purpose=sms_marketing"
    ).exists()


def test_the_xlsx_export_holds_the_same_rows(client_for, officer, activity):
    client = client_for(officer)
    query = "?since=2026-11-09&until=2026-12-03"
    chart = dict(get(client, query).context["charts"])["optin"]

    response = get(client, f"{query}&_export=xlsx&chart=optin")

    assert response.status_code == 200 and "spreadsheetml" in response["Content-Type"]
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    rows = [tuple(cell.value for cell in row) for row in sheet.iter_rows()]
    assert rows[0] == ("Period", *chart.headers[1:])
    assert rows[1:] == [tuple(None if cell is None else cell for cell in row) for row in chart.rows]


def test_an_unknown_chart_is_not_exported(client_for, officer, activity):
    response = get(client_for(officer), "?_export=csv&chart=passwords")

    assert response.status_code == 404
    assert not AccessLog.objects.filter(kind=AccessLog.Kind.EXPORT).exists()


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("?since=2026-12-01&until=2026-11-01", "until", "The end of the range is before its start."),
        ("?since=2020-01-01&until=2026-11-01", "since", "Choose at most three years."),
        ("?since=yesterday", "since", "Enter a valid date."),
        (
            "?purpose=nonsense",
            "purpose",
            "Select a valid choice. nonsense is not one of the available choices.",
        ),
    ],
)
def test_a_bad_range_or_filter_is_shown_next_to_its_field_and_nothing_is_drawn(
    client_for, officer, query, field, message
):
    response = get(client_for(officer), query)
    html = response.content.decode()

    assert response.status_code == 400
    assert f'<span class="error field-error" id="{field}-error">{message}</span>' in html
    assert response.context["charts"] == []


def test_the_default_range_is_the_last_12_months(client_for, officer, activity):
    response = get(client_for(officer))

    form = response.context["form"]
    assert (form.cleaned_data["since"].isoformat(), form.cleaned_data["until"].isoformat()) == (
        "2025-12-04", "2026-12-03",
    )  # fmt: skip
    assert len(dict(response.context["charts"])["changes"].rows) == 53


@pytest.mark.parametrize("role", ["auditor", "outsider"])
def test_people_who_do_not_watch_the_desk_are_refused(request, client_for, role):
    response = get(client_for(request.getfixturevalue(role)))

    assert response.status_code == 403


def test_the_page_takes_a_fixed_number_of_queries_and_reads_no_event_table_scan(
    client_for, officer, activity, record, django_assert_max_num_queries
):
    client = client_for(officer)
    get(client)
    for n in range(20):
        record(f"more{n}@example.com", "profiling", "opted_in", at=NOW - timedelta(days=n))
    with django_assert_max_num_queries(20) as captured:
        response = get(client)

    assert response.status_code == 200
    scans = [q["sql"] for q in captured.captured_queries if 'FROM "compliance_consentevent"' in q["sql"]]
    assert len(scans) == 1 and '"compliance_consentevent"."id" >' in scans[0]


def test_the_page_follows_beats_tallies_at_once(client_for, officer, activity, record):
    """The stored weeks a process remembers (compliance/tally_memo.py) are read again as soon as
    beat's tally moves its mark: decisions it counted since the last view are on the page."""
    client = client_for(officer)
    query = "?since=2026-11-09&until=2026-12-03"
    before = dict(get(client, query).context["charts"])["changes"].rows
    for n in range(3):
        record(
            f"late{n}@example.com", "profiling", "opted_in", source="web_portal", at=NOW - timedelta(days=9)
        )
    consent_day_tally()  # past the mark now: only the stored days hold them

    after = dict(get(client, query).context["charts"])["changes"].rows
    assert [row[-1] for row in before] == [0, 1, 1, 2]
    assert [row[-1] for row in after] == [0, 1, 4, 2]
