"""The overview's periodic work: the consent tallies, and the nightly ledger check with its verdict.

Thin tasks (each calls one compliance service); Celery ships no type information, so
`shared_task` is an untyped decorator to mypy.
"""

from __future__ import annotations

from celery import shared_task

from compliance.tallies import consent_day_tally as _consent_day_tally
from compliance.verify_runs import ledger_verify_run

# The check reads the whole ledger (about 5 s per million events on the bench machine): far
# beyond the default task limits, which suit the sync's short tasks.
VERIFY_SOFT_LIMIT_S = 3 * 3600
VERIFY_LIMIT_S = VERIFY_SOFT_LIMIT_S + 300


@shared_task(name="workbench.consent_day_tally")  # type: ignore[untyped-decorator]
def consent_day_tally() -> int:
    return _consent_day_tally()


@shared_task(  # type: ignore[untyped-decorator]
    name="workbench.verify_ledger", soft_time_limit=VERIFY_SOFT_LIMIT_S, time_limit=VERIFY_LIMIT_S
)
def verify_ledger() -> bool | None:
    """`verify_ledger`'s check, its verdict recorded (`VerifyRun`); True when the ledger is intact."""
    return ledger_verify_run().ok
