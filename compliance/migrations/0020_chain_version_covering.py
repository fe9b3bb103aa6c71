"""On PostgreSQL, the chain-version constraint's index also holds each event's hashes (INCLUDE),
so verify_ledger's quick check reads every chain in order from the index alone, without the rows
and without sorting (compliance/chain_fingerprint.py). Django's state keeps the plain constraint:
a unique constraint with non-key columns is not created at all on SQLite (models.W039), where the
constraint must stay."""

from django.db import migrations

CONSTRAINT = "compliance_consentevent_chain_version"


def _covering(apps, schema_editor):
    _replace(schema_editor, "UNIQUE (contact_id, purpose_id, version) INCLUDE (prev_hash, hash)")


def _plain(apps, schema_editor):
    _replace(schema_editor, "UNIQUE (contact_id, purpose_id, version)")


def _replace(schema_editor, definition):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"ALTER TABLE compliance_consentevent DROP CONSTRAINT {CONSTRAINT},"
        f" ADD CONSTRAINT {CONSTRAINT} {definition}"
    )


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0019_event_hash_version_3"),
    ]

    operations = [migrations.RunPython(_covering, _plain)]
