"""API client scopes, key rotation and expiry (issue 13).

Existing clients get no scope: reads are off until an admin grants `contacts:read`.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("compliance", "0005_contact_name_trigrams")]

    operations: list[migrations.operations.base.Operation] = [
        migrations.AddField(
            model_name="apiclient",
            name="scopes",
            field=models.JSONField(blank=True, default=list, help_text="Rights beyond writing events."),
        ),
        migrations.AlterField(
            model_name="apiclient",
            name="sources",
            field=models.JSONField(
                default=list, help_text="The sources this client may write (events:write)."
            ),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="expires_at",
            field=models.DateTimeField(
                blank=True, help_text="From then on, every key is refused.", null=True
            ),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="revoked_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="apiclient",
            name="last_used_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="rotated_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="previous_key_prefix",
            field=models.CharField(blank=True, editable=False, max_length=12, null=True, unique=True),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="previous_key_hash",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="previous_key_expires_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="apiclient",
            name="previous_key_last_used_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
