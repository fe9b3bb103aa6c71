"""The access log: an entry for each kind of access, the officers' page with filters and CSV, append-only."""

from __future__ import annotations

import csv
import io
import logging

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory
from django.urls import reverse

from compliance import services
from compliance.models import AccessLog, AccessLogContact

pytestmark = pytest.mark.django_db


@pytest.fixture
def cleo(decide) -> int:
    identity = services.ContactIdentity(
        email="cleo.sandoval@example.com", first_name="Cleo", last_name="Sandoval"
    )
    return services.consent_ingest(identity=identity, decision=decide()).event.contact_id


def entries(kind: str) -> list[AccessLog]:
    return list(AccessLog.objects.filter(kind=kind).prefetch_related("contacts"))


def contact_ids(entry: AccessLog) -> list[int]:
    return [row.contact_id for row in entry.contacts.all()]


def test_viewing_a_history_is_logged_with_who_when_where_and_whose(client_for, officer, cleo) -> None:
    response = client_for(officer).get(
        reverse("compliance:contact_detail", args=[cleo]), REMOTE_ADDR="192.0.2.44"
    )

    assert response.status_code == 200
    [entry] = entries(AccessLog.Kind.HISTORY_VIEW)
    assert (entry.user, entry.username, entry.ip) == (officer, officer.username, "192.0.2.44")
    assert entry.path == f"/contacts/{cleo}/"
    assert contact_ids(entry) == [cleo]


def test_a_search_is_logged_with_its_results_and_only_a_hash_of_its_terms(
    client_for, officer, cleo, caplog
) -> None:
    with caplog.at_level(logging.DEBUG):
        client_for(officer).get(reverse("compliance:contact_search"), {"q": "cleo.sandoval@example.com"})

    [entry] = entries(AccessLog.Kind.SEARCH)
    assert contact_ids(entry) == [cleo]
    assert entry.query_hash == services.access_log_query_hash(" Cleo.Sandoval@example.com ")
    stored = [str(value) for value in AccessLog.objects.values_list().get()]
    assert not any("cleo" in value.lower() for value in stored)
    assert "cleo.sandoval" not in caplog.text.lower()


def test_an_empty_search_page_logs_nothing(client_for, officer) -> None:
    client_for(officer).get(reverse("compliance:contact_search"))

    assert not AccessLog.objects.exists()


def test_an_export_is_logged(client_for, officer) -> None:
    client_for(officer).get(reverse("compliance:access_log"), {"format": "csv"})

    [entry] = entries(AccessLog.Kind.EXPORT)
    assert entry.detail == "access log CSV"


def test_a_report_download_is_recorded_through_the_service(officer, cleo) -> None:
    request = RequestFactory().get("/reports/12/download", REMOTE_ADDR="198.51.100.3")
    request.user = officer

    services.access_log_record(
        request=request, kind=AccessLog.Kind.REPORT_DOWNLOAD, contact_ids=[cleo, cleo], detail="report 12"
    )

    [entry] = entries(AccessLog.Kind.REPORT_DOWNLOAD)
    assert (entry.username, entry.ip, entry.detail, contact_ids(entry)) == (
        officer.username,
        "198.51.100.3",
        "report 12",
        [cleo],
    )


def test_an_unknown_kind_is_refused(officer) -> None:
    request = RequestFactory().get("/")
    request.user = officer

    with pytest.raises(ValueError, match="unknown access kind"):
        services.access_log_record(request=request, kind="peek")


@pytest.mark.parametrize("statement", ["UPDATE {table} SET {column} = {value}", "DELETE FROM {table}"])
@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("compliance_accesslog", "username", "'someone-else'"),
        ("compliance_accesslogcontact", "contact_id", "1"),
    ],
)
def test_the_database_refuses_to_change_or_delete_an_entry(
    client_for, officer, cleo, statement, table, column, value
) -> None:
    client_for(officer).get(reverse("compliance:contact_detail", args=[cleo]))

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement.format(table=table, column=column, value=value))

    assert AccessLog.objects.get().username == officer.username
    assert AccessLogContact.objects.count() == 1


def test_the_page_shows_entries_newest_first_and_filters_them(client_for, officer, auditor, admin_user, cleo):
    client_for(officer).get(reverse("compliance:contact_detail", args=[cleo]))
    client_for(officer).get(reverse("compliance:contact_search"), {"q": "Sandoval"})
    client_for(auditor).get(reverse("compliance:contact_detail", args=[cleo]))
    page = client_for(admin_user)

    everything = page.get(reverse("compliance:access_log"))
    assert everything.status_code == 200
    assert [e.kind for e in everything.context["page"]] == ["history_view", "search", "history_view"]

    def kinds(**filters: object) -> list[tuple[str, str]]:
        response = page.get(reverse("compliance:access_log"), filters)
        return [(e.username, e.kind) for e in response.context["page"]]

    assert kinds(user=auditor.username) == [(auditor.username, "history_view")]
    assert kinds(kind="search") == [(officer.username, "search")]
    assert kinds(terms="  sandoval ") == [(officer.username, "search")]
    assert kinds(terms="someone else") == []
    assert len(kinds(contact=cleo)) == 3
    assert kinds(contact=cleo + 1000) == []


def test_the_csv_export_holds_the_filtered_entries(client_for, officer, auditor, cleo) -> None:
    client_for(auditor).get(reverse("compliance:contact_detail", args=[cleo]), REMOTE_ADDR="192.0.2.9")

    response = client_for(officer).get(
        reverse("compliance:access_log"), {"format": "csv", "user": auditor.username}
    )

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["when (UTC)", "user", "ip", "kind"]
    assert [[*row[1:4], row[5]] for row in rows[1:]] == [
        [auditor.username, "192.0.2.9", "history_view", str(cleo)]
    ]


def test_an_entry_naming_many_contacts_shows_ten_and_counts_the_rest_and_its_export_lists_all(
    client_for, officer
) -> None:
    # Given an export's entry that named 25 contacts (ids 1001-1025)
    request = RequestFactory().get("/sync/discrepancies/", REMOTE_ADDR="198.51.100.7")
    request.user = officer
    services.access_log_record(
        request=request, kind=AccessLog.Kind.EXPORT, contact_ids=range(1025, 1000, -1), detail="25 rows"
    )
    client = client_for(officer)

    # The page links the first ten and says how many more
    html = client.get(reverse("compliance:access_log"), {"kind": "export"}).content.decode()
    linked = [n for n in range(1001, 1026) if f'href="/contacts/{n}/"' in html]
    assert linked == list(range(1001, 1011))
    assert "and 15 more" in html
    # and so does the page of one of the others
    html = client.get(reverse("compliance:access_log"), {"contact": "1020"}).content.decode()
    assert "and 15 more" in html and "25 rows" in html
    # The export (django-tables2's) lists all 25
    response = client.get(reverse("compliance:access_log"), {"kind": "export", "_export": "csv"})
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    contacts = rows[0].index("Contacts")
    assert [row[contacts] for row in rows[1:] if row[-1] == "25 rows"] == [
        " ".join(str(n) for n in range(1001, 1026))
    ]


@pytest.mark.parametrize(
    ("role", "status"), [("officer", 200), ("admin_user", 200), ("auditor", 403), ("outsider", 403)]
)
def test_only_officers_and_admins_read_the_access_log(request, client_for, role, status) -> None:
    user = request.getfixturevalue(role)

    assert client_for(user).get(reverse("compliance:access_log")).status_code == status
    assert client_for(user).get(reverse("compliance:access_log"), {"format": "csv"}).status_code == status


def test_anonymous_visitors_are_sent_to_log_in(client) -> None:
    response = client.get(reverse("compliance:access_log"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("compliance:login"))


def test_an_api_client_reading_a_history_or_looking_up_a_contact_is_logged(api_client_and_key, cleo) -> None:
    from django.test import Client

    api_client, key = api_client_and_key
    http = Client(HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR="198.51.100.7")

    assert http.get(f"/api/v1/contacts/{cleo}/consents").status_code == 200
    assert http.get("/api/v1/contacts", {"email": "cleo.sandoval@example.com"}).status_code == 200

    [history] = entries(AccessLog.Kind.HISTORY_VIEW)
    [search] = entries(AccessLog.Kind.SEARCH)
    for entry in (history, search):
        assert (entry.user, entry.api_client, entry.ip) == (None, api_client, "198.51.100.7")
        assert entry.username == "api:cast-mobile-app" and contact_ids(entry) == [cleo]
    assert "cleo" not in search.query_hash and len(search.query_hash) == 64
