"""Print (and with --apply, run) the PostgreSQL grants for the application's database role.

The role may read and write every table, except that the ledger tables take no UPDATE, DELETE
or TRUNCATE: even a bug or an intruder in the application cannot rewrite history. Migrations
run as the tables' owner (another role), which keeps every right.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from compliance.ledger_guard import GUARDED_TABLES


def ledger_grants_statements(*, role: str, schema: str = "public") -> list[str]:
    """The statements, in order: everything on the schema's tables, then the ledger's rights taken back."""
    quoted = connection.ops.quote_name(role)
    statements = [
        f"GRANT USAGE ON SCHEMA {schema} TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {quoted}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {quoted}",
    ]
    statements += [
        f"REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.{table} FROM {quoted}" for table in GUARDED_TABLES
    ]
    return statements


class Command(BaseCommand):
    help = (
        "Print the PostgreSQL grants for the application role: no UPDATE, DELETE or TRUNCATE on the "
        "ledger tables. --apply runs them (as the tables' owner). Run again after every migrate."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("role", help="the role the application connects as (it must exist)")
        parser.add_argument("--schema", default="public")
        parser.add_argument("--apply", action="store_true", help="run the statements, not just print them")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("ledger_grants is for PostgreSQL (SQLite has no roles).")
        statements = ledger_grants_statements(role=options["role"], schema=options["schema"])
        for statement in statements:
            self.stdout.write(statement + ";")
        if options["apply"]:
            with transaction.atomic(), connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
            self.stderr.write(f"Applied {len(statements)} statements for role {options['role']}.")
