"""Every write to the ledger. Nothing else inserts consent events.

`consent_record` is the one write path: in one transaction it replays or
refuses a duplicate idempotency key, locks the chain's current state, appends
the event with its version, previous status and hash, updates the state and
writes the outbox row the sync consumes. `consent_ingest` first finds or makes
the contact (`contact_resolve`). `consent_ingest_batch` takes the same steps for
a chunk of items at once, with the outcome and ledger the one-by-one path gives
(tests/compliance/test_ingest_batch.py holds the two side by side).

One module per concern, their public names re-exported here:

- `errors`: what a refused request raises;
- `contacts`: the contact a request's identifiers name;
- `identity`: a contact's identity history (hash-chained identity events) and merges;
- `consent`: the rules of a decision, the append and the chain's state;
- `consent_batch`: many decisions at once;
- `seals`, `api_clients`, `policies`, `suppressions`;
- `corrections`: decisions people record at the desk (phone requests, admin corrections);
- `access_log`: who read whose personal data (not the ledger, insert-only like it).
"""

from __future__ import annotations

from compliance.services.access_log import access_log_query_hash, access_log_record
from compliance.services.api_clients import (
    api_client_create,
    api_client_expire,
    api_client_mark_used,
    api_client_revoke,
    api_client_rotate,
    api_client_update,
    api_key_hash,
)
from compliance.services.consent import (
    PERSON_SOURCES,
    ConsentDecision,
    Lookups,
    RecordResult,
    consent_expire_due,
    consent_ingest,
    consent_input_check,
    consent_record,
)
from compliance.services.consent_batch import (
    BATCH_COMMIT_EVERY,
    BATCH_SET_BASED_ATTEMPTS,
    Outcome,
    consent_ingest_batch,
)
from compliance.services.contacts import ContactIdentity, contact_resolve
from compliance.services.corrections import (
    Preview,
    StagedFile,
    consent_correct,
    consent_phone_record,
    consent_preview,
    correction_decision,
    correction_evidence_path,
    correction_file_stage,
    phone_request_decision,
)
from compliance.services.erased_identifiers import erased_identifiers_match
from compliance.services.erasure import (
    ErasureResult,
    LegalHoldActive,
    contact_erased,
    erasure_perform,
    erasure_request,
    erasure_retry_pending,
    legal_hold_lift,
    legal_hold_set,
)
from compliance.services.errors import (
    ConsentForbidden,
    ConsentRejected,
    IdempotencyConflict,
    IdentityConflict,
)
from compliance.services.identity import IdentityContext, contact_merge
from compliance.services.policies import policy_version_publish
from compliance.services.seals import ledger_seal
from compliance.services.state import WITHDRAWN
from compliance.services.suppressions import suppression_add

__all__ = [
    "BATCH_COMMIT_EVERY",
    "BATCH_SET_BASED_ATTEMPTS",
    "PERSON_SOURCES",
    "WITHDRAWN",
    "ConsentDecision",
    "ConsentForbidden",
    "ConsentRejected",
    "ContactIdentity",
    "ErasureResult",
    "IdempotencyConflict",
    "IdentityConflict",
    "IdentityContext",
    "LegalHoldActive",
    "Lookups",
    "Outcome",
    "Preview",
    "RecordResult",
    "StagedFile",
    "access_log_query_hash",
    "access_log_record",
    "api_client_create",
    "api_client_expire",
    "api_client_mark_used",
    "api_client_revoke",
    "api_client_rotate",
    "api_client_update",
    "api_key_hash",
    "consent_correct",
    "consent_expire_due",
    "consent_ingest",
    "consent_ingest_batch",
    "consent_input_check",
    "consent_phone_record",
    "consent_preview",
    "consent_record",
    "contact_erased",
    "contact_merge",
    "contact_resolve",
    "correction_decision",
    "correction_evidence_path",
    "correction_file_stage",
    "erased_identifiers_match",
    "erasure_perform",
    "erasure_request",
    "erasure_retry_pending",
    "ledger_seal",
    "legal_hold_lift",
    "legal_hold_set",
    "phone_request_decision",
    "policy_version_publish",
    "suppression_add",
]
