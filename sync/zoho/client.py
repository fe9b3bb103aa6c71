"""`ZohoClient`: one object holding `.crm` and `.campaigns`, built from settings."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
from django.core.cache import BaseCache

from sync.zoho.auth import TokenManager
from sync.zoho.calllog import CallLog, DatabaseCallLog
from sync.zoho.campaigns import CampaignsClient
from sync.zoho.config import ZohoConfig
from sync.zoho.crm import CrmClient
from sync.zoho.transport import ZohoTransport, make_http_client


class ZohoClient:
    """The Zoho API client.

    ``http``: an `httpx.Client` to use (tests may pass one with a mock
    transport); the client closes only the one it made itself. ``cache``: where
    the shared access token lives (the default cache). ``call_log``: where calls
    are recorded (`ZohoCall` rows by default).
    """

    def __init__(
        self,
        config: ZohoConfig,
        *,
        http: httpx.Client | None = None,
        cache: BaseCache | None = None,
        call_log: CallLog | None = None,
    ) -> None:
        self.config = config
        self._owns_http = http is None
        self.http = http if http is not None else make_http_client(config)
        self.transport = ZohoTransport(config, self.http, call_log or DatabaseCallLog())
        self.tokens = TokenManager(config, self.transport.mint_token, cache=cache)
        self.transport.tokens = self.tokens
        self.crm = CrmClient(self.transport)
        self.campaigns = CampaignsClient(self.transport)

    @classmethod
    def from_settings(cls, **kwargs: Any) -> ZohoClient:
        return cls(ZohoConfig.from_settings(), **kwargs)

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> ZohoClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
