"""Field mappings in the admin: admins edit them, every save is a new version, the history is kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse

from compliance.models import Contact
from sync.models import FieldMapping, FieldMappingVersion
from sync.projection import project

pytestmark = pytest.mark.django_db

SMS = "SMS_Opt_In"


@pytest.fixture
def admin_client(client_for: Callable[[AbstractUser], Client], admin_user: AbstractUser) -> Client:
    return client_for(admin_user)


@pytest.fixture
def sms() -> FieldMapping:
    return FieldMapping.objects.get(crm_field=SMS, is_active=True)


def change_form_data(response: Any, **changes: Any) -> dict[str, Any]:
    """What the admin's change form posts back: its fields as shown, the inline's management form, the changes."""
    form = response.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields}
    data = {
        name: ("on" if value is True else value) for name, value in data.items() if value not in (False, None)
    }
    for formset in response.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data.update({management.add_prefix(name): value for name, value in management.initial.items()})
    data.update(changes)
    return data


def test_an_admin_changes_a_mapping_and_the_change_is_a_new_version(admin_client: Client, sms: FieldMapping):
    url = reverse("admin:sync_fieldmapping_change", args=[sms.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    assert "History (every saved version)" in page.content.decode()

    response = admin_client.post(url, change_form_data(page, crm_field="SMS_Consent__c", direction="to_zoho"))

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    sms.refresh_from_db()
    assert (sms.crm_field, sms.direction, sms.version) == ("SMS_Consent__c", "to_zoho", 2)
    history = list(
        sms.versions.order_by("version").values_list("version", "crm_field", "direction", "changed_by")
    )
    assert history == [(1, SMS, "both", ""), (2, "SMS_Consent__c", "to_zoho", "ada-admin")]
    # The projection (what the push writes) uses the new field from now on.
    contact = Contact.objects.create(email="sam@example.com")
    assert "SMS_Consent__c" in project([contact.pk])[contact.pk].values


def test_the_change_page_shows_every_version(admin_client: Client, sms: FieldMapping):
    sms.direction = FieldMapping.Direction.TO_ZOHO
    sms.save(changed_by="someone")

    page = admin_client.get(reverse("admin:sync_fieldmapping_change", args=[sms.pk])).content.decode()

    assert "someone" in page
    assert list(sms.versions.values_list("version", flat=True)) == [2, 1]


def test_an_admin_adds_a_mapping_as_its_first_version(admin_client: Client, sms: FieldMapping):
    add = reverse("admin:sync_fieldmapping_add")
    page = admin_client.get(add)
    data = change_form_data(page, purpose=sms.purpose_id, crm_field="SMS_Double_Opt_In", transform="consented",
                            direction="to_zoho", is_active="on")  # fmt: skip

    response = admin_client.post(add, data)

    assert response.status_code == 302
    added = FieldMapping.objects.get(crm_field="SMS_Double_Opt_In")
    assert list(added.versions.values_list("version", "changed_by")) == [(1, "ada-admin")]


def test_a_second_active_mapping_of_one_field_is_refused(admin_client: Client, sms: FieldMapping):
    add = reverse("admin:sync_fieldmapping_add")
    data = change_form_data(admin_client.get(add), purpose=sms.purpose_id, crm_field=SMS,
                            transform="consented", direction="to_zoho", is_active="on")  # fmt: skip

    response = admin_client.post(add, data)

    assert response.status_code == 200  # the form again, with the error
    assert FieldMapping.objects.filter(crm_field=SMS).count() == 1


def test_past_versions_are_never_edited_and_mappings_never_deleted(admin_client: Client, sms: FieldMapping):
    first = sms.versions.get()
    sms.is_active = False
    sms.save()

    first.crm_field = "Something_Else"
    with pytest.raises(ValueError, match="never changed"):
        first.save()
    delete = admin_client.post(reverse("admin:sync_fieldmapping_delete", args=[sms.pk]), {"post": "yes"})

    assert delete.status_code == 403
    assert FieldMappingVersion.objects.get(pk=first.pk).crm_field == SMS
    assert list(sms.versions.values_list("version", "is_active")) == [(2, False), (1, True)]


@pytest.mark.parametrize("who", ["officer", "auditor", "outsider"])
def test_only_admins_open_or_change_mappings(request, client_for, sms: FieldMapping, who: str):
    client = client_for(request.getfixturevalue(who))
    url = reverse("admin:sync_fieldmapping_change", args=[sms.pk])

    page = client.get(url)
    post = client.post(url, {"purpose": sms.purpose_id, "crm_field": "Hijacked", "transform": "consented",
                             "direction": "both", "is_active": "on"})  # fmt: skip

    assert page.status_code == 302 and post.status_code == 302  # to the admin's login
    sms.refresh_from_db()
    assert (sms.crm_field, sms.version) == (SMS, 1)
