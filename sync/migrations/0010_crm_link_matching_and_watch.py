from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0009_bulk_actions_and_webhooks"),
    ]

    operations = [
        migrations.CreateModel(
            name="CrmWatchChannel",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("channel_id", models.CharField(max_length=20, unique=True)),
                ("token", models.CharField(max_length=50)),
                ("events", models.JSONField(default=list)),
                ("notify_url", models.URLField(max_length=500)),
                ("expires_at", models.DateTimeField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("renewed_at", models.DateTimeField(blank=True, null=True)),
                ("last_notified_at", models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.AddField(
            model_name="crmlink",
            name="matched_by",
            field=models.CharField(blank=True, default="", max_length=12),
        ),
        migrations.AddField(
            model_name="crmlink",
            name="matched_value",
            field=models.CharField(blank=True, default="", max_length=254),
        ),
        migrations.AddField(
            model_name="crmlink",
            name="consent_id",
            field=models.CharField(blank=True, max_length=32, null=True),
        ),
    ]
