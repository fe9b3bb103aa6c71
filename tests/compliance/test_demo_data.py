"""The two demo commands: the demo cast, and two years of history written through the one write path."""

from __future__ import annotations

import base64
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import RequestFactory
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from compliance.models import (
    ApiClient,
    ConsentEvent,
    ConsentState,
    ConsentStatus,
    Contact,
    ErasureRequest,
    EventPersonalData,
    LegalHold,
    PolicyVersion,
    Purpose,
    Seal,
    Source,
    Suppression,
)
from compliance.roles import Role, roles_of
from compliance.verification import ledger_verify

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def small_demo() -> str:
    return run("load_demo_data", "--contacts", "50", "--events", "400", "--seed", "7")


def erasure_withdrawals() -> int:
    """The demo's erased person's consents still given, withdrawn by the erasure."""
    return ConsentEvent.objects.filter(source=Source.SYSTEM, reason__startswith="Erasure request").count()


def test_create_demo_users_makes_one_user_per_role_and_prints_their_logins() -> None:
    output = run("create_demo_users")

    for username, role in [("officer", Role.OFFICER), ("auditor", Role.AUDITOR), ("admin", Role.ADMIN)]:
        password = f"{username}-demo-pass"
        assert password in output
        # django-axes checks each login against its request's address.
        user = authenticate(RequestFactory().post("/login/"), username=username, password=password)
        assert user is not None
        assert roles_of(user) == {role}
        assert user.is_staff == (role == Role.ADMIN)


def test_create_demo_users_prints_the_admins_totp_secret_and_keeps_it_across_runs() -> None:
    first = run("create_demo_users")
    second = run("create_demo_users")

    admin_line = next(line for line in first.splitlines() if "admin-demo-pass" in line)
    secret = admin_line.split("TOTP secret ")[1].split()[0]
    device = TOTPDevice.objects.get(user__username="admin", confirmed=True)
    assert base64.b32decode(secret) == device.bin_key
    assert f"TOTP secret {secret}" in second
    assert "TOTP secret" not in next(line for line in first.splitlines() if "officer-demo-pass" in line)


def test_create_demo_users_twice_keeps_one_user_per_role() -> None:
    run("create_demo_users")
    run("create_demo_users")

    assert get_user_model().objects.filter(username__in=["officer", "auditor", "admin"]).count() == 3


def test_demo_data_has_the_contacts_and_events_it_promises(small_demo: str) -> None:
    two_years_ago = timezone.now() - timedelta(days=731)

    assert Contact.objects.count() == 50
    assert ConsentEvent.objects.count() == 400 + erasure_withdrawals()
    assert not ConsentEvent.objects.filter(occurred_at__lt=two_years_ago).exists()
    assert not ConsentEvent.objects.filter(occurred_at__gt=timezone.now()).exists()
    assert "Loaded 50 contacts and 400 consent events" in small_demo


def test_demo_data_covers_every_purpose_source_and_both_policies(small_demo: str) -> None:
    assert set(ConsentEvent.objects.values_list("purpose__code", flat=True)) == set(
        Purpose.objects.values_list("code", flat=True)
    )
    assert set(ConsentEvent.objects.values_list("source", flat=True)) == set(Source.values)
    assert set(ConsentEvent.objects.values_list("status", flat=True)) == set(ConsentStatus.values)
    policies = set(
        ConsentEvent.objects.exclude(policy_version=None).values_list("policy_version__label", flat=True)
    )
    assert policies == {"2024-09", "2026-03"}
    assert PolicyVersion.objects.filter(published_at__isnull=False).count() == 2


def test_demo_data_has_ipv4_and_ipv6_addresses(small_demo: str) -> None:
    # (Kept apart from the events: hash version 2.)
    addresses = [
        values["ip_address"]
        for values in EventPersonalData.objects.values_list("values", flat=True)
        if values.get("ip_address")
    ]

    assert any(":" in address for address in addresses)
    assert any("." in address for address in addresses)


def test_demo_data_has_withdrawals_re_consents_and_confirmed_double_opt_ins(small_demo: str) -> None:
    withdrawals = ConsentEvent.objects.filter(
        previous_status=ConsentStatus.OPTED_IN, status=ConsentStatus.OPTED_OUT
    )
    re_consents = ConsentEvent.objects.filter(
        previous_status__in=[ConsentStatus.OPTED_OUT, ConsentStatus.EXPIRED], status=ConsentStatus.OPTED_IN
    )
    confirmed = ConsentEvent.objects.filter(
        purpose__code="email_marketing", previous_status=ConsentStatus.PENDING, status=ConsentStatus.OPTED_IN
    )

    assert withdrawals.exists()
    assert re_consents.exists()
    assert confirmed.exists()
    assert all(event.evidence.get("double_opt_in_confirmed_at") for event in confirmed)


def test_demo_data_records_hard_bounces_as_suppressions(small_demo: str) -> None:
    assert Suppression.objects.filter(kind=Suppression.Kind.HARD_BOUNCE, lifted_at=None).exists()


def test_demo_data_makes_the_demo_api_client_and_prints_its_key(small_demo: str) -> None:
    client = ApiClient.objects.get(name="demo-mobile-app")
    key = small_demo.strip().splitlines()[-1]

    assert sorted(client.sources) == ["mobile_app", "web_portal"]
    assert key.startswith(f"cd_{client.key_prefix}_")
    assert ConsentEvent.objects.filter(api_client=client).exists()


def test_demo_data_is_written_through_the_ledger_and_sealed(small_demo: str) -> None:
    verdict = ledger_verify()

    assert verdict.ok, verdict.problem
    assert verdict.events_checked == 400 + erasure_withdrawals()
    assert Seal.objects.get().event_count == verdict.events_checked
    assert ConsentState.objects.filter(version__gt=0).count() == verdict.chains_checked


def test_loading_demo_data_twice_does_not_double_it(small_demo: str) -> None:
    output = run("load_demo_data", "--contacts", "50", "--events", "400")

    assert "already loaded" in output
    assert ConsentEvent.objects.count() == 400 + erasure_withdrawals()
    assert Contact.objects.count() == 50


def test_demo_data_has_one_person_erased_and_one_under_legal_hold(small_demo: str) -> None:
    erasure = ErasureRequest.objects.get()
    contact = erasure.contact
    assert (erasure.status, erasure.channel, erasure.requested_by) == ("done", "admin", "user:admin")
    assert erasure.reason.startswith("Ticket DEMO-14")
    assert contact.erased_at is not None and contact.email is None and contact.first_name == ""
    assert erasure.events_kept == contact.events.count() > 0
    assert not EventPersonalData.objects.filter(event__contact=contact).exists()
    hold = LegalHold.objects.get()
    assert hold.lifted_at is None and hold.contact_id != contact.pk
    assert f"Erased contact {contact.pk} at its request (erasure {erasure.pk}" in small_demo
    assert ledger_verify().ok
