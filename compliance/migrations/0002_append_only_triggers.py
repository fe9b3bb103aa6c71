from django.db import migrations

from compliance import ledger_guard


def install(apps, schema_editor):
    ledger_guard.install(schema_editor.connection)


def drop(apps, schema_editor):
    ledger_guard.drop(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_initial")]

    operations = [migrations.RunPython(install, drop)]
