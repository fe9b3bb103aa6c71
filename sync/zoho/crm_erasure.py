"""Zoho CRM calls of an erasure: delete records (anonymising is an ordinary update, `CrmClient.update`).

``DELETE /crm/v8/{module}?ids=…`` (Zoho's v8 spec, ``deleteRecords``; scope ``ZohoCRM.modules.DELETE``):
at most 100 ids a call; one ``data[]`` entry per id, ``SUCCESS`` "record deleted" or
``INVALID_DATA`` with ``details.id`` (no such record); HTTP 200 when all went, 207 when some did,
400 when none did; no ``ids`` is 400 ``REQUIRED_PARAM_MISSING``. ``wf_trigger=false`` (Zoho's SDKs):
no workflow rule runs on a record deleted for an erasure (Zoho runs them by default).
"""

from __future__ import annotations

from collections.abc import Sequence

from sync.zoho.crm import MAX_RECORDS_PER_CALL, CrmClient, _check_ids
from sync.zoho.crm_results import CrmUpdate, record_results
from sync.zoho.errors import ZohoPermanentError
from sync.zoho.transport import Request


def crm_delete(crm: CrmClient, ids: Sequence[str], *, module: str = "Contacts") -> CrmUpdate:
    """Delete up to 100 records of one module in one call: Zoho's answer for each id, in input
    order (per-record failures are results; a failure of the whole call raises)."""
    checked = _check_ids(ids)
    if not checked:
        return CrmUpdate([], None)
    if len(checked) > MAX_RECORDS_PER_CALL:
        raise ZohoPermanentError(
            f"Zoho deletes at most {MAX_RECORDS_PER_CALL} records per call, not {len(checked)}",
            code="LIMIT_EXCEEDED",
            details={"limit": MAX_RECORDS_PER_CALL, "param_name": "ids"},
        )
    response = crm.transport.call(
        Request(
            service="crm",
            operation="crm.delete",
            method="DELETE",
            host="api",
            path=f"/crm/{crm.version}/{module}",
            params={"ids": ",".join(checked), "wf_trigger": "false"},
            records=len(checked),
            credits=1,
            per_record=True,
        )
    )
    return record_results(response, checked)
