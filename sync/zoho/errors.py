"""The errors the Zoho client raises.

Every error says whether it is ``permanent`` (retrying the same call cannot
help: fix data, configuration or permissions) or transient (retry later with
backoff), like healthchecks' ``TransportError(permanent=...)``.
"""

from __future__ import annotations

from typing import Any


class ZohoError(Exception):
    """A call to Zoho failed.

    ``http_status`` is the HTTP status when Zoho answered; ``code`` is Zoho's
    own error code (``INVALID_DATA``, ``invalid_code``, ``1007`` ...) when it
    sent one; ``details`` is Zoho's ``details`` object, if any.
    """

    default_permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        permanent: bool | None = None,
        http_status: int | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = self.default_permanent if permanent is None else permanent
        self.http_status = http_status
        self.code = code
        self.details = details if details is not None else {}

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"code={self.code}")
        if self.http_status is not None:
            parts.append(f"http={self.http_status}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, permanent={self.permanent}, "
            f"http_status={self.http_status}, code={self.code!r})"
        )


class ZohoTransientError(ZohoError):
    """Worth retrying later: 5xx, timeouts, connection errors, locks, throttling."""

    default_permanent = False


class ZohoRateLimited(ZohoTransientError):
    """Zoho said TOO_MANY_REQUESTS (HTTP 429), or Campaigns locked the method, or
    Accounts refused another token mint. Zoho sends no Retry-After: back off."""


class ZohoPermanentError(ZohoError):
    """Retrying the same request cannot succeed (bad data, unknown module, no permission...)."""

    default_permanent = True


class ZohoAuthError(ZohoError):
    """Authentication failed: wrong client id/secret, wrong data centre, missing scope.

    Permanent by default: an admin must fix the configuration.
    """

    default_permanent = True


class ZohoAuthRevoked(ZohoAuthError):
    """The refresh token was revoked or evicted (``invalid_code``): an admin must
    generate a new one and set ZOHO_REFRESH_TOKEN."""


class ZohoTokenExpired(ZohoAuthError):
    """The access token was refused (HTTP 401 INVALID_TOKEN, Campaigns 1007).

    The transport catches it, refreshes the shared token once and retries
    once; callers only see it when the retry was refused too.
    """

    default_permanent = False
