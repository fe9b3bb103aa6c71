"""Zoho data centres: which hosts serve accounts, the CRM API and Campaigns.

Accounts and API hosts are the ones hard-coded in Zoho's CRM Python SDK 8
(see /work/shared/zoho-api.md §1). Campaigns hosts are from Zoho Campaigns'
data-centres page, except CA and SA, which no primary source confirms: we
chose ``campaigns.zohocloud.ca`` (CA follows the ``zohocloud.ca`` accounts
host) and ``campaigns.zoho.sa`` (SA follows ``accounts.zoho.sa``). Set
ZOHO_CAMPAIGNS_URL to override them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DataCentre:
    code: str
    accounts_url: str
    api_domain: str
    campaigns_url: str
    # True when the Campaigns host is our choice rather than a documented one.
    campaigns_unverified: bool = False


DATA_CENTRES: dict[str, DataCentre] = {
    dc.code: dc
    for dc in (
        DataCentre(
            "us", "https://accounts.zoho.com", "https://www.zohoapis.com", "https://campaigns.zoho.com"
        ),
        DataCentre("eu", "https://accounts.zoho.eu", "https://www.zohoapis.eu", "https://campaigns.zoho.eu"),
        DataCentre("in", "https://accounts.zoho.in", "https://www.zohoapis.in", "https://campaigns.zoho.in"),
        DataCentre(
            "au",
            "https://accounts.zoho.com.au",
            "https://www.zohoapis.com.au",
            "https://campaigns.zoho.com.au",
        ),
        DataCentre("jp", "https://accounts.zoho.jp", "https://www.zohoapis.jp", "https://campaigns.zoho.jp"),
        DataCentre(
            "ca",
            "https://accounts.zohocloud.ca",
            "https://www.zohoapis.ca",
            "https://campaigns.zohocloud.ca",
            campaigns_unverified=True,
        ),
        DataCentre(
            "cn",
            "https://accounts.zoho.com.cn",
            "https://www.zohoapis.com.cn",
            "https://campaigns.zoho.com.cn",
        ),
        DataCentre(
            "sa",
            "https://accounts.zoho.sa",
            "https://www.zohoapis.sa",
            "https://campaigns.zoho.sa",
            campaigns_unverified=True,
        ),
    )
}


def data_centre(code: str) -> DataCentre:
    """The data centre for a ZOHO_DC value (case-insensitive); ValueError if unknown."""
    try:
        return DATA_CENTRES[code.strip().lower()]
    except KeyError:
        known = ", ".join(DATA_CENTRES)
        raise ValueError(f"unknown Zoho data centre {code!r}: expected one of {known}") from None
