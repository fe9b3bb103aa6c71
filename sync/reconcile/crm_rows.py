"""Reading every CRM contact as a tuple: COQL keyset pages, or Bulk Read files for a large CRM."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from django.conf import settings

from sync.crm_changes import crm_user_names
from sync.models import FieldMapping
from sync.projection import bounce_field
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoTransientError

COQL = "coql"
BULK = "bulk"
SYSTEM_FIELDS = ("Email", "Modified_By", "Modified_Time")
# A row is a tuple: the CRM id, the system fields, then the compared fields (`compared_fields`).
HEAD = ("id", *SYSTEM_FIELDS)

Row = tuple[Any, ...]


def compared_fields(mappings: list[FieldMapping]) -> list[str]:
    """The flat field names reconciliation compares: every pushed mapping, and the bounce field."""
    names = {m.crm_field for m in mappings if m.pushes}
    bounce = bounce_field()
    if bounce:
        names.add(bounce)
    return sorted(names)


def coql_getter(name: str) -> Callable[[Mapping[str, Any]], Any]:
    """A column of a COQL record: dotted keys as Zoho returns them, else inside the nested object."""
    top, _, key = name.partition(".")

    def get(record: Mapping[str, Any]) -> Any:
        if name in record:
            return record[name]
        value = record.get(top)
        if key:
            return value.get(key) if isinstance(value, Mapping) else None
        return value

    return get


def _user_getter(names: Mapping[str, str]) -> Callable[[Mapping[str, Any]], Any]:
    def get(record: Mapping[str, Any]) -> Any:
        user = record.get("Modified_By")
        if not isinstance(user, Mapping) or not user.get("id"):
            return user
        return {"id": str(user["id"]), "name": names.get(str(user["id"]), str(user.get("name") or ""))}

    return get


def _csv_picker(header: list[str], columns: tuple[str, ...]) -> Callable[[list[str]], Row]:
    """Cells of a Bulk Read CSV row in `columns` order (None for a column the file lacks)."""
    positions = [header.index(name) if name in header else -1 for name in columns]
    if -1 not in positions:
        return operator.itemgetter(*positions)  # a row shorter than the header raises IndexError
    return lambda cells: tuple(cells[i] if 0 <= i < len(cells) else None for i in positions)


def crm_rows(zoho: ZohoClient, method: str, fields: list[str], *, module: str = "Contacts") -> Iterator[Row]:
    """Every record of the module (CRM contacts by default) as a tuple: `HEAD`, then `fields`."""
    columns = (*HEAD, *fields)
    if method == COQL:
        # COQL names a user by its last name only: name Modified_By by its id instead.
        names = crm_user_names(zoho)
        getters = [
            _user_getter(names) if name == "Modified_By" else coql_getter(name) for name in columns[1:]
        ]
        for record in zoho.crm.coql_iter([*fields, *SYSTEM_FIELDS], module=module):
            yield (str(record.get("id") or ""), *(get(record) for get in getters))
        return
    poll_s = float(settings.RECONCILE_BULK_POLL_S)
    select = [*fields, *SYSTEM_FIELDS]
    job = zoho.crm.bulk.wait(zoho.crm.bulk.create(select, module=module).id, poll_s=poll_s)
    while True:
        # Ask for the next page before reading this one: Zoho builds its file meanwhile. Pages
        # past the first 200,000 rows are asked by the token Zoho gave, never by number.
        token = job.next_page_token if job.more_records else None
        if job.more_records and token is None:
            raise ZohoTransientError(f"bulk read job {job.id} has more records but no next_page_token")
        following = zoho.crm.bulk.create(select, module=module, page_token=token) if token else None
        table = zoho.crm.bulk.table(job.id, retry_s=poll_s)
        header = next(table, None)
        if header is not None:
            try:
                yield from map(_csv_picker(header, columns), table)
            except IndexError as exc:
                raise ZohoTransientError(
                    f"bulk read job {job.id}: a CSV row is shorter than its header"
                ) from exc
        if following is None:
            return
        job = zoho.crm.bulk.wait(following.id, poll_s=poll_s)


def crm_chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    while chunk := list(itertools.islice(rows, size)):
        yield chunk
