"""Name search without reading every contact: trigram indexes on first and last name.

Contact search matches a name word anywhere in the first or last name, case-insensitively
(`first_name__icontains`), which Django writes as `UPPER("first_name"::text) LIKE UPPER(%s)`.
A B-tree cannot answer a LIKE that starts with a wildcard, so at 2,000,000 contacts every
name search read the whole table (about 900 ms; docs/benchmarks.md, "Pages at 10,000,000
events"). A GIN index of the trigrams of exactly that expression (`pg_trgm`) can.

PostgreSQL only: pg_trgm is a trusted extension (PostgreSQL 13 and later), so the database's
owner may create it. SQLite has no such index and keeps scanning, which at demo sizes is fast.
"""

from django.db import migrations

INDEXES = [
    ("compliance_contact_first_name_trgm", "first_name"),
    ("compliance_contact_last_name_trgm", "last_name"),
]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, column in INDEXES:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON compliance_contact USING gin (UPPER({column}::text) gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, _column in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("compliance", "0004_ledger_indexes")]

    operations = [migrations.RunPython(create, drop, elidable=False)]
