"""Each contact's CRM records (`CrmLinkRecord`) and the admins' duplicate decisions
(`DuplicateDecision`) in the Django admin: listed, filtered, found by record id, never changed."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import AbstractUser
from django.test import Client
from django.urls import reverse

from compliance.models import Contact
from sync.models import CrmLinkRecord, DuplicateDecision

pytestmark = pytest.mark.django_db

LEAD = "5725767000100002000"
CONTACT = "5725767000100001000"
OTHER = "5725767000100003000"


@pytest.fixture
def admin_client(client_for: Callable[[AbstractUser], Client], admin_user: AbstractUser) -> Client:
    return client_for(admin_user)


@pytest.fixture
def records() -> list[CrmLinkRecord]:
    person = Contact.objects.create(email="lena@example.com")
    other = Contact.objects.create(email="otto@example.com")
    return [
        CrmLinkRecord.objects.create(contact=person, module="Contacts", record_id=CONTACT),
        CrmLinkRecord.objects.create(contact=person, module="Leads", record_id=LEAD),
        CrmLinkRecord.objects.create(contact=other, module="Contacts", record_id=OTHER, converted_from=LEAD),
    ]


def test_admins_list_each_contacts_records_by_module_and_find_one_by_its_id(
    admin_client: Client, records: list[CrmLinkRecord]
) -> None:
    url = reverse("admin:sync_crmlinkrecord_changelist")

    listing = admin_client.get(url).content.decode()
    leads = admin_client.get(url, {"module": "Leads"}).content.decode()
    found = admin_client.get(url, {"q": OTHER}).content.decode()
    converted = admin_client.get(url, {"q": LEAD}).content.decode()

    assert CONTACT in listing and LEAD in listing and OTHER in listing
    assert LEAD in leads and CONTACT not in leads
    assert OTHER in found and CONTACT not in found
    assert "otto@example.com" in converted and "lena@example.com" in converted, "by id or converted from"


def test_nobody_adds_changes_or_deletes_a_record_link_here(
    admin_client: Client, records: list[CrmLinkRecord]
) -> None:
    lead = records[1]

    add = admin_client.get(reverse("admin:sync_crmlinkrecord_add"))
    detail = admin_client.get(reverse("admin:sync_crmlinkrecord_change", args=[lead.pk]))
    change = admin_client.post(
        reverse("admin:sync_crmlinkrecord_change", args=[lead.pk]), {"record_id": OTHER, "role": "all"}
    )
    delete = admin_client.post(reverse("admin:sync_crmlinkrecord_delete", args=[lead.pk]), {"post": "yes"})

    assert (add.status_code, detail.status_code, delete.status_code) == (403, 200, 403)
    assert change.status_code in (302, 403)
    lead.refresh_from_db()
    assert (lead.record_id, lead.role) == (LEAD, "linked")


def test_duplicate_decisions_are_evidence_listed_and_found_by_any_record_they_chose_among(
    admin_client: Client, admin_user: AbstractUser
) -> None:
    person = Contact.objects.create(email="dup@example.com")
    decision = DuplicateDecision.objects.create(
        contact=person,
        choice=DuplicateDecision.Choice.PRIMARY,
        primary_module="Contacts",
        primary_record_id=CONTACT,
        candidates=[{"module": "Contacts", "record_id": CONTACT}, {"module": "Contacts", "record_id": OTHER}],
        reason="The older record holds the signed form.",
        decided_by=admin_user,
        decided_by_name=admin_user.get_username(),
    )
    url = reverse("admin:sync_duplicatedecision_changelist")

    by_primary = admin_client.get(url, {"q": CONTACT}).content.decode()
    by_candidate = admin_client.get(url, {"q": OTHER}).content.decode()
    by_neither = admin_client.get(url, {"q": LEAD}).content.decode()
    filtered = admin_client.get(url, {"choice": "write_all"}).content.decode()
    detail = admin_client.get(reverse("admin:sync_duplicatedecision_change", args=[decision.pk]))
    change = admin_client.post(
        reverse("admin:sync_duplicatedecision_change", args=[decision.pk]), {"reason": "changed"}
    )
    delete = admin_client.post(
        reverse("admin:sync_duplicatedecision_delete", args=[decision.pk]), {"post": "yes"}
    )

    assert "dup@example.com" in by_primary and "dup@example.com" in by_candidate
    assert "dup@example.com" not in by_neither and "dup@example.com" not in filtered
    assert detail.status_code == 200 and b"The older record holds the signed form." in detail.content
    assert change.status_code in (302, 403) and delete.status_code == 403
    decision.refresh_from_db()
    assert decision.reason == "The older record holds the signed form."
    assert admin_client.get(reverse("admin:sync_duplicatedecision_add")).status_code == 403
