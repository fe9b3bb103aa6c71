"""Zoho Campaigns API v1.1: list subscribers, subscribe/unsubscribe, bounces, sent campaigns.

Campaigns answers HTTP 200 even on error; the transport reads ``code``/``Code``
and ``status`` from the body and raises (1007 refreshes the token once).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sync.zoho.transport import Request, ZohoResponse, ZohoTransport, campaigns_code

API = "/api/v1.1"
PAGE_SIZE = 100
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
            )
        )

    def _result(self, response: ZohoResponse) -> CampaignsResult:
        body = response.body if isinstance(response.body, dict) else {}
        message = str(body.get("message") or body.get("Message") or "")
        return CampaignsResult(campaigns_code(body), message, body)

    def list_subscribers(
        self, list_key: str, status: ListStatus = "active", *, page_size: int = PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Every contact of a list with this status (``unsub``, ``bounce``, ``active``),
        paging with ``fromindex``/``range``. Rows carry no unsubscribe time."""
        from_index = 1
        while True:
            response = self._call(
                "campaigns.list_subscribers",
                "GET",
                "getlistsubscribers",
                {
                    "listkey": list_key,
                    "status": status,
                    "sort": "asc",
                    "fromindex": from_index,
                    "range": page_size,
                },
            )
            rows = _rows(response.body, "list_of_details")
            yield from rows
            if len(rows) < page_size:
                return
            from_index += len(rows)

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
        self, campaign_key: str, action: RecipientAction, *, page_size: int = PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Recipients of a sent campaign by outcome, e.g. ``senthardbounce``, ``sentsoftbounce``."""
        from_index = 1
        while True:
            response = self._call(
                "campaigns.recipients",
                "POST",
                "getcampaignrecipientsdata",
                {"campaignkey": campaign_key, "action": action, "fromindex": from_index, "range": page_size},
                form=True,
            )
            rows = _rows(response.body, "list_of_details")
            yield from rows
            if len(rows) < page_size:
                return
            from_index += len(rows)

    def recent_campaigns(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """Recently sent campaigns (``recentsentcampaigns``), newest first."""
        response = self._call(
            "campaigns.recent_campaigns",
            "GET",
            "recentsentcampaigns",
            {"fromindex": 1, "range": limit},
        )
        return _rows(response.body, "recent_sent_campaigns", "recent_campaigns", "list_of_details")
