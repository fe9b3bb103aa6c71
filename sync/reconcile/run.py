"""The reconciliation run: the quota gate, the method, the chunks, the missing records, the record of the run."""

from __future__ import annotations

import logging

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from compliance.models import Contact
from sync import quota
from sync.alerts import alert_threshold
from sync.crm_watch import crm_watch_ensure
from sync.linking import crm_modules
from sync.models import ReconciliationRun
from sync.projection import active_mappings
from sync.reconcile.compare import Comparer, Counts, Seen
from sync.reconcile.crm_rows import BULK, COQL, compared_fields, crm_chunks, crm_rows
from sync.reconcile.missing import missing_flag
from sync.zoho import ZohoClient
from sync.zoho.errors import ZohoError

logger = logging.getLogger("sync.reconcile")


def _estimated_size() -> int:
    last = ReconciliationRun.objects.filter(error="").exclude(records_read=0).order_by("-started_at").first()
    if last is not None:
        return last.records_read
    return Contact.objects.filter(zoho_id__isnull=False).count()


def _watch_renew(zoho: ZohoClient) -> None:
    """Keep the CRM notification channel alive (it lasts a week; renewed two days before): the
    daily reconciliation is the polling that stands in for any callback that never came."""
    url = settings.PUBLIC_BASE_URL + reverse("sync:zoho_notify")
    try:
        crm_watch_ensure(zoho=zoho, notify_url=url)
    except ZohoError as exc:
        logger.warning("The CRM notification channel could not be renewed: %s", exc)


def reconcile(*, client: ZohoClient | None = None, method: str | None = None) -> ReconciliationRun:
    """Compare every CRM record (of every module of ``ZOHO_MODULES``) with the ledger. See the
    package docstring."""
    owns = client is None
    zoho = client or ZohoClient.from_settings()
    try:
        gate = quota.gate(zoho.config.cache_prefix)
        retry_at = gate.deferral(level=quota.RECONCILE)
        if retry_at is not None:
            raise quota.QuotaDeferred(
                f"reconciliation deferred until {retry_at.isoformat()}: credits below the reserve",
                retry_at=retry_at,
            )
        if settings.ZOHO_NOTIFICATIONS:
            _watch_renew(zoho)
        if method is None:
            method = BULK if _estimated_size() > settings.RECONCILE_BULK_THRESHOLD else COQL
        mappings = active_mappings()
        fields = compared_fields(mappings)
        run = ReconciliationRun.objects.create(method=method)
        counts = Counts()
        try:
            with quota.urgency(quota.RECONCILE):
                api_user = zoho.crm.api_user_id()
                seen = Seen()
                comparer = Comparer(
                    fields=fields, mappings=mappings, zoho=zoho, api_user=api_user, counts=counts, seen=seen
                )
                for module in crm_modules():
                    for chunk in crm_chunks(
                        crm_rows(zoho, method, fields, module=module), settings.RECONCILE_CHUNK
                    ):
                        comparer.chunk(chunk, module)
                comparer.flush()
                # Every page was read: now, and only now, a linked contact not seen is missing.
                if counts.records_read:
                    missing_flag(run=run, seen=seen, zoho=zoho, counts=counts)
                else:
                    logger.warning("Reconciliation %s read no CRM record: nothing is flagged missing", run.pk)
        except Exception as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:2000]
            raise
        finally:
            run.finished_at = timezone.now()
            run.records_read = counts.records_read
            run.contacts_compared = counts.compared
            run.opened = counts.opened
            run.resolved = counts.resolved
            run.missing = counts.missing
            run.save()
            logger.info(
                "Reconciliation %s (%s): read %s, compared %s, CRM-only %s, missing from CRM %s, opened %s, "
                "resolved %s, CRM opt-outs recorded %s",
                run.pk,
                method,
                counts.records_read,
                counts.compared,
                counts.crm_only,
                counts.missing,
                counts.opened,
                counts.resolved,
                counts.recorded,
            )
        alert_threshold(opened_now=counts.opened)
        return run
    finally:
        if owns:
            zoho.close()
