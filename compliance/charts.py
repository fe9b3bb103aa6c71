"""Server-rendered SVG charts: the one chart code that the pages and the PDF reports both use.

Plain SVG, written here (no JavaScript, no CDN, nothing a PDF renderer cannot draw): WeasyPrint
draws it in the reports, a browser on the pages. Every chart carries a title and a description
(`<title>`, `<desc>`, for screen readers and for the PDF's text), and the rows it was drawn from,
which the template shows as a table beside it. The same input always gives the same SVG, so a
report made twice from the same data is drawn the same.

Nothing here reads the database: callers aggregate (in SQL) and pass the numbers.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

FONT = "DejaVu Sans, Verdana, sans-serif"
INK = "#1d2733"
MUTED = "#5c6b7a"
GRID = "#d9e0e7"
ACCENT = "#1f5f99"
# One colour per consent status wherever a chart splits by status (the pages' badge colours).
STATUS_COLOURS = {
    "opted_in": "#1d7a46",
    "opted_out": "#a33a2b",
    "pending": "#c08a00",
    "expired": "#7d8791",
}
# Calls that succeeded and failed (the sync health chart).
OUTCOME_COLOURS = {"ok": ACCENT, "errors": "#a33a2b"}
SERIES_COLOURS = ("#1f5f99", "#1d7a46", "#a33a2b", "#c08a00", "#7d8791", "#6b4fa0", "#2a8c8c")


@dataclass(frozen=True)
class Chart:
    """An SVG chart with the table it was drawn from."""

    title: str
    description: str
    svg: SafeString
    headers: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    @property
    def table_rows_html(self) -> SafeString:
        """The table's header row and body rows as HTML (`<thead>` and `<tbody>`), built here rather
        than by a template loop: a year of days is thousands of cells, which Django's template
        engine takes tens of milliseconds to write. A missing value (None) shows as a dash."""
        number = ' class="num"'
        head = "".join(
            f'<th scope="col"{number if i else ""}>{escape(h)}</th>' for i, h in enumerate(self.headers)
        )
        rows = []
        for row in self.rows:
            cells = [f'<th scope="row">{escape(row[0])}</th>'] + [
                f"<td{number}>{_cell(cell)}</td>" for cell in row[1:]
            ]
            rows.append(f"<tr>{''.join(cells)}</tr>")
        html = f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        return mark_safe(html)  # noqa: S308 - every text in it is escaped


def _cell(value: object) -> str:
    """A table cell's text: a dash for None; a number as it is (nothing in it to escape, and
    Django's escape, lazy-aware, costs a call chain per cell); anything else escaped."""
    if value is None:
        return "—"
    if type(value) in (int, float):
        return str(value)
    return str(escape(value))


def _id(kind: str, title: str) -> str:
    # Stable across runs (reproducible reports) and distinct per chart on one page.
    return f"{kind}-{hashlib.sha256(title.encode()).hexdigest()[:10]}"


def _svg(chart_id: str, width: int, height: int, title: str, description: str, body: list[str]) -> SafeString:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="{chart_id}-t {chart_id}-d" '
        f'font-family="{FONT}" font-size="10" fill="{INK}">'
        f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(description)}</desc>'
    )
    return mark_safe(head + "".join(body) + "</svg>")  # noqa: S308 - every text above is escaped


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _axis(value: float, ticks: int = 4) -> tuple[float, float]:
    """A round step (1, 2 or 5 times a power of ten) and the axis maximum, `ticks` steps or fewer."""
    if value <= 0:
        return 1.0, float(ticks)
    rough = value / ticks
    power = 1.0
    while power * 10 <= rough:
        power *= 10
    while power > rough:
        power /= 10
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= rough)
    return step, step * math.ceil(value / step)


def bar_chart(
    *,
    title: str,
    description: str,
    rows: Sequence[tuple[str, float]],
    value_label: str = "Events",
    width: int = 460,
    colour: str = ACCENT,
) -> Chart:
    """Horizontal bars, one per row, labelled with the row's name and value."""
    label_width = min(200, max([len(label) for label, _ in rows] + [4]) * 6 + 12)
    bar_height, gap, top = 14, 6, 6
    height = top + len(rows) * (bar_height + gap) + 4 if rows else 30
    highest = max([value for _, value in rows] + [0])
    scale = (width - label_width - 70) / (highest or 1)
    body: list[str] = []
    if not rows:
        body.append(f'<text x="4" y="18" fill="{MUTED}">Nothing to show in this scope.</text>')
    for index, (label, value) in enumerate(rows):
        y = top + index * (bar_height + gap)
        length = max(value * scale, 1 if value else 0)
        body.append(
            f'<text x="{label_width - 6}" y="{y + 11}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{colour}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + 11}">{_number(value)}</text>'
        )
    svg = _svg(_id("bar", title), width, height, title, description, body)
    return Chart(title, description, svg, ("", value_label), tuple((label, value) for label, value in rows))


def stacked_bar_chart(
    *,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    width: int = 460,
) -> Chart:
    """Horizontal bars per category, split by series; `series` is (key, label, values), the key
    choosing the colour when it is a consent status."""
    label_width = min(200, max([len(c) for c in categories] + [4]) * 6 + 12)
    bar_height, gap, top = 14, 6, 24
    height = top + len(categories) * (bar_height + gap) + 4
    totals = [sum(values[i] for _, _, values in series) for i in range(len(categories))]
    scale = (width - label_width - 70) / (max([*totals, 0]) or 1)
    body: list[str] = []
    x = 0
    for index, (key, label, _values) in enumerate(series):
        colour = STATUS_COLOURS.get(key, SERIES_COLOURS[index % len(SERIES_COLOURS)])
        body.append(
            f'<rect x="{x}" y="4" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="13">{escape(label)}</text>'
        )
        x += 24 + len(label) * 6
    for row, category in enumerate(categories):
        y = top + row * (bar_height + gap)
        body.append(f'<text x="{label_width - 6}" y="{y + 11}" text-anchor="end">{escape(category)}</text>')
        offset = float(label_width)
        for index, (key, _label, values) in enumerate(series):
            if not values[row]:
                continue
            colour = STATUS_COLOURS.get(key, SERIES_COLOURS[index % len(SERIES_COLOURS)])
            length = max(values[row] * scale, 1)
            body.append(
                f'<rect x="{offset:.1f}" y="{y}" width="{length:.1f}" height="{bar_height}" fill="{colour}"/>'
            )
            offset += length
        body.append(f'<text x="{offset + 4:.1f}" y="{y + 11}">{_number(totals[row])}</text>')
    svg = _svg(_id("stacked", title), width, height, title, description, body)
    headers = ("", *(label for _, label, _ in series), "Total")
    rows = tuple(
        (category, *(values[i] for _, _, values in series), totals[i])
        for i, category in enumerate(categories)
    )
    return Chart(title, description, svg, headers, rows)


def column_chart(
    *,
    title: str,
    description: str,
    points: Sequence[tuple[str, float]],
    value_label: str = "Events",
    width: int = 640,
    height: int = 170,
    colour: str = ACCENT,
) -> Chart:
    """Vertical columns along a time axis (e.g. one per week), with a labelled value axis."""
    left, right, top, bottom = 48, 8, 8, 30
    plot_width, plot_height = width - left - right, height - top - bottom
    step_value, highest = _axis(max([value for _, value in points] + [0]))
    body: list[str] = []
    for step in range(round(highest / step_value) + 1):
        value = step_value * step
        y = top + plot_height - plot_height * value / highest
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}" stroke-width="0.5"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end" fill="{MUTED}">{_number(value)}</text>'
        )
    if points:
        slot = plot_width / len(points)
        column = max(slot * 0.8, 0.5)
        # At most about 12 axis labels, whatever the number of columns.
        every = max(1, -(-len(points) // 12))
        for index, (label, value) in enumerate(points):
            x = left + index * slot + (slot - column) / 2
            length = plot_height * value / highest
            if value:
                body.append(
                    f'<rect x="{x:.2f}" y="{top + plot_height - length:.2f}" width="{column:.2f}" '
                    f'height="{length:.2f}" fill="{colour}"/>'
                )
            if index % every == 0 and x < width - right - 40:
                body.append(
                    f'<text x="{x:.1f}" y="{height - bottom + 14}" fill="{MUTED}" font-size="8">{escape(label)}</text>'
                )
    else:
        body.append(
            f'<text x="{left + 4}" y="{top + 20}" fill="{MUTED}">Nothing to show in this scope.</text>'
        )
    body.append(
        f'<line x1="{left}" y1="{top + plot_height}" x2="{width - right}" y2="{top + plot_height}" stroke="{MUTED}"/>'
    )
    svg = _svg(_id("columns", title), width, height, title, description, body)
    return Chart(title, description, svg, ("", value_label), tuple((label, value) for label, value in points))


def _colour(key: str, index: int) -> str:
    return STATUS_COLOURS.get(key) or OUTCOME_COLOURS.get(key) or SERIES_COLOURS[index % len(SERIES_COLOURS)]


def _legend(series: Sequence[tuple[str, str, Sequence[float | None]]], left: int) -> list[str]:
    body: list[str] = []
    x = float(left)
    for index, (key, label, _values) in enumerate(series):
        body.append(
            f'<rect x="{x:.0f}" y="4" width="10" height="10" fill="{_colour(key, index)}"/>'
            f'<text x="{x + 14:.0f}" y="13">{escape(label)}</text>'
        )
        x += 24 + len(label) * 6
    return body


def _time_axes(
    *,
    categories: Sequence[str],
    highest: float,
    left: int,
    top: int,
    width: int,
    height: int,
    right: int,
    bottom: int,
    unit: str,
) -> tuple[list[str], float]:
    """The value axis's grid lines and labels and the categories' labels (about 12 at most);
    and the axis maximum."""
    plot_width, plot_height = width - left - right, height - top - bottom
    step_value, axis_max = _axis(highest)
    body: list[str] = []
    for step in range(round(axis_max / step_value) + 1):
        value = step_value * step
        y = top + plot_height - plot_height * value / axis_max
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="{GRID}" stroke-width="0.5"/>'
            f'<text x="{left - 4}" y="{y + 3:.1f}" text-anchor="end" fill="{MUTED}">{_number(value)}{unit}</text>'
        )
    if categories:
        slot = plot_width / len(categories)
        every = max(1, -(-len(categories) // 12))
        for index, label in enumerate(categories):
            x = left + index * slot
            if index % every == 0 and x < width - right - 40:
                body.append(
                    f'<text x="{x + 1:.1f}" y="{height - bottom + 14}" fill="{MUTED}" font-size="8">'
                    f"{escape(label)}</text>"
                )
    body.append(
        f'<line x1="{left}" y1="{top + plot_height}" x2="{width - right}" y2="{top + plot_height}" stroke="{MUTED}"/>'
    )
    return body, axis_max


def stacked_column_chart(
    *,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float]]],
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Vertical columns along a time axis (one per week, day …), each split by series;
    `series` is (key, label, values), the key choosing the colour when it is a consent status.
    The table has a row per category: each series' value and the total."""
    left, right, top, bottom = 48, 8, 24, 30
    plot_width, plot_height = width - left - right, height - top - bottom
    totals = [sum(values[i] for _, _, values in series) for i in range(len(categories))]
    body, axis_max = _time_axes(
        categories=categories, highest=max([*totals, 0]), left=left, top=top, width=width,
        height=height, right=right, bottom=bottom, unit="",
    )  # fmt: skip
    body = _legend(series, left) + body
    if categories and any(totals):
        slot = plot_width / len(categories)
        column = max(slot * 0.8, 0.5)
        for row in range(len(categories)):
            x = left + row * slot + (slot - column) / 2
            base = float(top + plot_height)
            for index, (key, _label, values) in enumerate(series):
                if not values[row]:
                    continue
                length = plot_height * values[row] / axis_max
                base -= length
                body.append(
                    f'<rect x="{x:.2f}" y="{base:.2f}" width="{column:.2f}" height="{length:.2f}" '
                    f'fill="{_colour(key, index)}"/>'
                )
    else:
        body.append(
            f'<text x="{left + 4}" y="{top + 20}" fill="{MUTED}">Nothing to show in this scope.</text>'
        )
    svg = _svg(_id("stackedcolumns", title), width, height, title, description, body)
    headers = ("", *(label for _, label, _ in series), "Total")
    rows = tuple(
        (category, *(values[i] for _, _, values in series), totals[i])
        for i, category in enumerate(categories)
    )
    return Chart(title, description, svg, headers, rows)


def line_chart(
    *,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    unit: str = " %",
    maximum: float | None = None,
    width: int = 720,
    height: int = 220,
) -> Chart:
    """Lines along a time axis, one per series (a rate per purpose, per endpoint …); a value of
    None is a gap (nothing to measure that day). `maximum` fixes the value axis (100 for a
    percentage of people); otherwise it fits the highest value. The table has a row per category."""
    left, right, top, bottom = 48, 8, 24, 30
    plot_width, plot_height = width - left - right, height - top - bottom
    values_seen = [v for _, _, values in series for v in values if v is not None]
    body, axis_max = _time_axes(
        categories=categories, highest=maximum or max([*values_seen, 0]), left=left, top=top,
        width=width, height=height, right=right, bottom=bottom, unit=unit.strip(),
    )  # fmt: skip
    body = _legend(series, left) + body
    if categories and values_seen:
        slot = plot_width / len(categories)
        for index, (key, _label, values) in enumerate(series):
            colour = _colour(key, index)
            runs: list[list[str]] = [[]]
            for i, value in enumerate(values):
                if value is None:
                    runs.append([])
                    continue
                x = left + i * slot + slot / 2
                y = top + plot_height - plot_height * min(value, axis_max) / axis_max
                runs[-1].append(f"{x:.1f},{y:.1f}")
            for run in runs:
                if len(run) > 1:
                    body.append(
                        f'<polyline points="{" ".join(run)}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
                    )
                elif run:
                    cx, cy = run[0].split(",")
                    body.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{colour}"/>')
    else:
        body.append(
            f'<text x="{left + 4}" y="{top + 20}" fill="{MUTED}">Nothing to show in this scope.</text>'
        )
    svg = _svg(_id("lines", title), width, height, title, description, body)
    headers = ("", *(label for _, label, _ in series))
    rows = tuple((category, *(values[i] for _, _, values in series)) for i, category in enumerate(categories))
    return Chart(title, description, svg, headers, rows)


__all__ = [
    "STATUS_COLOURS",
    "Chart",
    "bar_chart",
    "column_chart",
    "line_chart",
    "stacked_bar_chart",
    "stacked_column_chart",
]
