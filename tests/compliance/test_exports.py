"""The compliance tables: filters, sorting, keyset pages, and exports (CSV, XLSX) that hold what
the filtered table shows, each one logged."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import openpyxl
import pytest
import time_machine
from django.test import RequestFactory
from django.urls import reverse

from compliance import selectors, services, views
from compliance.models import AccessLog, Contact

pytestmark = pytest.mark.django_db

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class _Cells(HTMLParser):
    """The text of each body row's cells of the page's first `table.data`."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.header: list[str] = []
        self._in_table = self._in_body = self._in_head = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if tag == "table" and "data" in classes and not self.header and not self.rows:
            self._in_table = True
        elif self._in_table and tag in ("thead", "tbody"):
            self._in_head, self._in_body = tag == "thead", tag == "tbody"
        elif self._in_table and self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_table and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = False
        elif self._in_table and tag in ("td", "th") and self._cell is not None:
            text = " ".join("".join(self._cell).split())
            (self.header if self._in_head else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_of(response: Any) -> tuple[list[str], list[list[str]]]:
    parser = _Cells()
    parser.feed(response.content.decode())
    return parser.header, parser.rows


def csv_of(response: Any) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode("utf-8"))))


def xlsx_of(response: Any) -> list[list[str]]:
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    return [["" if cell is None else str(cell) for cell in row] for row in sheet.iter_rows(values_only=True)]


def columns(header: list[str], rows: list[list[str]], names: list[str]) -> list[list[str]]:
    """These columns of the rows, with the page's "—" for nothing read as empty."""
    at = [header.index(name) for name in names]
    return [[("" if row[i] == "—" else row[i]) for i in at] for row in rows]


@pytest.fixture
def rosa(decide: Any) -> Contact:
    identity = services.ContactIdentity(email="rosa@example.com", first_name="Rosa", last_name="Lindqvist")
    minutes = iter(range(60, 0, -1))

    def ingest(**values: Any) -> None:
        at = datetime.now(UTC) - timedelta(minutes=next(minutes))
        services.consent_ingest(identity=identity, decision=decide(occurred_at=at, **values))

    ingest(purpose="sms_marketing", frequency="weekly")
    ingest(purpose="profiling", ip_address="2001:db8::7")
    ingest(purpose="sms_marketing", status="opted_out", source="email_link", policy_version=None)
    ingest(purpose="sms_marketing", frequency="monthly", source="web_portal")
    ingest(purpose="phone_marketing")
    return services.contact_resolve(identity=identity)


SHARED_EVENT_COLUMNS = [
    "Purpose",
    "Ver.",
    "Status",
    "Previous",
    "Frequency",
    "Source",
    "IP",
    "Policy",
    "Actor",
]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_history_export_holds_exactly_the_filtered_sorted_table(client_for, officer, rosa, fmt):
    client = client_for(officer)
    url = reverse("compliance:contact_history", args=[rosa.pk])
    query = {"purpose": "sms_marketing", "sort": "version"}

    page = client.get(url, query)
    export = client.get(url, {**query, "_export": fmt})

    header, rows = table_of(page)
    assert len(rows) == 3 and [row[1] for row in rows] == ["1", "2", "3"]
    exported = csv_of(export) if fmt == "csv" else xlsx_of(export)
    assert columns(exported[0], exported[1:], SHARED_EVENT_COLUMNS) == columns(
        header, rows, SHARED_EVENT_COLUMNS
    )
    assert f'filename="contact-{rosa.pk}-history.{fmt}"' in export["Content-Disposition"]
    # The full hash and the event's id, which the page shortens or leaves out.
    assert all(len(row[exported[0].index("Hash")]) == 64 for row in exported[1:])


def test_the_history_filters_by_status_source_and_day(client_for, officer, rosa):
    client = client_for(officer)
    url = reverse("compliance:contact_history", args=[rosa.pk])

    def shown(**query: str) -> list[tuple[str, str]]:
        return [(row[0], row[2]) for row in table_of(client.get(url, query))[1] if len(row) > 1]

    assert shown(status="opted_out") == [("sms_marketing", "Opted out")]
    assert shown(source="web_portal") == [("sms_marketing", "Opted in")]
    today = datetime.now(UTC).date()
    assert len(shown(since=str(today - timedelta(days=1)))) == 5
    assert shown(until=str(today - timedelta(days=2))) == []
    bad = client.get(url, {"status": "nonsense"})
    assert "Select a valid choice" in bad.content.decode()


def test_a_contact_search_export_holds_the_results(client_for, officer, rosa, decide):
    for first, email in [("Lena", "lena@example.com"), ("Max", "max@example.com")]:
        services.consent_ingest(
            identity=services.ContactIdentity(email=email, first_name=first, last_name="Lindqvist"),
            decision=decide(),
        )
    services.consent_ingest(
        identity=services.ContactIdentity(email="other@example.com", first_name="Ola", last_name="Berg"),
        decision=decide(),
    )
    client = client_for(officer)
    query = {"q": "Lindqvist", "sort": "email"}

    header, rows = table_of(client.get(reverse("compliance:contact_search"), query))
    exported = csv_of(client.get(reverse("compliance:contact_search"), {**query, "_export": "csv"}))

    assert [row[1] for row in rows] == ["lena@example.com", "max@example.com", "rosa@example.com"]
    names = ["Name", "Email", "Phone", "App user id", "Zoho CRM id"]
    assert columns(exported[0], exported[1:], names) == columns(header, rows, names)


def test_an_access_log_export_holds_the_filtered_entries(client_for, officer, auditor, rosa):
    client_for(auditor).get(rosa.get_absolute_url(), REMOTE_ADDR="192.0.2.9")
    client_for(officer).get(rosa.get_absolute_url())
    client = client_for(officer)

    header, rows = table_of(client.get(reverse("compliance:access_log"), {"user": auditor.username}))
    exported = xlsx_of(
        client.get(reverse("compliance:access_log"), {"user": auditor.username, "_export": "xlsx"})
    )

    names = ["User", "IP", "Kind", "Page", "Contacts", "Detail"]
    assert columns(header, rows, names) == [
        [auditor.username, "192.0.2.9", "History view", rosa.get_absolute_url(), str(rosa.pk), ""]
    ]
    assert columns(exported[0], exported[1:], names) == columns(header, rows, names)


def test_a_policy_export_holds_the_versions_and_their_counts(client_for, officer, rosa, policy):
    later = services.policy_version_publish(
        label="2026-09", effective_at="2026-09-01", url="https://example.com/p"
    )
    client = client_for(officer)

    _header, rows = table_of(client.get(reverse("compliance:policy_list")))
    exported = csv_of(client.get(reverse("compliance:policy_list"), {"_export": "csv"}))

    assert [row[0] for row in rows] == [later.label, policy.label]
    assert [row[0] for row in exported[1:]] == [later.label, policy.label]
    count = exported[0].index("Current opt-ins citing it")
    # rosa's current opt-ins: sms (re-opted in), profiling, phone; all cite the fixture's policy.
    assert [row[count] for row in exported[1:]] == ["0", "3"]


@pytest.mark.parametrize(
    ("url_name", "query", "detail", "whose"),
    [
        ("compliance:contact_history", {"purpose": "profiling"}, "CSV, 1 row", "rosa"),
        ("compliance:contact_search", {"q": "Lindqvist"}, "contacts CSV, 1 row", "rosa"),
        ("compliance:access_log", {"kind": "search"}, "access-log CSV, 0 rows", None),
        ("compliance:policy_list", {}, "policy-versions CSV, 1 row", None),
    ],
)
def test_every_export_is_logged_with_what_and_whose(
    client_for, officer, rosa, url_name, query, detail, whose
):
    args = [rosa.pk] if url_name == "compliance:contact_history" else []
    before = AccessLog.objects.filter(kind="export").count()

    response = client_for(officer).get(reverse(url_name, args=args), {**query, "_export": "csv"})

    assert response.status_code == 200
    assert AccessLog.objects.filter(kind="export").count() == before + 1
    entry = AccessLog.objects.filter(kind="export").latest("id")
    assert entry.username == officer.username and entry.detail.endswith(detail)
    assert [c.contact_id for c in entry.contacts.all()] == ([rosa.pk] if whose else [])
    if url_name == "compliance:contact_search":
        assert entry.query_hash == services.access_log_query_hash("Lindqvist")


def test_an_export_past_the_row_limit_is_refused_and_not_logged(client_for, officer, rosa, monkeypatch):
    monkeypatch.setattr(views, "EXPORT_MAX_ROWS", 2)
    client = client_for(officer)

    response = client.get(reverse("compliance:contact_history", args=[rosa.pk]), {"_export": "csv"})

    assert response.status_code == 302
    assert not AccessLog.objects.filter(kind="export").exists()
    assert "narrow the filter" in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("role", ["auditor", "outsider"])
def test_those_who_may_not_read_the_access_log_may_not_export_it(request, client_for, role):
    response = client_for(request.getfixturevalue(role)).get(
        reverse("compliance:access_log"), {"_export": "csv"}
    )
    assert response.status_code == 403


def test_an_outsider_exports_no_history(client_for, outsider, rosa):
    url = reverse("compliance:contact_history", args=[rosa.pk])
    assert client_for(outsider).get(url, {"_export": "csv"}).status_code == 403
    assert not AccessLog.objects.filter(kind="export").exists()


# --- The access log's keyset pages ---------------------------------------------------------------


@pytest.fixture
def log_entries(officer: Any) -> list[int]:
    """23 entries, some sharing a timestamp (the cursor must tell them apart by id)."""
    request = RequestFactory().get("/contacts/")
    request.user = officer
    ids = []
    with time_machine.travel(START, tick=False) as clock:
        for n in range(23):
            if n % 3:
                clock.shift(timedelta(seconds=1))
            ids.append(services.access_log_record(request=request, kind="search", query=f"q{n}").pk)
    return ids


def walk(entries: Any, *, oldest_first: bool) -> tuple[list[int], list[list[int]]]:
    pages: list[list[int]] = []
    cursor = ""
    while True:
        page = selectors.access_log_page(entries, after=cursor, size=5, oldest_first=oldest_first)
        pages.append([e.pk for e in page.rows])
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    back: list[list[int]] = []
    cursor = selectors.access_log_page(
        entries, after=cursor, size=5, oldest_first=oldest_first
    ).previous_cursor
    while True:
        page = selectors.access_log_page(entries, before=cursor, size=5, oldest_first=oldest_first)
        back.append([e.pk for e in page.rows])
        if not page.previous_cursor:
            break
        cursor = page.previous_cursor
    return [pk for rows in pages for pk in rows], back


def test_keyset_pages_read_every_entry_once_in_order_both_ways(log_entries):
    entries = selectors.access_log_entries()

    newest_first, back = walk(entries, oldest_first=False)
    oldest_first, _ = walk(entries, oldest_first=True)

    assert newest_first == sorted(log_entries, reverse=True)
    assert oldest_first == sorted(log_entries)
    # Walking back from the last page gives the same pages, last to first.
    forward = [newest_first[i : i + 5] for i in range(0, 23, 5)]
    assert back == forward[-2::-1]


def test_a_malformed_cursor_reads_as_the_first_page(log_entries):
    page = selectors.access_log_page(selectors.access_log_entries(), after="2026-13-45~x", size=5)
    assert [e.pk for e in page.rows] == sorted(log_entries, reverse=True)[:5]


def test_the_access_log_page_links_older_and_newer_pages(client_for, officer, log_entries, monkeypatch):
    monkeypatch.setattr(views, "ACCESS_LOG_PER_PAGE", 10)
    client = client_for(officer)

    first = client.get(reverse("compliance:access_log"), {"kind": "search"})
    second = client.get(f"{reverse('compliance:access_log')}?{first.context['next_query']}")
    back = client.get(f"{reverse('compliance:access_log')}?{second.context['previous_query']}")
    oldest = client.get(reverse("compliance:access_log"), {"kind": "search", "sort": "created_at"})

    newest = sorted(log_entries, reverse=True)
    assert [e.pk for e in first.context["page"]] == newest[:10]
    assert first.context["previous_query"] == ""
    assert "kind=search" in first.context["next_query"]
    assert [e.pk for e in second.context["page"]] == newest[10:20]
    assert [e.pk for e in back.context["page"]] == newest[:10]
    assert [e.pk for e in oldest.context["page"]] == sorted(log_entries)[:10]
    assert 'rel="next">Older' in first.content.decode()


def test_an_invalid_filter_shows_and_exports_nothing_rather_than_everything(client_for, officer, rosa):
    client = client_for(officer)
    url = reverse("compliance:contact_history", args=[rosa.pk])

    page = client.get(url, {"status": "nonsense"})
    export = csv_of(client.get(url, {"status": "nonsense", "_export": "csv"}))
    log = csv_of(client.get(reverse("compliance:access_log"), {"contact": "abc", "_export": "csv"}))

    assert "Select a valid choice" in page.content.decode()
    assert page.context["table"].paginator.count == 0
    assert export[1:] == [] and log[1:] == []
