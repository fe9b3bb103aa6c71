"""Database triggers that make the ledger insert-only.

The same statements serve the migration that installs them and the test
helpers that step around them to simulate tampering (which is exactly what a
person with owner rights on the database could do; `verify_ledger` catches it).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper

GUARDED_TABLES = (
    "compliance_consentevent",
    "compliance_seal",
    "compliance_identityevent",
    # The access log (migration 0007 installs the same triggers on it).
    "compliance_accesslog",
    "compliance_accesslogcontact",
)
PUBLISHED_POLICY_TABLE = "compliance_policyversion"


def _postgresql_install() -> list[str]:
    statements = [
        """
        CREATE OR REPLACE FUNCTION compliance_reject_ledger_change() RETURNS trigger AS $$
        BEGIN
            RAISE EXCEPTION 'ledger table % is append-only: % rejected', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'insufficient_privilege';
        END;
        $$ LANGUAGE plpgsql
        """,
        """
        CREATE OR REPLACE FUNCTION compliance_reject_published_policy_change() RETURNS trigger AS $$
        BEGIN
            IF OLD.published_at IS NOT NULL THEN
                RAISE EXCEPTION 'policy version % is published and cannot change', OLD.label
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
            RETURN NEW;
        END;
        $$ LANGUAGE plpgsql
        """,
    ]
    for table in GUARDED_TABLES:
        statements += [
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION compliance_reject_ledger_change()",
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION compliance_reject_ledger_change()",
        ]
    statements.append(
        f"CREATE TRIGGER {PUBLISHED_POLICY_TABLE}_frozen BEFORE UPDATE OR DELETE ON {PUBLISHED_POLICY_TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION compliance_reject_published_policy_change()"
    )
    return statements


def _postgresql_drop() -> list[str]:
    statements = []
    for table in GUARDED_TABLES:
        statements += [
            f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}",
            f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}",
        ]
    statements.append(f"DROP TRIGGER IF EXISTS {PUBLISHED_POLICY_TABLE}_frozen ON {PUBLISHED_POLICY_TABLE}")
    return statements


def _sqlite_install() -> list[str]:
    statements = []
    for table in GUARDED_TABLES:
        for op in ("UPDATE", "DELETE"):
            statements.append(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'ledger table {table} is append-only: {op} rejected'); END"
            )
    for op in ("UPDATE", "DELETE"):
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {PUBLISHED_POLICY_TABLE}_frozen_{op.lower()} "
            f"BEFORE {op} ON {PUBLISHED_POLICY_TABLE} WHEN OLD.published_at IS NOT NULL "
            "BEGIN SELECT RAISE(ABORT, 'policy version is published and cannot change'); END"
        )
    return statements


def _sqlite_drop() -> list[str]:
    statements = []
    for table in GUARDED_TABLES:
        for op in ("update", "delete"):
            statements.append(f"DROP TRIGGER IF EXISTS {table}_no_{op}")
    for op in ("update", "delete"):
        statements.append(f"DROP TRIGGER IF EXISTS {PUBLISHED_POLICY_TABLE}_frozen_{op}")
    return statements


def install_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return _postgresql_install()
    if vendor == "sqlite":
        return _sqlite_install()
    raise ImproperlyConfigured(f"Consent Desk runs on PostgreSQL or SQLite, not {vendor}")


def drop_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        return _postgresql_drop()
    if vendor == "sqlite":
        return _sqlite_drop()
    raise ImproperlyConfigured(f"Consent Desk runs on PostgreSQL or SQLite, not {vendor}")


def install(connection: BaseDatabaseWrapper) -> None:
    _execute(connection, drop_statements(connection.vendor) + install_statements(connection.vendor))


def drop(connection: BaseDatabaseWrapper) -> None:
    _execute(connection, drop_statements(connection.vendor))


def _execute(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    """Run the statements, skipping triggers on tables that do not exist (yet): migration 0002
    runs before a later one adds a guarded table (0008 adds compliance_identityevent and
    installs again)."""
    existing = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for statement in statements:
            words = statement.split()
            on_table = words[words.index("ON") + 1] if "ON" in words else None
            if on_table is None or on_table in existing:
                cursor.execute(statement)
