from django.db import migrations

from compliance.purposes import PURPOSES, purposes_install


def create(apps, schema_editor):
    purposes_install(apps.get_model("compliance", "Purpose"))


def remove(apps, schema_editor):
    apps.get_model("compliance", "Purpose").objects.filter(code__in=[p[0] for p in PURPOSES]).delete()


class Migration(migrations.Migration):
    dependencies = [("compliance", "0002_append_only_triggers")]

    operations = [migrations.RunPython(create, remove)]
