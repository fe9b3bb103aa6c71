from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _install_roles(sender: AppConfig, **kwargs: Any) -> None:
    from compliance.roles import roles_install

    roles_install()


class ComplianceConfig(AppConfig):
    name = "compliance"
    verbose_name = "Consent ledger"

    def ready(self) -> None:
        # Permissions exist only after migrate's own post_migrate handler ran,
        # so the role groups are (re)built then, not in a data migration.
        post_migrate.connect(_install_roles, sender=self, dispatch_uid="compliance_install_roles")
