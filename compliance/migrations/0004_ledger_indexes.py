"""Fewer indexes to update per event: 14 on compliance_consentevent become 10.

Dropped, because no query needs them:

- the `_like` (varchar_pattern_ops) indexes that `unique=True` adds on PostgreSQL for
  `idempotency_key` and `hash`. Keys are looked up by equality only (`=` and `IN` in
  compliance/services.py); hashes are never looked up. Only `load_demo_data`'s "already
  loaded?" check filters keys by prefix (`startswith`), once, on the demo database. Both
  columns stay unique: the existing unique constraints are renamed to the
  `UniqueConstraint`s the model now declares, so no index is rebuilt.
- the foreign-key indexes of `contact` and `purpose` on events and states: each repeats the
  leading column of a composite index (events: `compliance_consentevent_chain_version`,
  `compliance_event_purpose`; states: `compliance_consentstate_one_per_purpose`,
  `compliance_state_status`), which serves the same look-ups.

On SQLite the database is left as it is (no `_like` indexes exist there, and altering these
fields would make SQLite copy the ledger table, dropping its append-only triggers); its
inline UNIQUE constraints enforce the same uniqueness.
"""

from django.conf import settings
from django.db import migrations, models
import django.db.models.deletion

EVENT_TABLE = "compliance_consentevent"
STATE_TABLE = "compliance_consentstate"
# (table, column, constraint name as unique=True made it, UniqueConstraint name now)
UNIQUE = [
    (EVENT_TABLE, "idempotency_key", f"{EVENT_TABLE}_idempotency_key_key", f"{EVENT_TABLE}_idempotency_key_unique"),
    (EVENT_TABLE, "hash", f"{EVENT_TABLE}_hash_key", f"{EVENT_TABLE}_hash_unique"),
]
# (table, column) whose own single-column index goes
FOREIGN_KEY_INDEXES = [
    (EVENT_TABLE, "contact_id"),
    (EVENT_TABLE, "purpose_id"),
    (STATE_TABLE, "contact_id"),
    (STATE_TABLE, "purpose_id"),
]


def _plain_indexes(schema_editor, table, column):
    """Names of the non-unique indexes on exactly this one column."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    return sorted(
        name
        for name, info in constraints.items()
        if info["index"] and not info["unique"] and info["columns"] == [column]
    )


def _unique_constraint(schema_editor, table, column):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    names = [
        name
        for name, info in constraints.items()
        if info["unique"] and not info["primary_key"] and info["columns"] == [column]
    ]
    if len(names) != 1:
        raise RuntimeError(f"expected one unique constraint on {table}.{column}, found {names}")
    return names[0]


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for table, column, _old, new in UNIQUE:
        for name in _plain_indexes(schema_editor, table, column):  # the _like index
            schema_editor.execute(f"DROP INDEX {quote(name)}")
        current = _unique_constraint(schema_editor, table, column)
        if current != new:
            schema_editor.execute(f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(current)} TO {quote(new)}")
    for table, column in FOREIGN_KEY_INDEXES:
        for name in _plain_indexes(schema_editor, table, column):
            schema_editor.execute(f"DROP INDEX {quote(name)}")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    for table, column, old, new in UNIQUE:
        schema_editor.execute(f"ALTER TABLE {quote(table)} RENAME CONSTRAINT {quote(new)} TO {quote(old)}")
        like = schema_editor._create_index_name(table, [column], suffix="_like")
        schema_editor.execute(f"CREATE INDEX {quote(like)} ON {quote(table)} ({quote(column)} varchar_pattern_ops)")
    for table, column in FOREIGN_KEY_INDEXES:
        name = schema_editor._create_index_name(table, [column])
        schema_editor.execute(f"CREATE INDEX {quote(name)} ON {quote(table)} ({quote(column)})")


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0003_purposes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards)],
            state_operations=[
                migrations.AlterField(
                    model_name="consentevent",
                    name="contact",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="compliance.contact",
                    ),
                ),
                migrations.AlterField(
                    model_name="consentevent",
                    name="purpose",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="compliance.purpose",
                    ),
                ),
                migrations.AlterField(
                    model_name="consentevent", name="hash", field=models.CharField(max_length=64)
                ),
                migrations.AlterField(
                    model_name="consentevent", name="idempotency_key", field=models.CharField(max_length=200)
                ),
                migrations.AddConstraint(
                    model_name="consentevent",
                    constraint=models.UniqueConstraint(
                        fields=("idempotency_key",), name="compliance_consentevent_idempotency_key_unique"
                    ),
                ),
                migrations.AddConstraint(
                    model_name="consentevent",
                    constraint=models.UniqueConstraint(fields=("hash",), name="compliance_consentevent_hash_unique"),
                ),
                migrations.AlterField(
                    model_name="consentstate",
                    name="contact",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="states",
                        to="compliance.contact",
                    ),
                ),
                migrations.AlterField(
                    model_name="consentstate",
                    name="purpose",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="states",
                        to="compliance.purpose",
                    ),
                ),
            ],
        )
    ]
