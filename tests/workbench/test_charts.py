"""The time-axis charts compliance/charts.py draws for the pages (and can draw for the PDFs)."""

from __future__ import annotations

import re

from compliance.charts import line_chart, stacked_column_chart


def test_stacked_columns_stack_each_series_and_table_the_totals():
    chart = stacked_column_chart(
        title="Changes <per week>",
        description="A & B",
        categories=["2026-11-23", "2026-11-30"],
        series=[("opted_in", "In", [2, 0]), ("opted_out", "Out", [2, 1])],
    )

    assert chart.headers == ("", "In", "Out", "Total")
    assert chart.rows == (("2026-11-23", 2, 2, 4), ("2026-11-30", 0, 1, 1))
    assert "<title" in chart.svg and "Changes &lt;per week&gt;" in chart.svg and "A &amp; B" in chart.svg
    heights = [
        float(h)
        for h in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="([\d.]+)"', chart.svg)
    ]
    heights = heights[2:]  # the legend's two swatches first
    # Three segments (the zero is not drawn); the first column's two halves are equal.
    assert len(heights) == 3 and heights[0] == heights[1] and heights[2] < heights[0]


def test_a_line_breaks_where_a_value_is_missing_and_the_table_shows_a_dash():
    chart = line_chart(
        title="Error rate",
        description="Per day",
        categories=["d1", "d2", "d3", "d4", "d5"],
        series=[("crm.get", "crm.get", [10.0, 20.0, None, 5.0, None])],
    )

    assert chart.svg.count("<polyline") == 1  # d1 to d2; d4 stands alone
    assert chart.svg.count("<circle") == 1
    assert '<td class="num">—</td>' in chart.table_rows_html
    assert '<th scope="row">d3</th>' in chart.table_rows_html


def test_the_same_data_draws_the_same_svg():
    args = {"title": "t", "description": "d", "categories": ["a", "b"], "series": [("x", "x", [1.0, 2.0])]}

    assert line_chart(**args).svg == line_chart(**args).svg


def test_an_empty_chart_says_so():
    chart = stacked_column_chart(title="t", description="d", categories=["a"], series=[("x", "x", [0])])

    assert "Nothing to show in this scope." in chart.svg
