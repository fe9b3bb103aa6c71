from typing import Any

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_delete, post_migrate, post_save


def _install_roles(sender: AppConfig, **kwargs: Any) -> None:
    from compliance.roles import roles_install

    roles_install()


class ComplianceConfig(AppConfig):
    # The one config Django picks for "compliance" in INSTALLED_APPS: this module holds two.
    default = True
    name = "compliance"
    verbose_name = "Consent ledger"

    def ready(self) -> None:
        # Permissions exist only after migrate's own post_migrate handler ran,
        # so the role groups are (re)built then, not in a data migration.
        post_migrate.connect(_install_roles, sender=self, dispatch_uid="compliance_install_roles")
        from compliance import checks  # noqa: F401  (registers the system checks)

        # An erasure deletes the files kept of the person (compliance/erasure_files.py).
        from compliance.erasure_files import connect as erasure_files_connect

        erasure_files_connect()
        # django-tables2 remembers each render method's signature instead of reading it per cell.
        from compliance.table_signatures import install as table_signatures_install

        table_signatures_install()
        # Every process keeps purposes and policy versions in memory (services/reference.py).
        from compliance.models import PolicyVersion, Purpose
        from compliance.services.reference import reference_changed

        for model in (Purpose, PolicyVersion):
            post_save.connect(
                reference_changed, sender=model, dispatch_uid=f"reference_{model.__name__}_saved"
            )
            post_delete.connect(
                reference_changed, sender=model, dispatch_uid=f"reference_{model.__name__}_deleted"
            )


class ConsentDeskAdminConfig(admin_apps.AdminConfig):
    """`django.contrib.admin` with our site as the default one (INSTALLED_APPS names this instead)."""

    default = False
    default_site = "compliance.admin_site.ConsentDeskAdminSite"
