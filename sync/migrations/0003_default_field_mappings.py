from django.db import migrations

from sync.mappings import DEFAULT_MAPPINGS, field_mappings_install


def create(apps, schema_editor):
    field_mappings_install(apps.get_model("sync", "FieldMapping"), apps.get_model("compliance", "Purpose"))


def remove(apps, schema_editor):
    apps.get_model("sync", "FieldMapping").objects.filter(crm_field__in=[m[1] for m in DEFAULT_MAPPINGS]).delete()


class Migration(migrations.Migration):
    dependencies = [("sync", "0002_sync_engine"), ("compliance", "0003_purposes")]

    operations = [migrations.RunPython(create, remove)]
