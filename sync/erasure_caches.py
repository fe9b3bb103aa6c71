"""The sync's caches an erasure empties (docs/erasure.md, "Logs, caches and files").

The duplicates page caches the key fields of each candidate CRM record (the person's email,
phone and names) for RECORDS_CACHE_S. The records of the erased contact are read inside the
erasure's transaction (`contact_erasing`: its CRM link records are still there, whatever the
Zoho job does with them later) and their cache entries deleted once it is committed, so a page
read meanwhile cannot put them back for a rolled-back erasure's sake. A crash between the commit
and the deletion leaves them until they expire (RECORDS_CACHE_S, 5 minutes).
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import transaction

from compliance.services.erasure import contact_erasing
from sync.models import CrmLinkRecord


def duplicate_records_forget(*, contact_id: int, zoho_id: str | None, **_: Any) -> None:
    # Imported when an erasure runs, not when the app is ready: sync.duplicates brings the Zoho
    # client (0.15 s), which every process (verify_ledger, each management command) imported.
    from sync.duplicates import duplicate_record_cache_key

    keys = {
        duplicate_record_cache_key(module, record_id)
        for module, record_id in CrmLinkRecord.objects.filter(contact_id=contact_id).values_list(
            "module", "record_id"
        )
    }
    if zoho_id:
        keys.add(duplicate_record_cache_key("Contacts", zoho_id))
    if keys:
        transaction.on_commit(lambda: cache.delete_many(sorted(keys)))


def connect() -> None:
    contact_erasing.connect(duplicate_records_forget, dispatch_uid="sync_duplicate_records_forget")
