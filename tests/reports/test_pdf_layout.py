"""What keeps the report pages readable, checked without laying a PDF out: the fixed-width event
lines fit A4, the running headers print names as they are."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.template import Context, Template

from compliance.models import ConsentEvent
from reports.templatetags.reports_pdf import LINE, css_string, event_lines
from tests.reports.conftest import days_ago

pytestmark = pytest.mark.django_db


def test_every_line_of_an_event_fits_the_page_and_nothing_is_dropped(ledger_of):
    event = ledger_of.record("long@example.com", "email_marketing", "opted_in", at=days_ago(1))
    stored = ConsentEvent.objects.select_related("purpose", "policy_version").get(pk=event.pk)
    # What a long user agent, an IPv6 address, a long actor, evidence and a reason look like.
    stored.user_agent = (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) " * 3
    )
    stored.ip_address = "2001:db8:85a3:1234:5678:8a2e:370:7334"
    # The personal values as the side table gives them (hash version 2).
    stored.plain_values = {"user_agent": stored.user_agent, "ip_address": stored.ip_address}
    stored.actor = "api:" + "a-very-long-api-client-name-" * 3
    stored.reason = "Corrected after the customer called: " + "x" * 200
    evidence = SimpleNamespace(
        event=stored,
        evidence_json='{"double_opt_in_confirmed_at": "2026-01-01T00:00:00+00:00", "note": "'
        + "y" * 150
        + '"}',
        hash_matches=True,
        chained=True,
    )

    lines = event_lines(evidence).split("\n")

    assert max(len(line) for line in lines) <= LINE
    text = "".join(line.strip() for line in lines).replace(" ", "")
    for part in (stored.user_agent, stored.ip_address, stored.actor, stored.reason, stored.hash):
        assert part.replace(" ", "") in text


@pytest.mark.parametrize(
    "name, printed",
    [
        ("Auditor's sample", "Auditor's sample"),
        ('The "Shop" AG', "The \\22 Shop\\22  AG"),
        ("a\\b</style>", "a\\5c b\\3c /style>"),
    ],
)
def test_running_header_text_is_escaped_for_css_not_for_javascript(name, printed):
    assert css_string(name) == printed
    rendered = Template('{% load reports_pdf %}content: "{{ name|css_string }}"').render(
        Context({"name": name})
    )
    assert rendered == f'content: "{printed}"'
