"""The call log in the admin: readable, never editable."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from sync.models import ZohoCall


def make_call() -> ZohoCall:
    return ZohoCall.objects.create(
        service=ZohoCall.Service.CRM,
        operation="crm.update",
        method="PUT",
        path="/crm/v8/Contacts",
        started_at=timezone.now(),
        outcome=ZohoCall.Outcome.ERROR,
        http_status=429,
        zoho_code="TOO_MANY_REQUESTS",
        permanent=False,
    )


@pytest.fixture
def admin_client(client_for: Callable[[AbstractUser], Client], admin_user: AbstractUser) -> Client:
    return client_for(admin_user)


def test_admins_see_the_call_log(admin_client: Client) -> None:
    call = make_call()

    listing = admin_client.get(reverse("admin:sync_zohocall_changelist"))
    detail = admin_client.get(reverse("admin:sync_zohocall_change", args=[call.pk]))

    assert listing.status_code == 200
    assert b"crm.update" in listing.content
    assert detail.status_code == 200
    assert b"TOO_MANY_REQUESTS" in detail.content


def test_nobody_adds_changes_or_deletes_calls(admin_client: Client) -> None:
    call = make_call()

    add = admin_client.get(reverse("admin:sync_zohocall_add"))
    change = admin_client.post(reverse("admin:sync_zohocall_change", args=[call.pk]), {"zoho_code": "X"})
    delete = admin_client.post(reverse("admin:sync_zohocall_delete", args=[call.pk]), {"post": "yes"})

    assert add.status_code == 403
    assert delete.status_code == 403
    assert change.status_code in (302, 403)
    call.refresh_from_db()
    assert call.zoho_code == "TOO_MANY_REQUESTS"
    assert ZohoCall.objects.filter(pk=call.pk).exists()


def test_officers_and_outsiders_are_refused(
    client_for: Callable[[AbstractUser], Client], officer: AbstractUser, outsider: AbstractUser
) -> None:
    make_call()

    for user in (officer, outsider):
        response = client_for(user).get(reverse("admin:sync_zohocall_changelist"))
        assert response.status_code == 302
        assert "/admin/login/" in response["Location"]


def test_its_str_names_the_call() -> None:
    call = ZohoCall(
        operation="crm.get", method="GET", path="/crm/v8/Contacts/1", http_status=204, outcome="ok"
    )

    assert str(call) == "crm.get GET /crm/v8/Contacts/1 → 204 ok"
