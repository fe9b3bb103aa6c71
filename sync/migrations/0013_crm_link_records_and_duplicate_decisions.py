"""A contact's CRM records, one row each (Contacts and Leads, duplicates written to all), and the
admins' duplicate decisions. The links made before move to rows: a linked contact's record with
its consent record id, a duplicate's candidates."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def links_to_records(apps, schema_editor):
    CrmLink = apps.get_model("sync", "CrmLink")
    CrmLinkRecord = apps.get_model("sync", "CrmLinkRecord")
    rows = []
    for link in CrmLink.objects.exclude(state="not_in_crm").iterator(chunk_size=5000):
        role = "linked" if link.state == "linked" else "candidate"
        ids = [str(i) for i in link.candidates or []][: 1 if role == "linked" else None]
        for record_id in ids:
            consent = link.consent_id if role == "linked" else None
            rows.append(
                CrmLinkRecord(
                    contact_id=link.contact_id,
                    module="Contacts",
                    record_id=record_id,
                    role=role,
                    consent_id=consent,
                )
            )
        if len(rows) >= 5000:
            CrmLinkRecord.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    CrmLinkRecord.objects.bulk_create(rows, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0013_state_policy_version"),
        ("sync", "0012_one_open_auth_alert"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="syncpush",
            name="module",
            field=models.CharField(default="Contacts", max_length=40),
        ),
        migrations.CreateModel(
            name="CrmLinkRecord",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("module", models.CharField(default="Contacts", max_length=40)),
                ("record_id", models.CharField(max_length=32)),
                (
                    "role",
                    models.CharField(
                        choices=[
                            ("linked", "Linked (the only record of its module)"),
                            ("candidate", "Duplicate awaiting an admin's choice"),
                            ("primary", "Chosen as the primary of its duplicates"),
                            ("all", "One of duplicates written to all"),
                        ],
                        default="linked",
                        max_length=10,
                    ),
                ),
                ("consent_id", models.CharField(blank=True, max_length=32, null=True)),
                ("converted_from", models.CharField(blank=True, default="", max_length=32)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "contact",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="crm_records",
                        to="compliance.contact",
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["record_id"], name="sync_crmlinkrecord_record")],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("contact", "module", "record_id"), name="sync_crmlinkrecord_once_per_contact"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="DuplicateDecision",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "choice",
                    models.CharField(
                        choices=[("write_all", "Write to all"), ("primary", "Write to the primary only")],
                        max_length=10,
                    ),
                ),
                ("primary_module", models.CharField(blank=True, max_length=40)),
                ("primary_record_id", models.CharField(blank=True, max_length=32)),
                (
                    "candidates",
                    models.JSONField(help_text="The records the admin chose among: [{module, record_id}]."),
                ),
                ("reason", models.TextField(help_text="Why, in the admin's words.")),
                ("decided_by_name", models.CharField(max_length=150)),
                ("decided_at", models.DateTimeField(auto_now_add=True)),
                (
                    "contact",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT, related_name="+", to="compliance.contact"
                    ),
                ),
                (
                    "decided_by",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["-decided_at"], name="sync_dupdecision_newest")],
            },
        ),
        migrations.RunPython(links_to_records, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="crmlink",
            name="consent_id",
        ),
    ]
