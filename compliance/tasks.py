"""Periodic ledger work."""

from __future__ import annotations

from celery import shared_task

from compliance.services import consent_expire_due, ledger_seal


@shared_task(name="compliance.seal_ledger")
def seal_ledger() -> int | None:
    seal = ledger_seal()
    return seal.sequence if seal else None


@shared_task(name="compliance.expire_due")
def expire_due() -> int:
    return consent_expire_due()
