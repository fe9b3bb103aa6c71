"""The Zoho API client: CRM, Campaigns and the shared OAuth token. See docs/zoho-client.md."""

from sync.zoho.auth import AccessToken, TokenManager
from sync.zoho.bulk import BulkRead, BulkReadJob
from sync.zoho.calllog import CallLog, DatabaseCallLog, NullCallLog
from sync.zoho.campaigns import CampaignsClient, CampaignsResult
from sync.zoho.client import ZohoClient
from sync.zoho.config import ZohoConfig
from sync.zoho.crm import CrmClient, CrmUser, FieldInfo
from sync.zoho.crm_results import CrmUpdate, RecordResult
from sync.zoho.datacenters import DATA_CENTRES, DataCentre, data_centre
from sync.zoho.errors import (
    ZohoAuthError,
    ZohoAuthRevoked,
    ZohoError,
    ZohoPermanentError,
    ZohoRateLimited,
    ZohoTokenExpired,
    ZohoTransientError,
)
from sync.zoho.transport import CallGate, ZohoTransport

__all__ = [
    "DATA_CENTRES",
    "AccessToken",
    "BulkRead",
    "BulkReadJob",
    "CallGate",
    "CallLog",
    "CampaignsClient",
    "CampaignsResult",
    "CrmClient",
    "CrmUpdate",
    "CrmUser",
    "DataCentre",
    "DatabaseCallLog",
    "FieldInfo",
    "NullCallLog",
    "RecordResult",
    "TokenManager",
    "ZohoAuthError",
    "ZohoAuthRevoked",
    "ZohoClient",
    "ZohoConfig",
    "ZohoError",
    "ZohoPermanentError",
    "ZohoRateLimited",
    "ZohoTokenExpired",
    "ZohoTransientError",
    "ZohoTransport",
    "data_centre",
]
