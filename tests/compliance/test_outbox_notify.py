"""The outbox's consumer hears of new rows after the commit, never before, and never breaks a write."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from compliance import services
from compliance.models import ConsentEvent, OutboxEntry
from compliance.services import ContactIdentity

pytestmark = pytest.mark.django_db

heard: list[int] = []


def count_rows() -> None:
    heard.append(OutboxEntry.objects.count())


def refuse() -> None:
    raise ConnectionError("broker down")


@pytest.fixture
def notify(settings: Any) -> list[int]:
    heard.clear()
    settings.LEDGER_OUTBOX_NOTIFY = f"{__name__}.count_rows"
    return heard


def test_the_consumer_hears_after_the_commit_and_can_read_the_rows(
    notify, decide, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.consent_ingest(identity=ContactIdentity(email="a@example.com"), decision=decide())
        assert notify == []  # not before the commit

    assert len(callbacks) == 1
    assert notify == [1]


def test_an_unchanged_state_writes_no_row_and_tells_nobody(
    notify, decide, django_capture_on_commit_callbacks
):
    services.consent_ingest(identity=ContactIdentity(email="a@example.com"), decision=decide())
    with django_capture_on_commit_callbacks(execute=True):
        services.consent_ingest(
            identity=ContactIdentity(email="a@example.com"), decision=decide(idempotency_key="again")
        )
    assert notify == []


def test_a_rolled_back_write_tells_nobody(notify, decide, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True),
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        services.consent_ingest(identity=ContactIdentity(email="a@example.com"), decision=decide())
        raise RuntimeError("the caller gives up")
    assert notify == []
    assert not ConsentEvent.objects.exists()


def test_a_failing_consumer_never_undoes_or_breaks_the_write(
    settings, decide, django_capture_on_commit_callbacks
):
    settings.LEDGER_OUTBOX_NOTIFY = f"{__name__}.refuse"
    with django_capture_on_commit_callbacks(execute=True):
        result = services.consent_ingest(identity=ContactIdentity(email="a@example.com"), decision=decide())
    assert result.created
    assert OutboxEntry.objects.filter(event=result.event).exists()
