"""The desk's table template (`desk_table.html`: its rows written by one tag,
compliance/templatetags/desk_tables.py) gives the same HTML as django-tables2's own template, for
every feature the desk's tables use: render methods, links, defaults, static and per-row
attributes, row classes, localization, escaping, pages and the empty text; and for the desk's
tables of a contact's consent."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import django_tables2 as tables
import pytest
from django.test import RequestFactory
from django.test.html import parse_html
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django_tables2 import RequestConfig

from compliance import selectors, services
from compliance.tables import ConsentEventTable, ConsentStateTable, ContactHistoryTable, ContactSearchTable

STOCK = "django_tables2/table.html"


class Everything(tables.Table):
    name = tables.Column(linkify=lambda record: f"/people/{record['id']}/")
    note = tables.Column(default="—")
    count = tables.Column(attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    tone = tables.Column(attrs={"td": {"data-tone": lambda record: record["tone"]}}, empty_values=())
    amount = tables.Column(localize=True)
    code = tables.Column(localize=False)
    when = tables.Column()
    day = tables.Column()
    html = tables.Column()
    hidden = tables.Column(visible=False)

    class Meta:
        attrs = {"class": "data", "td": {"class": "cell"}}
        row_attrs = {"class": lambda record: "flagged" if record["id"] == 2 else ""}
        empty_text = "Nothing <here> yet."

    def render_tone(self, record: dict[str, Any]) -> str:
        return format_html("<em>{}</em>", record["tone"])


ROWS = [
    {
        "id": i,
        "name": f"Åsa <{i}> & co",
        "note": None if i % 2 else f"note {i}",
        "count": 1234567 * i,
        "tone": ["calm", "loud", '"quoted"', "calm"][i % 4],
        "amount": Decimal("1234.50") * i,
        "code": 98765 + i,
        "when": datetime(2026, 11, i, 9, 30, tzinfo=UTC),
        "day": date(2026, 12, i),
        "html": mark_safe(f"<b>{i}</b>") if i % 2 else "<b>not html</b>",
        "hidden": "never shown",
    }
    for i in range(1, 6)
]


def both(table_class: type, data: Any, *, query: dict[str, str] | None = None) -> tuple[str, str]:
    """The table rendered with the desk's template and with the library's, same request."""
    request = RequestFactory().get("/", query or {})
    rendered = []
    for template_name in (None, STOCK):
        kwargs = {"template_name": template_name} if template_name else {}
        table = table_class(data, **kwargs)
        RequestConfig(request, paginate={"per_page": 3}).configure(table)
        rendered.append(table.as_html(request))
    return rendered[0], rendered[1]


def test_the_desk_template_is_every_tables_default():
    assert Everything(ROWS).template_name == "desk_table.html"


@pytest.mark.parametrize("query", [{}, {"page": "2"}, {"sort": "-count"}])
def test_rows_are_written_as_the_librarys_template_writes_them(query):
    desk, stock = both(Everything, ROWS, query=query)
    assert desk.count("<tr") >= 3  # the header's and a page of 3 or 2
    assert parse_html(desk) == parse_html(stock)


def test_what_the_comparison_covers():
    desk, _stock = both(Everything, ROWS)
    for shown in (
        'class="flagged odd"',
        'data-tone="&quot;quoted&quot;"',
        "<b>1</b>",
        "&lt;b&gt;not html",
        "/people/2/",
    ):
        assert shown in desk


def test_an_empty_table_says_its_empty_text():
    desk, stock = both(Everything, [])
    assert "Nothing &lt;here&gt; yet." in desk
    assert parse_html(desk) == parse_html(stock)


@pytest.mark.django_db
def test_a_contacts_tables_are_written_as_the_librarys_template_writes_them(decide):
    identity = services.ContactIdentity(email="rosa@example.com", first_name="Rosa", last_name="Lindqvist")
    services.consent_ingest(identity=identity, decision=decide(purpose="sms_marketing", frequency="weekly"))
    services.consent_ingest(identity=identity, decision=decide(purpose="profiling", ip_address="2001:db8::7"))
    services.consent_ingest(
        identity=identity, decision=decide(purpose="sms_marketing", status="opted_out", source="email_link")
    )
    contact = services.contact_resolve(identity=identity)
    events = selectors.event_history(contact=contact)
    cases: list[tuple[type, Any]] = [
        (ConsentEventTable, events),
        (ContactHistoryTable, events),
        (ConsentStateTable, contact.states.select_related("purpose", "event__policy_version")),
        (ContactSearchTable, [contact]),
    ]
    for table_class, data in cases:
        desk, stock = both(table_class, data)
        assert parse_html(desk) == parse_html(stock), table_class.__name__


def test_django_tables2_reads_the_remembered_signatures():
    """compliance/table_signatures.py is installed, and gives what the library's own function
    gives: a method's arguments without `self` (whichever instance), a function's, a lambda's, a
    callable that cannot be held weakly, and a catch-all's name."""
    import functools

    from django_tables2 import utils

    from compliance import table_signatures

    assert utils.signature is table_signatures.signature
    library = table_signatures._library_signature

    class Holder:
        __slots__ = ()

        def render_x(self, value, record):
            return value

        def __call__(self, record, **rest):
            return record

    def plain(value, *args, bound_row=None):
        return value

    callables = [
        Holder().render_x,
        Holder().render_x,
        plain,
        lambda record: record,
        functools.partial(plain, 1),
        Holder(),
        Everything.render_tone,
    ]
    for fn in callables * 2:
        assert utils.signature(fn) == library(fn)
    assert utils.signature(Holder().render_x) == (("value", "record"), None)
    assert utils.signature(Holder()) == (("record",), "rest")
