"""`{% table_rows table %}`: the body rows of a django-tables2 table, written as the library's own
template writes them (`django_tables2/table.html`, block `table.tbody`), but in one Python loop.

The library's template computes each cell's `<td>` attributes anew (a dict merged, copied and
wrapped for every cell) and resolves a dozen template variables per cell: about half of a table's
rendering time (a 50-row page of the opt-out clock: 20 of its 50 ms, measured in-process). Here a
column's attributes are computed once per table when nothing in them is callable (per cell
otherwise, as the library does), and each cell's content is still the library's: `BoundRow.get_cell`
(accessors, `render_*` methods, links, defaults), shown as `{{ cell }}` shows it
(`render_value_in_context`: localized, escaped). tests/compliance/test_table_rows.py compares the
two renderings of every table of the desk.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.base import render_value_in_context
from django.utils.formats import localize
from django.utils.html import conditional_escape, format_html
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


def _td_attrs_vary(table: Any, bound_column: Any) -> bool:
    """Whether the column's `<td>` attributes hold a callable (computed from each row's record)."""
    attrs = {**dict(table.attrs), **dict(bound_column.column.attrs)}
    cell = attrs.get("td", attrs.get("cell", {}))
    return any(callable(value) for value in cell.values())


def _cell_html(bound_column: Any, cell: Any, context: template.Context) -> str:
    if bound_column.localize is None:
        return render_value_in_context(cell, context)
    # `{{ cell|localize }}` and `{{ cell|unlocalize }}`: the filters' output, escaped.
    return conditional_escape(str(localize(cell, use_l10n=bool(bound_column.localize))))


@register.simple_tag(takes_context=True)
def table_rows(context: template.Context, table: Any) -> SafeString:
    columns = list(table.columns)
    fixed = {
        column.name: column.attrs["td"].as_html() for column in columns if not _td_attrs_vary(table, column)
    }
    html: list[str] = []
    for row in table.paginated_rows:
        html.append(format_html("<tr {}>", row.attrs.as_html()))
        for column in columns:
            cell = row.get_cell(column.name)
            td = fixed.get(column.name)
            if td is None:
                # As BoundRow.items(): the callable attributes see the row's record and value.
                column.current_value = cell
                column.current_record = row.record
                td = column.attrs["td"].as_html()
            html.append(f"<td {td}>{_cell_html(column, cell, context)}</td>")
        html.append("</tr>")
    if not html and table.empty_text:
        html.append(format_html('<tr><td colspan="{}">{}</td></tr>', len(columns), table.empty_text))
    return mark_safe("".join(html))  # noqa: S308 - every piece above is escaped or built by format_html
