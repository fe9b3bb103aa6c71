"""`ZohoClient`: one object holding `.crm` and `.campaigns`, built from settings."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import httpx
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.utils.module_loading import import_string

from sync.zoho.auth import TokenManager
from sync.zoho.calllog import CallLog, DatabaseCallLog
from sync.zoho.campaigns import CampaignsClient
from sync.zoho.campaigns_limits import CampaignsLimits
from sync.zoho.config import ZohoConfig
from sync.zoho.crm import CrmClient
from sync.zoho.locks import SharedSemaphore
from sync.zoho.transport import CallGate, ZohoTransport, make_http_client


class ZohoClient:
    """The Zoho API client.

    ``http``: an `httpx.Client` to use (tests may pass one with a mock
    transport); the client closes only the one it made itself. ``cache``: where
    the shared access token and the API user's id live (the default cache).
    ``call_log``: where calls are recorded (`ZohoCall` rows by default).
    ``gate``: asked before and told after each CRM call (the quota); None: no gate.
    """

    def __init__(
        self,
        config: ZohoConfig,
        *,
        http: httpx.Client | None = None,
        cache: BaseCache | None = None,
        call_log: CallLog | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self.config = config
        self._owns_http = http is None
        self.http = http if http is not None else make_http_client(config)
        shared = cache if cache is not None else caches["default"]
        # The org's complex-call slots, shared by every worker through the cache (Redis, or
        # file locks in the file cache's directory for the embedded demo).
        slots = SharedSemaphore(
            shared,
            f"{config.cache_prefix}:complex-calls",
            limit=config.complex_limit,
            expire_s=config.timeout_s * 2 + 5,
        )
        limits = CampaignsLimits(
            shared,
            config.cache_prefix,
            share=config.campaigns_limit_share,
            cooldown_s=config.campaigns_cooldown_s,
            lock_s=config.campaigns_lock_s,
        )
        self.transport = ZohoTransport(
            config,
            self.http,
            call_log or DatabaseCallLog(),
            gate=gate,
            complex_slots=slots,
            campaigns_limits=limits,
        )
        self.tokens = TokenManager(config, self.transport.mint_token, cache=shared)
        self.transport.tokens = self.tokens
        self.crm = CrmClient(self.transport, shared)
        self.campaigns = CampaignsClient(self.transport)

    @classmethod
    def from_settings(cls, **kwargs: Any) -> ZohoClient:
        """The client the ZOHO_* settings describe, with the gate ``ZOHO_QUOTA_GATE`` names
        (a dotted path to a callable taking the cache prefix: the engine's quota, which
        this package does not import) unless ``gate`` is given."""
        config = ZohoConfig.from_settings()
        if "gate" not in kwargs and settings.ZOHO_QUOTA_GATE:
            factory: Callable[[str], CallGate] = import_string(settings.ZOHO_QUOTA_GATE)
            kwargs["gate"] = factory(config.cache_prefix)
        return cls(config, **kwargs)

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
