"""Zoho Campaigns API v1.1: list subscribers, subscribe/unsubscribe, bounces, sent campaigns.

Campaigns answers HTTP 200 even on error; the transport reads ``code``/``Code``
and ``status`` from the body and raises (1007 refreshes the token once). A paged
read takes codes 2203 and 6302 ("no contacts") on a page as the end of its rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sync.zoho.transport import Request, ZohoResponse, ZohoTransport, campaigns_code

API = "/api/v1.1"
PAGE_SIZE = 100
# What Campaigns answers for a page with no row (zoho-api.md section 7's error codes): 2203 "no
# contacts / list deleted" and 6302 "no contacts". A paged read ends there, as on a short page: an
# empty list, a status nobody has, or the page after an exactly full one. A list key Zoho does not
# know is another code (2501, 2002, 2102) and stays an error.
EMPTY_PAGE_CODES = frozenset({"2203", "6302"})
ListStatus = Literal["active", "unsub", "bounce", "recent", "most recent"]
RecipientAction = Literal[
    "sentcontacts",
    "openedleads",
    "optoutleads",
    "spamleads",
    "unopenedleads",
    "clickedleads",
    "senthardbounce",
    "sentsoftbounce",
    "unsentleads",
]


@dataclass(frozen=True, slots=True)
class CampaignsResult:
    code: str
    message: str
    body: Mapping[str, Any]


def _rows(body: Any, *keys: str) -> list[dict[str, Any]]:
    """The row list of a Campaigns answer, under the first of ``keys`` present."""
    if not isinstance(body, dict):
        return []
    for key in keys:
        value = body.get(key)
        if isinstance(value, list):
            return [r for r in value if isinstance(r, dict)]
        if isinstance(value, dict):  # a single row is sometimes not wrapped in a list
            return [value]
    return []


class CampaignsClient:
    def __init__(self, transport: ZohoTransport) -> None:
        self.transport = transport

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        params: dict[str, Any],
        *,
        records: int = 0,
        form: bool = False,
        empty_codes: frozenset[str] = frozenset(),
    ) -> ZohoResponse:
        params = {"resfmt": "JSON", **params}
        return self.transport.call(
            Request(
                service="campaigns",
                operation=operation,
                method=method,
                host="campaigns",
                path=f"{API}/{path}",
                params=None if form else params,
                data=params if form else None,
                records=records,
                credits=0,
                empty_codes=empty_codes,
            )
        )

    def _page(
        self, operation: str, method: str, path: str, params: dict[str, Any], *keys: str, form: bool = False
    ) -> list[dict[str, Any]]:
        """One page of a paged read: its rows under the first of ``keys``; none on an empty-page
        code (which the transport answers, and the call log keeps, as an answer, not an error)."""
        response = self._call(operation, method, path, params, form=form, empty_codes=EMPTY_PAGE_CODES)
        if response.zoho_code in EMPTY_PAGE_CODES:
            return []
        return _rows(response.body, *keys)

    def _result(self, response: ZohoResponse) -> CampaignsResult:
        body = response.body if isinstance(response.body, dict) else {}
        message = str(body.get("message") or body.get("Message") or "")
        return CampaignsResult(campaigns_code(body), message, body)

    def list_subscribers(
        self, list_key: str, status: ListStatus = "active", *, page_size: int = PAGE_SIZE, start: int = 1
    ) -> Iterator[dict[str, Any]]:
        """Every contact of a list with this status (``unsub``, ``bounce``, ``active``), from the
        ``start``-th (1 is the first), paging with ``fromindex``/``range``. Rows carry no
        unsubscribe time."""
        params = {"listkey": list_key, "status": status, "sort": "asc"}
        return self._rows_from(
            "campaigns.list_subscribers", "GET", "getlistsubscribers", params, start, page_size, form=False
        )

    def unsubscribe(self, list_key: str, email: str) -> CampaignsResult:
        """Move ``email`` to the list's unsubscribed contacts (``json/listunsubscribe``)."""
        response = self._call(
            "campaigns.unsubscribe",
            "POST",
            "json/listunsubscribe",
            {"listkey": list_key, "contactinfo": json.dumps({"Contact Email": email})},
            records=1,
            form=True,
        )
        return self._result(response)

    def subscribe(
        self,
        list_key: str,
        email: str,
        *,
        fields: Mapping[str, str] | None = None,
        source: str | None = None,
    ) -> CampaignsResult:
        """Add or update ``email`` in the list (``json/listsubscribe``). On a double
        opt-in list Zoho sends a confirmation mail first (see the result message)."""
        info = {"Contact Email": email, **(fields or {})}
        params: dict[str, Any] = {"listkey": list_key, "contactinfo": json.dumps(info)}
        if source:
            params["source"] = source
        response = self._call(
            "campaigns.subscribe", "POST", "json/listsubscribe", params, records=1, form=True
        )
        return self._result(response)

    def campaign_recipients(
        self, campaign_key: str, action: RecipientAction, *, page_size: int = PAGE_SIZE, start: int = 1
    ) -> Iterator[dict[str, Any]]:
        """Recipients of a sent campaign by outcome, e.g. ``senthardbounce``, ``sentsoftbounce``,
        from the ``start``-th (1 is the first)."""
        params = {"campaignkey": campaign_key, "action": action}
        return self._rows_from(
            "campaigns.recipients", "POST", "getcampaignrecipientsdata", params, start, page_size, form=True
        )

    def _rows_from(
        self,
        operation: str,
        method: str,
        name: str,
        params: dict[str, Any],
        start: int,
        page_size: int,
        *,
        form: bool,
    ) -> Iterator[dict[str, Any]]:
        """The rows of a paged read (``list_of_details``), page by page with ``fromindex`` and
        ``range`` from row `start`, until a page comes back short."""
        if start < 1:
            raise ValueError("Campaigns counts rows from 1")
        from_index = start
        while True:
            rows = self._page(
                operation,
                method,
                name,
                {**params, "fromindex": from_index, "range": page_size},
                "list_of_details",
                form=form,
            )
            yield from rows
            if len(rows) < page_size:
                return
            from_index += len(rows)

    def recent_campaigns(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """Recently sent campaigns (``recentsentcampaigns``), newest first; none on an empty-page
        code. One page: at most `PAGE_SIZE` (100), the largest ``range`` known to be taken."""
        limit = max(1, min(limit, PAGE_SIZE))
        return self._page(
            "campaigns.recent_campaigns",
            "GET",
            "recentsentcampaigns",
            {"fromindex": 1, "range": limit},
            "recent_sent_campaigns",
            "recent_campaigns",
            "list_of_details",
        )
