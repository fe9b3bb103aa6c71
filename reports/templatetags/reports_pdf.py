"""Template helpers of the report layouts: a chart with its table, durations in words."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from compliance.charts import Chart

register = template.Library()


@register.inclusion_tag("reports/pdf_chart.html")
def chart_block(chart: Chart, category: str = "") -> dict[str, Any]:
    """The chart, its table and its description, kept on one page; `category` heads the table's
    first column (the charts leave it blank)."""
    headers = list(chart.headers)
    if headers and not headers[0]:
        headers[0] = category
    return {"chart": chart, "headers": headers}


@register.filter
def css_string(value: object) -> SafeString:
    """`value` as the inside of a double-quoted CSS string in the <style> element (the running
    headers' `content`): CSS escapes for a backslash, a quote, a line end and "<" (no "</style>"
    can close the element). HTML escapes would print as they are there, and JavaScript's
    (escapejs) print as letters: "Auditor\\u0027s" reads "Auditoru0027s"."""
    text = str(value)
    for char, escaped in (("\\", "\\5c "), ('"', "\\22 "), ("<", "\\3c "), ("\n", "\\a "), ("\r", "")):
        text = text.replace(char, escaped)
    return mark_safe(text)  # noqa: S308 - escaped for CSS above


@register.filter
def hours(value: float | None) -> str:
    """A duration in hours, as a reader wants it: minutes, hours or days."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 60:.0f} min"
    if value < 48:
        return f"{value:.1f} h"
    return f"{value / 24:.1f} days ({value:.0f} h)"


INDENT = " " * 14
# A line of an event holds at most LINE characters: A4 less the margins and the cell's padding is
# 499 pt, a DejaVu Sans Mono character at 6.2 pt is 3.73 pt wide, so 133 fit; 130 leave a margin.
LINE = 130
WIDTH = LINE - len(INDENT)  # characters of a wrapped field after the indent


def _fitted(line: str) -> list[str]:
    """A line longer than LINE cut into LINE-wide pieces, the rest indented (nothing dropped)."""
    if len(line) <= LINE:
        return [line]
    pieces = [line[:LINE]]
    rest = line[LINE:]
    while rest:
        pieces.append(INDENT + rest[:WIDTH])
        rest = rest[WIDTH:]
    return pieces


def _wrapped(label: str, text: str) -> list[str]:
    """`text` in lines of at most WIDTH characters (nothing dropped), the first led by `label`;
    a line ends after a space when one falls in its second half, else mid-word."""
    rest = f"{label} {text}"
    lines = []
    while len(rest) > WIDTH:
        cut = rest.rfind(" ", WIDTH // 2, WIDTH) + 1 or WIDTH
        lines.append(INDENT + rest[:cut])
        rest = rest[cut:]
    return [*lines, INDENT + rest]


EVENT_HEADER = (
    f"{'event id':>9} {'ver':<4}{'occurred (UTC)':<21}{'purpose':<20}{'previous → status':<22}"
    f"{'freq.':<8}{'source':<17}policy"
)


@register.simple_tag
def event_header() -> str:
    return EVENT_HEADER


@register.filter
def event_lines(evidence: Any) -> str:
    """One event of an evidence pack as fixed-width lines: what it decided, who and where from,
    its evidence and reason, its hash and whether the hash was recomputed and chained."""
    event = evidence.event
    transition = f"{event.previous_status or '—':>9} → {event.status:<10}"
    lines = [
        f"{event.id:>9} v{event.version:<3}{event.occurred_at:%Y-%m-%d %H:%M:%S}  {event.purpose.code:<20}"
        f"{transition:<22}{event.frequency or '—':<8}{event.source:<17}"
        f"{event.policy_version.label if event.policy_version else '—'}",
    ]
    who = (
        f"{INDENT}recorded {event.recorded_at.isoformat(sep=' ', timespec='microseconds')}  "
        f"by {event.actor}  IP {event.shown_ip_address or '—'}"
    )
    agent = f"  user agent {event.shown_user_agent or '—'}"
    if len(who) + len(agent) <= LINE:
        lines.append(who + agent)  # most events: one line for who, from where and with what
    else:
        lines.append(who)
        lines += _wrapped("user agent", event.shown_user_agent or "—")
    if event.shown_evidence:
        lines += _wrapped("evidence", evidence.evidence_json)
    if event.reason:
        lines += _wrapped("reason", event.reason)
    if evidence.hash_matches and evidence.chained:
        check = "recomputed: matches, chained"
    else:
        problems = []
        if not evidence.hash_matches:
            problems.append(f"RECOMPUTED {evidence.hash_recomputed}: DOES NOT MATCH")
        if not evidence.chained:
            problems.append("NOT CHAINED to the previous version")
        check = "; ".join(problems)
    lines.append(f"{INDENT}hash {event.hash}  {check}")
    return "\n".join(piece for line in lines for piece in _fitted(line))
