"""`manage.py ledger_grants`: an application role that reads and appends, and is refused any rewrite of the ledger."""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection

from compliance import services
from tests.needs import missing

ROLE = "consentdesk_app_grants_test"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app_role() -> Iterator[str]:
    if connection.vendor != "postgresql":
        missing("the database role test needs PostgreSQL (DATABASE_URL=postgres://…)")
    with connection.cursor() as cursor:
        cursor.execute(f"DROP ROLE IF EXISTS {ROLE}")
        cursor.execute(f"CREATE ROLE {ROLE} LOGIN")
    yield ROLE
    with connection.cursor() as cursor:
        cursor.execute(f"DROP OWNED BY {ROLE}")
        cursor.execute(f"DROP ROLE {ROLE}")


def connect_as(role: str) -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(
        host=params.get("host") or "127.0.0.1",
        port=params.get("port") or 5432,
        dbname=connection.settings_dict["NAME"],
        user=role,
        autocommit=True,
    )


def test_it_prints_the_grants_without_running_them(app_role) -> None:
    out = StringIO()
    call_command("ledger_grants", app_role, stdout=out)

    assert (
        f'REVOKE UPDATE, DELETE, TRUNCATE ON public.compliance_consentevent FROM "{app_role}";'
        in out.getvalue()
    )
    with connect_as(app_role) as db, pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("SELECT count(*) FROM compliance_consentevent")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE compliance_consentevent SET reason = 'rewritten'",
        "DELETE FROM compliance_consentevent",
        "TRUNCATE compliance_consentevent",
        "UPDATE compliance_seal SET hash = 'x'",
        "DELETE FROM compliance_accesslog",
    ],
)
def test_the_applied_role_is_refused_rewriting_the_ledger(app_role, decide, statement) -> None:
    identity = services.ContactIdentity(email="grants@example.com")
    services.consent_ingest(identity=identity, decision=decide())
    services.ledger_seal()
    call_command("ledger_grants", app_role, "--apply", stdout=StringIO(), stderr=StringIO())

    with connect_as(app_role) as db:
        assert db.execute("SELECT count(*) FROM compliance_consentevent").fetchone() == (1,)
        # The refusal is the missing right itself, before any trigger runs.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            db.execute(statement)
        # Other tables stay writable: the outbox rows the sync works through.
        db.execute("UPDATE compliance_outboxentry SET attempts = attempts")
