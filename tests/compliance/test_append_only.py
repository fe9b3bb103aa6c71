"""The database itself refuses to change or remove ledger rows, whoever asks."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction

from compliance import services
from compliance.models import ConsentEvent, PolicyVersion, Seal
from compliance.services import ContactIdentity

pytestmark = [pytest.mark.django_db, pytest.mark.ledger]


@pytest.fixture
def event(decide) -> ConsentEvent:
    return services.consent_ingest(identity=ContactIdentity(email="ana@example.com"), decision=decide()).event


@pytest.fixture
def seal(event) -> Seal:
    sealed = services.ledger_seal()
    assert sealed is not None
    return sealed


def _raw(sql: str, params: list | None = None) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def test_it_rejects_update_of_an_event_through_the_orm(event):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentEvent.objects.filter(pk=event.pk).update(status="opted_out")
    assert ConsentEvent.objects.get(pk=event.pk).status == "opted_in"


def test_it_rejects_delete_of_an_event_through_the_orm(event):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        ConsentEvent.objects.filter(pk=event.pk)._raw_delete(using="default")
    assert ConsentEvent.objects.filter(pk=event.pk).exists()


def test_a_loaded_event_refuses_to_be_saved_again_or_deleted(event):
    event.status = "opted_out"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE compliance_consentevent SET status = 'opted_out' WHERE id = %s",
        "UPDATE compliance_consentevent SET hash = 'x' WHERE id = %s",
        "DELETE FROM compliance_consentevent WHERE id = %s",
    ],
)
def test_it_rejects_raw_sql_that_changes_events(event, sql):
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(sql, [event.pk])
    assert ConsentEvent.objects.get(pk=event.pk).hash == event.hash


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE compliance_seal SET event_count = 0 WHERE id = %s",
        "DELETE FROM compliance_seal WHERE id = %s",
    ],
)
def test_it_rejects_raw_sql_that_changes_seals(seal, sql):
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(sql, [seal.pk])
    assert Seal.objects.get(pk=seal.pk).hash == seal.hash


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("table", ["compliance_consentevent", "compliance_seal"])
def test_it_rejects_emptying_a_ledger_table(seal, table):
    # PostgreSQL has TRUNCATE (a statement-level trigger guards it); SQLite
    # empties a table with an unqualified DELETE, which its row triggers guard.
    # Committed rows (a transactional test): PostgreSQL refuses to TRUNCATE a
    # table with deferred constraint checks pending in the same transaction.
    statement = f"TRUNCATE {table} CASCADE" if connection.vendor == "postgresql" else f"DELETE FROM {table}"
    with pytest.raises(DatabaseError, match="append-only"):
        _raw(statement)
    assert ConsentEvent.objects.exists() and Seal.objects.exists()


def test_a_published_policy_version_cannot_change(policy):
    policy.text = "Something else entirely"
    with pytest.raises(ValidationError):
        policy.save()
    with pytest.raises(DatabaseError):
        _raw("UPDATE compliance_policyversion SET text = 'changed' WHERE id = %s", [policy.pk])
    assert PolicyVersion.objects.get(pk=policy.pk).text.startswith("We use your data")
