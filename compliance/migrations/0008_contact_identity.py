"""Contact identity with history (issue 13).

Identity events: append-only (the ledger's triggers, installed again here so they cover the
new table) and hash-chained per contact. Every contact that exists already gets its first
identity event, holding the identifiers it has now, so every contact's identity chain starts
at version 1 and verify_ledger can hold each contact row to its chain.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone

from compliance import chain, ledger_guard

BACKFILL_BATCH = 5000
SNAPSHOT_FIELDS = ("email", "phone", "app_user_id", "zoho_id", "first_name", "last_name")


def first_identity_events(apps, schema_editor):
    Contact = apps.get_model("compliance", "Contact")
    IdentityEvent = apps.get_model("compliance", "IdentityEvent")
    now = timezone.now()
    last_id = 0
    while True:
        batch = list(
            Contact.objects.filter(pk__gt=last_id, identity_version=0)
            .order_by("pk")
            .values_list("pk", *SNAPSHOT_FIELDS)[:BACKFILL_BATCH]
        )
        if not batch:
            break
        events = []
        for pk, *identifiers in batch:
            event = IdentityEvent(
                contact_id=pk,
                version=1,
                kind="created",
                source="system",
                actor="system",
                reason="The contact's identifiers when its identity history began (migration 0008).",
                request_key="",
                recorded_at=now,
                prev_hash=chain.GENESIS_HASH,
                **dict(zip(SNAPSHOT_FIELDS, identifiers, strict=True)),
            )
            event.hash = chain.identity_event_hash(
                chain.GENESIS_HASH, tuple(getattr(event, name) for name in chain.IDENTITY_HASHED_FIELDS)
            )
            events.append(event)
        IdentityEvent.objects.bulk_create(events)
        last_id = batch[-1][0]
        Contact.objects.filter(pk__in=[row[0] for row in batch]).update(identity_version=1)


def install_triggers(apps, schema_editor):
    ledger_guard.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("compliance", "0007_access_log"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations: list[migrations.operations.base.Operation] = [
        migrations.CreateModel(
            name="IdentityEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("version", models.PositiveIntegerField()),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("created", "First identifiers"),
                            ("filled_in", "Missing identifiers filled in"),
                            ("updated", "Identifiers changed"),
                            ("merged_from", "Another contact merged into this one"),
                            ("merged_into", "Merged into another contact"),
                        ],
                        max_length=20,
                    ),
                ),
                ("email", models.EmailField(blank=True, max_length=254, null=True)),
                ("phone", models.CharField(blank=True, max_length=20, null=True)),
                ("app_user_id", models.CharField(blank=True, max_length=128, null=True)),
                (
                    "zoho_id",
                    models.CharField(blank=True, max_length=32, null=True, verbose_name="Zoho CRM record id"),
                ),
                ("first_name", models.CharField(blank=True, max_length=100)),
                ("last_name", models.CharField(blank=True, max_length=100)),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("mobile_app", "Mobile app"),
                            ("web_portal", "Web portal"),
                            ("customer_service", "Customer service (phone)"),
                            ("email_link", "Email unsubscribe link"),
                            ("campaigns", "Zoho Campaigns"),
                            ("crm", "Zoho CRM"),
                            ("import", "Import"),
                            ("admin", "Admin correction"),
                            ("system", "System"),
                        ],
                        max_length=20,
                    ),
                ),
                ("ip_address", models.GenericIPAddressField(blank=True, null=True)),
                (
                    "actor",
                    models.CharField(
                        help_text="Who recorded it, e.g. api:mobile-app or user:alice.", max_length=150
                    ),
                ),
                ("reason", models.TextField(blank=True)),
                (
                    "request_key",
                    models.CharField(
                        blank=True,
                        help_text="Idempotency key of the consent request that carried the change.",
                        max_length=200,
                    ),
                ),
                ("recorded_at", models.DateTimeField()),
                ("prev_hash", models.CharField(max_length=64)),
                ("hash", models.CharField(max_length=64)),
            ],
        ),
        migrations.RemoveConstraint(model_name="contact", name="compliance_contact_has_identifier"),
        migrations.AddField(
            model_name="contact",
            name="identity_version",
            field=models.PositiveIntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.AddField(
            model_name="contact",
            name="merged_into",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="merged_contacts",
                to="compliance.contact",
            ),
        ),
        migrations.AddIndex(
            model_name="contact",
            index=models.Index(
                condition=models.Q(("merged_into__isnull", False)),
                fields=["merged_into"],
                name="compliance_contact_merged_into",
            ),
        ),
        migrations.AddConstraint(
            model_name="contact",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("email__isnull", False),
                    ("phone__isnull", False),
                    ("app_user_id__isnull", False),
                    ("zoho_id__isnull", False),
                    ("merged_into__isnull", False),
                    _connector="OR",
                ),
                name="compliance_contact_has_identifier",
            ),
        ),
        migrations.AddField(
            model_name="identityevent",
            name="actor_user",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="identityevent",
            name="api_client",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="compliance.apiclient",
            ),
        ),
        migrations.AddField(
            model_name="identityevent",
            name="contact",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="identity_events",
                to="compliance.contact",
            ),
        ),
        migrations.AddField(
            model_name="identityevent",
            name="other_contact",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="compliance.contact",
            ),
        ),
        migrations.AddIndex(
            model_name="identityevent",
            index=models.Index(fields=["email"], name="compliance_identity_email"),
        ),
        migrations.AddConstraint(
            model_name="identityevent",
            constraint=models.UniqueConstraint(
                fields=("contact", "version"), name="compliance_identityevent_chain_version"
            ),
        ),
        migrations.AddConstraint(
            model_name="identityevent",
            constraint=models.CheckConstraint(
                condition=models.Q(("version__gte", 1)), name="compliance_identityevent_version_positive"
            ),
        ),
        migrations.RunPython(first_identity_events, migrations.RunPython.noop),
        # Again, now that compliance_identityevent exists: its UPDATE, DELETE and TRUNCATE are refused
        # (and on SQLite, tables remade by the migrations above get their triggers back).
        migrations.RunPython(install_triggers, migrations.RunPython.noop),
    ]
