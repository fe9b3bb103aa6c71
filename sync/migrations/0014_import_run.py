"""The import of the consent already in Zoho: its runs (`sync.import_models.ImportRun`)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0013_crm_link_records_and_duplicate_decisions"),
    ]

    operations = [
        migrations.CreateModel(
            name="ImportRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[("running", "Running"), ("done", "Done"), ("failed", "Failed")],
                        default="running",
                        max_length=10,
                    ),
                ),
                (
                    "phase",
                    models.CharField(
                        choices=[("crm", "CRM records"), ("campaigns", "Campaigns lists"), ("done", "Done")],
                        default="crm",
                        max_length=10,
                    ),
                ),
                (
                    "method",
                    models.CharField(help_text="coql or bulk: how the CRM records are read.", max_length=10),
                ),
                (
                    "since",
                    models.DateTimeField(
                        blank=True, help_text="Only CRM records modified since then.", null=True
                    ),
                ),
                ("requested_by", models.CharField(blank=True, max_length=150)),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "owner",
                    models.CharField(
                        blank=True, help_text="host:pid of the process running it.", max_length=200
                    ),
                ),
                (
                    "resumed",
                    models.PositiveIntegerField(default=0, help_text="Times a stopped run was taken over."),
                ),
                ("cursor", models.JSONField(blank=True, default=dict)),
                (
                    "records_total",
                    models.PositiveIntegerField(
                        blank=True,
                        help_text="CRM records to read, when known (a Bulk Read page says).",
                        null=True,
                    ),
                ),
                ("records_read", models.PositiveIntegerField(default=0)),
                (
                    "records_bad",
                    models.PositiveIntegerField(default=0, help_text="Records that could not be read."),
                ),
                ("list_rows_read", models.PositiveIntegerField(default=0)),
                ("events_recorded", models.PositiveIntegerField(default=0)),
                (
                    "events_existing",
                    models.PositiveIntegerField(
                        default=0, help_text="Already in the ledger (an earlier run recorded them)."
                    ),
                ),
                (
                    "ledger_decides",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Not imported: the ledger holds a decision from elsewhere for the purpose.",
                    ),
                ),
                (
                    "refused",
                    models.PositiveIntegerField(default=0, help_text="Decisions the ledger's rules refused."),
                ),
                ("problems", models.JSONField(blank=True, default=list, help_text="The first 1000.")),
                ("error", models.TextField(blank=True)),
            ],
            options={
                "indexes": [models.Index(fields=["-started_at"], name="sync_importrun_newest")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("status", "running")),
                        fields=("status",),
                        name="sync_importrun_one_running",
                    )
                ],
            },
        ),
    ]
