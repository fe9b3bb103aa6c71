"""The access log (issue 13): who read whose personal data. Insert-only, like the ledger."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from compliance import ledger_guard


def install_triggers(apps, schema_editor):
    # The ledger's triggers, installed again: ledger_guard.GUARDED_TABLES lists the two new
    # tables (no UPDATE, DELETE or TRUNCATE). Going back, dropping the tables drops their triggers.
    ledger_guard.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0006_api_client_rights"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="AccessLog",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField()),
                (
                    "username",
                    models.CharField(
                        help_text="As it was at the time (users may be renamed).", max_length=150
                    ),
                ),
                ("ip", models.GenericIPAddressField(blank=True, null=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("history_view", "History view"),
                            ("evidence_view", "Evidence view"),
                            ("search", "Search"),
                            ("export", "Export"),
                            ("report_download", "Report download"),
                        ],
                        max_length=20,
                    ),
                ),
                (
                    "path",
                    models.CharField(
                        blank=True, help_text="The URL path, without its query.", max_length=300
                    ),
                ),
                (
                    "detail",
                    models.CharField(
                        blank=True, help_text="What was exported or downloaded.", max_length=300
                    ),
                ),
                (
                    "query_hash",
                    models.CharField(blank=True, help_text="HMAC-SHA256 of a search's terms.", max_length=64),
                ),
                ("contact_count", models.PositiveIntegerField(default=0)),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "api_client",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="compliance.apiclient",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("view_access_log", "Can read and export the access log")],
            },
        ),
        migrations.CreateModel(
            name="AccessLogContact",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("contact_id", models.BigIntegerField()),
                (
                    "entry",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="contacts",
                        to="compliance.accesslog",
                    ),
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="accesslog",
            index=models.Index(fields=["-created_at", "-id"], name="compliance_accesslog_newest"),
        ),
        migrations.AddIndex(
            model_name="accesslog",
            index=models.Index(fields=["user", "-created_at"], name="compliance_accesslog_user"),
        ),
        migrations.AddIndex(
            model_name="accesslogcontact",
            index=models.Index(fields=["contact_id", "entry"], name="compliance_accesslog_contact"),
        ),
        migrations.RunPython(install_triggers, migrations.RunPython.noop),
    ]
