"""Simulator configuration: editions, credentials, and the knobs for behaviours zoho-api.md marks UNVERIFIED."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Daily credits per edition (zoho-api.md section 4): (base, per user, max or None for unlimited).
EDITION_CREDITS: dict[str, tuple[int, int, int | None]] = {
    "free": (5_000, 0, 5_000),
    "standard": (50_000, 250, 100_000),
    "professional": (50_000, 500, 3_000_000),
    "enterprise": (50_000, 1_000, 5_000_000),
    "ultimate": (50_000, 2_000, None),
}
# Concurrent calls per org per app [K203].
EDITION_CONCURRENCY: dict[str, int] = {
    "free": 5,
    "standard": 10,
    "professional": 15,
    "enterprise": 20,
    "ultimate": 25,
}
EDITION_ALIASES = {"starter": "standard", "zoho_one": "enterprise", "crm_plus": "ultimate"}

# Values of the consent object's picklists (zoho-api.md sections 5 and 11).
CONSENT_BASIS_VALUES = (
    "Not Applicable",
    "Legitimate Interests",
    "Contract",
    "Legal Obligation",
    "Vital Interests",
    "Public Interests",
    "Pending",
    "Awaiting",
    "Obtained",
    "Not Responded",
)
# Zoho's SDKs list "Email", "Call", "Portal", "Web Form"; the rest are UNVERIFIED.
CONSENT_THROUGH_VALUES = ("Email", "Call", "Portal", "Web Form", "Survey", "Social", "Others")

DEFAULT_CUSTOM_FIELDS: list[dict[str, Any]] = [
    {"api_name": "SMS_Opt_In", "data_type": "boolean"},
    {"api_name": "Profiling_Consent", "data_type": "boolean"},
    {"api_name": "Third_Party_Sharing_Consent", "data_type": "boolean"},
    {"api_name": "Email_Bounce_Reason", "data_type": "text"},
    # The lifecycle's optional fields (ZOHO_FIELD_FREQUENCY, ZOHO_FIELD_PREFERENCES_URL).
    {
        "api_name": "Email_Frequency",
        "data_type": "picklist",
        "pick_list_values": ["Daily", "Weekly", "Monthly"],
    },
    {"api_name": "Preferences_URL", "data_type": "text"},
]


@dataclass
class SimConfig:
    """Everything configurable. Build with ``SimConfig(**kw)`` or ``SimConfig.from_dict(d)``."""

    # Accounts
    client_id: str = "zohosim-client"
    client_secret: str = "zohosim-secret"
    refresh_tokens: list[str] = field(default_factory=lambda: ["zohosim-refresh-token"])
    api_domain: str | None = None  # None: the sim's own base URL (request.host_url)
    token_ttl_s: int = 3600
    token_mint_limit: int = 10  # mints per refresh token per window [ACC]
    token_mint_window_s: int = 600
    max_active_tokens: int = 10  # per refresh token; the oldest is invalidated [ACC]
    # UNVERIFIED body for the mint throttle (only the start of error_description is documented).
    token_throttle_body: dict[str, str] = field(
        default_factory=lambda: {
            "error": "Access Denied",
            "error_description": "You have made too many requests continuously. Please try again after some time.",
        }
    )
    # Org / edition
    edition: str = "enterprise"
    users: int = 10
    credits_limit: int | None = None  # explicit override of the edition formula
    concurrency_limit: int | None = None  # explicit override of the edition cap
    sub_concurrency_limit: int = 10  # COQL, search, bulk read, mass update
    credits_window_s: int = 86_400
    # Credits per call. UNVERIFIED beyond "most calls cost 1".
    coql_credits_by_limit: bool = True  # 1-200:1, 201-1000:2, 1001-2000:3
    update_credits_per_10_records: bool = False  # when True, ceil(n/10) credits per write call
    bulk_read_credits: int = 1
    # Responses
    tz_offset_minutes: int = 0  # offset used in Modified_Time etc. ("+00:00" by default)
    mixed_status: int = 207  # top-level HTTP status of a multi-record write with both outcomes (UNVERIFIED)
    missing_record_mode: str = "204"  # GET /Contacts/{id} of an unknown id: "204" or "invalid_data"
    # An update naming an id the module does not hold: INVALID_DATA "the id given seems to be
    # invalid" with ``details.id`` ("id", zoho-api.md's test list) or with the field named,
    # ``details.api_name: id`` and ``json_path: $.data[N].id`` ("api_name", its error table).
    unknown_id_details: str = "id"
    unknown_field_mode: str = "error"  # unknown field in a write: "error" (INVALID_DATA) or "ignore"
    require_fields_param: bool = True  # list GET without fields -> REQUIRED_PARAM_MISSING
    custom_fields: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_CUSTOM_FIELDS))
    # What the CRM answers for an invalid or expired access token: INVALID_TOKEN, or (as
    # production sometimes does, zoho-api.md section 11) AUTHENTICATION_FAILURE.
    invalid_token_code: str = "INVALID_TOKEN"
    # The consent object's picklists, served in the Consents field metadata and enforced on
    # writes. Zoho's samples show "Consent - Pending"-style basis values; orgs differ.
    consent_basis_values: list[str] = field(default_factory=lambda: list(CONSENT_BASIS_VALUES))
    consent_through_values: list[str] = field(default_factory=lambda: list(CONSENT_THROUGH_VALUES))
    # A consent object written without its existing ``id`` creates a new consent record, as
    # Zoho does ("new"); "merge" updates the record's current one (lenient, not Zoho).
    consent_without_id: str = "new"
    # Whether `settings/fields?module=Consents` answers the consent object's own metadata
    # (zoho-api.md: "Consent sub-fields have their own metadata"; how they are asked for is
    # unverified). False: INVALID_MODULE, as an org whose Zoho knows no such module.
    consent_metadata: bool = True
    # Scopes the token is granted (space separated); a CRM call needing another answers
    # 401 OAUTH_SCOPE_MISMATCH. None: everything the client asks for.
    granted_scopes: str | None = None
    # Bulk read
    bulk_read_polls_to_complete: int = 2  # status polls: 1st -> IN PROGRESS, 2nd -> COMPLETED; 0 = at once
    bulk_read_complete_after_s: float | None = None  # when set, time-based instead of poll-based
    bulk_read_per_page: int = 200_000
    # Rows a job may reach with ``page``; past them Zoho wants ``page_token`` (PAGE_RANGE_EXCEEDED).
    bulk_read_page_limit_rows: int = 200_000
    bulk_download_limit: int = 10  # downloads per minute, then 429
    # Campaigns
    campaigns_method_limit: int = 500  # calls per window for the locked methods
    campaigns_method_window_s: int = 300
    campaigns_lock_s: int = 1800
    campaigns_lock_code: str = "2201"  # UNVERIFIED: the real lock error code is undocumented
    campaigns_lock_message: str = "API call limit exceeded. Please retry after some time."
    # The largest ``range`` (page size) a paged Campaigns read accepts. Zoho documents no maximum;
    # the only source that pages (Airbyte's source-zoho-campaign, zoho-api.md section 7) asks
    # 100 rows a page, so 100 is the largest size known to work: anything above it is UNVERIFIED,
    # and a sim stricter than Zoho is safe where a laxer one is not.
    campaigns_max_range: int = 100
    # A ``range`` above ``campaigns_max_range``: "refuse" (an error envelope, code
    # ``campaigns_bad_param_code``) or "cap" (a page of ``campaigns_max_range`` rows, as an API
    # that silently caps would answer: a pager that takes a short page for the last one stops early).
    campaigns_range_over_max: str = "refuse"
    # UNVERIFIED: the code for a parameter Campaigns refuses whose code zoho-api.md does not give
    # (``resfmt`` missing or not JSON, ``fromindex``/``range`` not a positive integer or too large,
    # an unknown ``action``). 1004 is the documented "wrong URL" code: the request is malformed.
    campaigns_bad_param_code: str = "1004"
    # The error a paged read answers when its page holds no row (an empty list, a status nobody
    # has, the page past the last row), per Campaigns method. zoho-api.md's error codes: 2203 "no
    # contacts / list deleted" (a list's contacts), 6302 "no contacts" (a campaign's recipients).
    # A method not named here, or named with "", answers success with an empty ``list_of_details``.
    campaigns_empty_page_codes: dict[str, str] = field(
        default_factory=lambda: {"getlistsubscribers": "2203", "getcampaignrecipientsdata": "6302"}
    )
    # Faults
    fault_seed: int | None = None
    # Logs
    max_calls_logged: int = 1_000_000

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> SimConfig:
        cfg = cls()
        if data:
            cfg.update(data)
        return cfg

    def update(self, data: dict[str, Any]) -> None:
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        for key, value in data.items():
            setattr(self, key, value)
        self.edition = EDITION_ALIASES.get(self.edition.lower(), self.edition.lower())
        if self.edition not in EDITION_CREDITS:
            raise ValueError(f"unknown edition {self.edition!r}; one of {', '.join(EDITION_CREDITS)}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def daily_credits(self) -> int | None:
        """Credits per rolling 24 h; None means unlimited."""
        if self.credits_limit is not None:
            return self.credits_limit
        base, per_user, cap = EDITION_CREDITS[self.edition]
        total = base + per_user * self.users if per_user else base
        return total if cap is None else min(total, cap)

    def concurrency(self) -> int:
        if self.concurrency_limit is not None:
            return self.concurrency_limit
        return EDITION_CONCURRENCY[self.edition]
