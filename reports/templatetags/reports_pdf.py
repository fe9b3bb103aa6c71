"""Template helpers of the report layouts: a chart with its table, durations in words."""

from __future__ import annotations

from typing import Any

from django import template

from compliance.charts import Chart

register = template.Library()


@register.inclusion_tag("reports/pdf_chart.html")
def chart_block(chart: Chart) -> dict[str, Any]:
    return {"chart": chart}


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
WIDTH = 120  # characters after the indent: A4 at 6.2 pt DejaVu Sans Mono holds about 135


def _wrapped(label: str, text: str) -> list[str]:
    """`text` cut into lines of WIDTH characters (nothing dropped), the first led by `label`."""
    body = f"{label} {text}"
    return [INDENT + body[i : i + WIDTH] for i in range(0, len(body), WIDTH)] or [INDENT + label]


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
        f"by {event.actor}  IP {event.ip_address or '—'}"
    )
    agent = f"  user agent {event.user_agent or '—'}"
    if len(who) + len(agent) <= len(INDENT) + WIDTH:
        lines.append(who + agent)  # most events: one line for who, from where and with what
    else:
        lines.append(who)
        lines += _wrapped("user agent", event.user_agent or "—")
    if event.evidence:
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
    return "\n".join(lines)
