"""The admin site: who may enter it and what it is called.

Django's default site is an instance of `ConsentDeskAdminSite` (`compliance.apps.ConsentDeskAdminConfig`
names it in place of `django.contrib.admin`), so every `admin.register` in every app, and
`admin.site.has_permission`, go through the one check below. The model admins live in
`compliance/admin.py` and `sync/admin.py`; this module registers none, because Django imports it
to build the default site before autodiscovery imports those.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from compliance.roles import Role, roles_of


class ConsentDeskAdminSite(admin.AdminSite):
    site_header = "Consent Desk administration"
    site_title = "Consent Desk admin"
    index_title = "Ledger and configuration"
    site_url = "/"

    def has_permission(self, request: HttpRequest) -> bool:
        """Superusers and active staff in the admin role; officers and auditors are refused even
        if someone made them staff."""
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        return bool(user.is_superuser or Role.ADMIN in roles_of(user))
