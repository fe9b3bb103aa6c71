"""What the ledger's services raise when they refuse a request; nothing was written."""

from __future__ import annotations

from compliance.models import ConsentEvent


class ConsentRejected(Exception):
    """The request breaks a rule of the ledger; nothing was written. `field` names the culprit."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


class ConsentForbidden(ConsentRejected):
    """The caller may not write this (for example an API client writing a source it was not given)."""


class IdentityConflict(ConsentRejected):
    """The identifiers given conflict with a contact's (another email for the same app user id,
    or identifiers of two contacts): never overwritten unless the caller may and asks to
    (`update_identity`). `field` names the conflicting identifier. The API answers 409."""


class IdempotencyConflict(Exception):
    """The idempotency key was used before for different content."""

    def __init__(self, event: ConsentEvent) -> None:
        super().__init__(f"Idempotency key {event.idempotency_key!r} was already used for other content.")
        self.event = event
