"""Reconciliation: every CRM record's mapped fields compared with the ledger's projection.

`reconcile()` (daily task ``sync.reconcile``, ``python manage.py reconcile``), in `run`:

1. Asks the quota gate first: reconciliation is low priority, so when the
   credits left are below the reserve outside the off-peak window it raises
   `QuotaDeferred` (the task looks again later). Every CRM call it makes runs
   under ``quota.urgency(RECONCILE)``.
2. Streams the records of each module of ``ZOHO_MODULES`` (Contacts; Leads too when
   configured) (`crm_rows`): COQL keyset pages of 2,000 (``where
   id > '…' order by id``), or Bulk Read (200,000 rows per job page, a zipped
   CSV spooled to disk and read row by row) when the CRM is larger than
   ``RECONCILE_BULK_THRESHOLD`` (estimated from the previous run, or the
   ledger's linked contacts). Rows are tuples in one column order, whichever
   the method.
3. Per chunk of ``RECONCILE_CHUNK`` rows (memory stays bounded whatever the
   size): one query finds the ledger contacts by Zoho id, then by their written
   `CrmLinkRecord` of the module (a Lead, a Contact linked without a Zoho id),
   with whether each holds any consent state or suppression and whether it has
   an open discrepancy (contacts not linked to any record yet are looked up by
   email) (`ledger_match`). Each record of a contact is compared on its own: a
   discrepancy names its record and module, and only that record resolves it.
   Contacts that hold nothing share one blank projection, and a row's
   differences from it are worked out once per distinct set of CRM values; the
   others are projected (`sync.projection.project`). Then `sync.crm_changes`
   applies the rule of direction (a person's CRM opt-out becomes an event; a
   workflow's or our own is ``overwritten``; a CRM opt-in is
   ``unevidenced_opt_in``), every other mapped field that differs opens a
   ``drift`` discrepancy (retried: the ledger's value is pushed again after
   ``SYNC_RETRY_BASE_S``), and open discrepancies whose field now matches are
   resolved, as is an open ``record_missing`` of a contact whose record is
   there again (`compare`).
4. Only after a run that read every page: each linked CRM record the run did
   not see (a contact's ``Contact.zoho_id``, or a written `CrmLinkRecord`) gets a
   ``record_missing`` discrepancy on that record (`missing`); a link record that
   Zoho still returns by id is not missing, and a Lead converted since moves its
   link to the Contact it became, with no discrepancy. Which contacts and link records were
   seen is one bit per id (125 kB per million). A run that fails part way, or
   reads no record at all, flags nothing.
5. Writes a `ReconciliationRun` and asks `sync.alerts.alert_threshold` for one
   ``threshold`` alert when more discrepancies are open than
   ``DISCREPANCY_ALERT_THRESHOLD`` (emailed to ``COMPLIANCE_ALERT_EMAILS`` once
   the transaction commits). Not again for the same state: a run alerts only if
   it opened new discrepancies or no threshold alert is waiting unacknowledged.

CRM records without a ledger contact are counted, not compared (the ledger
holds no decision for them).
"""

from sync.reconcile.crm_rows import BULK, COQL, compared_fields
from sync.reconcile.run import reconcile

__all__ = ["BULK", "COQL", "compared_fields", "reconcile"]
