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
