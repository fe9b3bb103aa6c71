"""`ZohoConfig`: everything the client needs, read from the ZOHO_* settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from sync.zoho.datacenters import data_centre


def _strip(url: str) -> str:
    return url.strip().rstrip("/")


@dataclass(frozen=True)
class ZohoConfig:
    """Connection settings for one Zoho org.

    ``api_domain`` is the override (ZOHO_API_DOMAIN); when it is empty the CRM
    host comes from the ``api_domain`` of the token response. Secrets are kept
    out of ``repr()`` so that a logged config never leaks them.
    """

    client_id: str
    client_secret: str = field(repr=False)
    refresh_token: str = field(repr=False)
    dc: str = "us"
    accounts_url: str = ""
    api_domain: str = ""
    campaigns_url: str = ""
    crm_api_version: str = "v8"
    timeout_s: float = 30.0
    campaigns_list_keys: tuple[str, ...] = ()
    # Refresh the shared access token this long before it expires.
    refresh_margin_s: float = 300.0
    # How long one process may hold the refresh lock (and others wait for it).
    refresh_lock_timeout_s: float = 30.0
    # Prefix of the shared-cache keys (the token and its lock).
    cache_prefix: str = "zoho"
    # Our API user's CRM id (ZOHO_API_USER_ID); empty: ask Zoho (`CrmClient.api_user_id`).
    api_user_id: str = ""
    # "Complex" calls (COQL, updates of more than 10 records, sorted or filtered reads) in
    # flight at once across every worker: Zoho's sub-concurrency limit is 10 per org.
    complex_limit: int = 10
    # How long a worker waits for a complex-call slot before the call counts as rate limited.
    complex_wait_s: float = 30.0
    # Campaigns' per-method limits (sync/zoho/campaigns_limits.py): the share of each that we
    # fill, and how long a method Zoho refused is paused (doubling up to its 30-minute lock).
    campaigns_limit_share: float = 0.9
    campaigns_cooldown_s: float = 15.0
    campaigns_lock_s: float = 1800.0

    def __post_init__(self) -> None:
        dc = data_centre(self.dc)  # ValueError on an unknown code
        object.__setattr__(self, "dc", dc.code)
        object.__setattr__(self, "accounts_url", _strip(self.accounts_url) or dc.accounts_url)
        object.__setattr__(self, "api_domain", _strip(self.api_domain))
        object.__setattr__(self, "campaigns_url", _strip(self.campaigns_url) or dc.campaigns_url)
        if self.timeout_s <= 0:
            raise ValueError("ZOHO_TIMEOUT_S must be positive")
        if not 0 < self.campaigns_limit_share <= 1:
            raise ValueError("ZOHO_CAMPAIGNS_LIMIT_SHARE must be above 0 and at most 1")
        if not 0 < self.campaigns_cooldown_s <= self.campaigns_lock_s:
            raise ValueError("ZOHO_CAMPAIGNS_COOLDOWN_S must be positive and at most ZOHO_CAMPAIGNS_LOCK_S")

    @classmethod
    def from_settings(cls, **overrides: Any) -> ZohoConfig:
        """Build the config from Django settings; keyword arguments win over settings."""
        values: dict[str, Any] = {
            "client_id": settings.ZOHO_CLIENT_ID,
            "client_secret": settings.ZOHO_CLIENT_SECRET,
            "refresh_token": settings.ZOHO_REFRESH_TOKEN,
            "dc": settings.ZOHO_DC or "us",
            "accounts_url": settings.ZOHO_ACCOUNTS_URL,
            "api_domain": settings.ZOHO_API_DOMAIN,
            "campaigns_url": settings.ZOHO_CAMPAIGNS_URL,
            "crm_api_version": settings.ZOHO_CRM_API_VERSION or "v8",
            "timeout_s": float(settings.ZOHO_TIMEOUT_S),
            "campaigns_list_keys": tuple(settings.ZOHO_CAMPAIGNS_LIST_KEYS),
            "api_user_id": settings.ZOHO_API_USER_ID,
            "campaigns_limit_share": float(settings.ZOHO_CAMPAIGNS_LIMIT_SHARE),
            "campaigns_cooldown_s": float(settings.ZOHO_CAMPAIGNS_COOLDOWN_S),
            "campaigns_lock_s": float(settings.ZOHO_CAMPAIGNS_LOCK_S),
        }
        values.update(overrides)
        try:
            return cls(**values)
        except ValueError as exc:
            raise ImproperlyConfigured(str(exc)) from exc

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values that must never reach a log line or a ZohoCall row."""
        return tuple(s for s in (self.client_secret, self.refresh_token) if s)
