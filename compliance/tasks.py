"""Periodic ledger work.

Celery ships no type information, so `shared_task` is an untyped decorator to mypy.
"""

from __future__ import annotations

from celery import shared_task

from compliance.services import consent_expire_due, ledger_seal


@shared_task(name="compliance.seal_ledger")  # type: ignore[untyped-decorator]
def seal_ledger() -> int | None:
    seal = ledger_seal()
    return seal.sequence if seal else None


@shared_task(name="compliance.expire_due")  # type: ignore[untyped-decorator]
def expire_due() -> int:
    return consent_expire_due()


@shared_task(name="compliance.erasure_retry")  # type: ignore[untyped-decorator]
def erasure_retry() -> int:
    from compliance.services.erasure import erasure_retry_pending

    return erasure_retry_pending()


@shared_task(name="compliance.retention_erase")  # type: ignore[untyped-decorator]
def retention_erase() -> int:
    """The daily retention erasures, then the files an erasure missed deleting."""
    from compliance.erasure_files import erasure_files_sweep
    from compliance.services.retention import retention_erase as erase

    erased = erase()
    erasure_files_sweep()
    return erased
