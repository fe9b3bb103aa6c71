"""Erasure (issue 14): forget the person, keep the proof; legal holds; the objection kept as
hashed identifiers; retention."""

from __future__ import annotations

import itertools
import subprocess
from contextlib import contextmanager
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from compliance import selectors, services
from compliance.models import (
    ConsentState,
    Contact,
    ErasedIdentifier,
    ErasureRequest,
    EventPersonalData,
    IdentityEvent,
    IdentityPersonalData,
    LegalHold,
    Suppression,
)
from compliance.services import ContactIdentity
from compliance.verification import ledger_verify

EMAIL = "quillon.vandersnoot@example.net"
PHONE = "+4915198765432"
IP = "198.51.100.177"
AGENT = "VandersnootPhone/3.1"
NAME = "Quillon"
LAST = "Vandersnoot"
DISTINCT = (EMAIL, IP, AGENT, NAME, LAST, PHONE, "quillon.new@example.net")


def _person(decide, *, occurred_at=None):
    """The person: two purposes, an email change, evidence naming them."""
    client, _ = services.api_client_create(
        name="account-service", sources=["mobile_app"], scopes=["identity:write"]
    )
    extra = {"occurred_at": occurred_at} if occurred_at else {}
    services.consent_ingest(
        identity=ContactIdentity(
            email=EMAIL, phone=PHONE, first_name=NAME, last_name=LAST, app_user_id="u-q"
        ),
        decision=decide(ip_address=IP, user_agent=AGENT, evidence={"signed_as": f"{NAME} {LAST}"}, **extra),
        api_client=client,
    )
    services.consent_ingest(
        identity=ContactIdentity(app_user_id="u-q", email="quillon.new@example.net", update_identity=True),
        decision=decide(purpose="profiling", ip_address=IP, user_agent=AGENT, **extra),
        api_client=client,
    )
    return Contact.objects.get(app_user_id="u-q")


_names = itertools.count(1)


def _eraser(scopes=("erasure:write",)) -> APIClient:
    _client, key = services.api_client_create(name=f"dpo-{next(_names)}", sources=[], scopes=list(scopes))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return api


def _dump() -> str:
    settings = connection.settings_dict
    return subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            settings["HOST"] or "127.0.0.1",
            "-p",
            str(settings["PORT"] or 5432),
            "-U",
            settings["USER"],
            settings["NAME"],
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _mail_and_zoho_records(contact: Contact) -> None:
    """What else holds the person: a mail sent to them, the CRM link, a Zoho call's record."""
    from urllib.parse import quote

    from compliance.models import LifecycleMessage, Purpose
    from sync.models import CrmLink, ZohoCall

    LifecycleMessage.objects.create(
        kind="confirmation",
        contact=contact,
        purpose=Purpose.objects.get(code="email_marketing"),
        message_id="<m1@consent-desk.test>",
        to_email=EMAIL,
        subject=f"{NAME}, please confirm",
        body_text=f"Dear {NAME} {LAST}, ...",
    )
    CrmLink.objects.create(
        contact=contact, state="linked", checked_at=timezone.now(), matched_by="email", matched_value=EMAIL
    )
    ZohoCall.objects.create(
        service="crm",
        operation="search",
        method="GET",
        path=f"/crm/v8/Contacts/search?email={quote(EMAIL, safe='')}",
        started_at=timezone.now(),
        error=f"no record for {PHONE}",
    )


LIST = "3zlistquillon1"


@contextmanager
def _zohosim(settings):
    """zohosim on loopback, the ZOHO_* settings pointed at it (as tests/sync's `sim_settings`)."""
    from tests.sync.conftest import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_REFRESH_TOKEN, Sim
    from zohosim import LiveServer

    with LiveServer() as server:
        sim = Sim(server)
        for name in ("ZOHO_ACCOUNTS_URL", "ZOHO_API_DOMAIN", "ZOHO_CAMPAIGNS_URL"):
            setattr(settings, name, sim.url)
        settings.ZOHO_CLIENT_ID, settings.ZOHO_CLIENT_SECRET = SIM_CLIENT_ID, SIM_CLIENT_SECRET
        settings.ZOHO_REFRESH_TOKEN = SIM_REFRESH_TOKEN
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        settings.ZOHO_CAMPAIGNS_LIST_KEYS = [LIST]
        yield sim
        sim.http.close()


def _in_zoho(sim, contact: Contact) -> str:
    """The person in zohosim: a CRM Contact linked to the contact, both addresses in a list."""
    from sync.models import CrmLinkRecord

    record_id = sim.add_contact(
        First_Name=NAME, Last_Name=LAST, Email=EMAIL, Phone=PHONE, Email_Opt_Out=False
    )
    CrmLinkRecord.objects.create(contact=contact, module="Contacts", record_id=record_id)
    subscribers = [{"email": EMAIL}, {"email": "quillon.new@example.net"}]
    sim.seed(lists=[{"listkey": LIST, "name": "Newsletter", "subscribers": subscribers}])
    return record_id


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_erased_person_is_gone_from_the_database_and_zoho_and_the_proof_stays(decide, settings):
    from sync.models import ErasureZohoJob, ZohoCall
    from sync.tasks.erasure import erasure_zoho_due

    with _zohosim(settings) as sim:
        contact = _person(decide)
        _mail_and_zoho_records(contact)
        record_id = _in_zoho(sim, contact)
        dump = _dump()
        assert all(value in dump for value in DISTINCT), "the values are in the database before"
        events_before = list(
            contact.events.order_by("id").values_list("id", "purpose__code", "status", "hash")
        )

        answer = _eraser().post(
            f"/api/v1/contacts/{contact.pk}/erasure", {"reason": "ticket 4711"}, format="json"
        )

        assert answer.status_code == 201, answer.content
        body = answer.json()
        assert (body["contact_id"], body["status"], body["channel"]) == (contact.pk, "done", "api")
        assert body["requested_by"].startswith("api:dpo-")
        # Until Zoho has forgotten them too, the addresses live in the erasure's Zoho job only.
        job = ErasureZohoJob.objects.get(contact=contact)
        assert job.done_at is None and [LIST, EMAIL] in job.campaigns_left
        assert EMAIL in _dump()

        assert erasure_zoho_due() == {"ran": 1, "done": 1}

        record = sim.contact(record_id)
        assert (record["First_Name"], record["Last_Name"], record["Email"], record["Phone"]) == (
            None,
            "[erased]",
            None,
            None,
        )
        assert record["Email_Opt_Out"] is True
        lists = sim.http.get("/_sim/lists").json()["lists"]
        assert {s["email"]: s["status"] for s in lists[0]["subscribers"]} == {
            EMAIL: "unsub",
            "quillon.new@example.net": "unsub",
        }
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")
    dump = _dump()
    for value in (*DISTINCT, "quillon.vandersnoot%40example.net"):
        assert value not in dump, value
    call = ZohoCall.objects.get(operation="search")
    assert (call.path, call.error) == ("/crm/v8/Contacts/search?email=[erased]", "no record for [erased]")
    # The proof stays: every event as it was, each opt-in now withdrawn by an event saying why.
    after = list(contact.events.order_by("id").values_list("id", "purpose__code", "status", "hash"))
    assert after[: len(events_before)] == events_before
    assert [status for _id, _purpose, status, _hash in after[len(events_before) :]] == ["opted_out"] * 2
    assert set(ConsentState.objects.filter(contact=contact).values_list("status", flat=True)) == {"opted_out"}
    verdict = ledger_verify(workers=1)
    assert verdict.ok, verdict.summary()
    assert ledger_verify(workers=2) == verdict
    # Look-ups answer as if the person never existed.
    for found in (
        selectors.contact_find(email=EMAIL),
        selectors.contact_find(email="quillon.new@example.net"),
        selectors.contact_find(phone=PHONE),
        selectors.contact_find(app_user_id="u-q"),
        selectors.contact_search(query=LAST),
        selectors.contact_search(query=EMAIL),
    ):
        assert list(found) == []
    erased = Contact.objects.get(pk=contact.pk)
    assert (erased.email, erased.phone, erased.app_user_id, erased.first_name, erased.secret) == (
        None,
        None,
        None,
        "",
        None,
    )
    assert str(erased) == f"erased contact {contact.pk}"
    last = IdentityEvent.objects.filter(contact=contact).order_by("-version").first()
    assert (last.kind, last.actor) == (IdentityEvent.Kind.ERASED, body["requested_by"])
    assert not EventPersonalData.objects.filter(event__contact=contact).exists()
    assert not IdentityPersonalData.objects.filter(identity_event__contact=contact).exists()


@pytest.mark.django_db
def test_erasing_twice_answers_the_first_erasure_and_an_unknown_contact_404(decide):
    contact = _person(decide)
    api = _eraser()
    first = api.post(f"/api/v1/contacts/{contact.pk}/erasure", {}, format="json")
    again = api.post(f"/api/v1/contacts/{contact.pk}/erasure", {"reason": "again"}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert ErasureRequest.objects.count() == 1
    assert api.post("/api/v1/contacts/999999/erasure", {}, format="json").status_code == 404
    assert (
        _eraser(scopes=("contacts:read",)).post(f"/api/v1/contacts/{contact.pk}/erasure").status_code == 403
    )


@pytest.mark.django_db
def test_a_legal_hold_refuses_the_erasure_and_names_itself(decide, admin_user):
    contact = _person(decide)
    hold = services.legal_hold_set(contact=contact, reason="Court case 12 O 345/26", actor_user=admin_user)

    answer = _eraser().post(f"/api/v1/contacts/{contact.pk}/erasure", {}, format="json")

    assert answer.status_code == 409
    assert answer.json()["legal_hold"]["id"] == hold.pk
    assert "Court case 12 O 345/26" in answer.json()["detail"]
    assert Contact.objects.get(pk=contact.pk).email == "quillon.new@example.net"
    assert not ErasureRequest.objects.exists()

    services.legal_hold_lift(hold=hold, actor_user=admin_user)
    assert _eraser().post(f"/api/v1/contacts/{contact.pk}/erasure").status_code == 201


@pytest.mark.django_db
def test_the_objection_holds_a_new_ingest_a_reimport_and_a_campaigns_match(decide):
    contact = _person(decide)
    services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)
    assert ErasedIdentifier.objects.count() == 3  # two emails (one former), one phone
    assert services.erased_identifiers_match(email=EMAIL.upper())
    assert services.erased_identifiers_match(phone="+49 151 98765432")
    assert not services.erased_identifiers_match(email="someone.else@example.net")

    # A new event for the former address: recorded (the person acted), but "do not contact".
    services.consent_ingest(identity=ContactIdentity(email=EMAIL), decision=decide())
    back = Contact.objects.get(email=EMAIL)
    held = Suppression.objects.get(contact=back)
    assert (held.kind, held.get_kind_display()) == ("erased", "Erased before: do not contact")
    # The batch path holds too.
    services.consent_ingest_batch(
        items=[(ContactIdentity(phone=PHONE), decide(purpose="sms_marketing"))], api_client=None
    )
    assert Suppression.objects.filter(contact__phone=PHONE, kind="erased").exists()


@pytest.mark.django_db
def test_a_contact_that_takes_an_erased_address_or_number_later_is_held_too(decide):
    services.consent_ingest(identity=ContactIdentity(app_user_id="u-fill"), decision=decide())
    services.consent_ingest(identity=ContactIdentity(email="was.other@example.net"), decision=decide())
    services.erasure_request(contact=_person(decide), channel=ErasureRequest.Channel.API)
    assert not Suppression.objects.filter(kind="erased").exists()

    # A missing address filled in with the erased one.
    services.consent_ingest(identity=ContactIdentity(app_user_id="u-fill", email=EMAIL), decision=decide())
    filled = Contact.objects.get(app_user_id="u-fill")
    assert filled.email == EMAIL
    assert Suppression.objects.filter(contact=filled, kind="erased").exists()

    # An address changed to the erased number's owner's phone, by a caller that may change it.
    client, _ = services.api_client_create(
        name="account-service-2", sources=["mobile_app"], scopes=["identity:write"]
    )
    services.consent_ingest(
        identity=ContactIdentity(email="was.other@example.net", phone=PHONE, update_identity=True),
        decision=decide(),
        api_client=client,
    )
    changed = Contact.objects.get(email="was.other@example.net")
    assert changed.phone is not None
    assert Suppression.objects.filter(contact=changed, kind="erased").exists()
    assert Suppression.objects.filter(kind="erased").count() == 2

    # The batch path: a missing address filled in with the erased person's former one.
    services.consent_ingest(identity=ContactIdentity(app_user_id="u-batch"), decision=decide())
    services.consent_ingest_batch(
        items=[(ContactIdentity(app_user_id="u-batch", email="quillon.new@example.net"), decide())],
        api_client=None,
    )
    batch = Contact.objects.get(app_user_id="u-batch")
    assert batch.email == "quillon.new@example.net"
    assert Suppression.objects.filter(contact=batch, kind="erased").exists()


@pytest.mark.django_db
def test_a_crash_leaves_the_request_pending_and_the_retry_completes_it(decide, monkeypatch):
    from compliance.services import erasure

    contact = _person(decide)
    monkeypatch.setattr(erasure, "identity_append", _boom)
    with pytest.raises(RuntimeError):
        services.erasure_request(contact=contact, channel=ErasureRequest.Channel.ADMIN)
    request = ErasureRequest.objects.get()
    assert (request.status, request.attempts, request.last_error) == ("pending", 1, "RuntimeError")
    assert Contact.objects.get(pk=contact.pk).email == "quillon.new@example.net", "nothing half-erased"
    assert EventPersonalData.objects.filter(event__contact=contact).exists()
    assert not ErasedIdentifier.objects.exists()

    monkeypatch.undo()
    assert services.erasure_retry_pending() == 1
    assert ErasureRequest.objects.get().status == "done"
    assert Contact.objects.get(pk=contact.pk).erased_at is not None
    assert ledger_verify().ok


def _boom(*args, **kwargs):
    raise RuntimeError("the process died here")


@pytest.mark.django_db
def test_a_rotated_suppression_secret_still_holds_the_old_digests(decide, settings):
    settings.ERASURE_SUPPRESSION_SECRETS = ["first-secret-0123456789"]
    services.erasure_request(contact=_person(decide), channel=ErasureRequest.Channel.API)
    old_key = ErasedIdentifier.objects.values_list("key_id", flat=True).first()

    settings.ERASURE_SUPPRESSION_SECRETS = ["second-secret-9876543210", "first-secret-0123456789"]
    assert services.erased_identifiers_match(email=EMAIL)
    settings.ERASURE_SUPPRESSION_SECRETS = ["second-secret-9876543210"]
    assert not services.erased_identifiers_match(email=EMAIL), (
        "a secret dropped from the list no longer matches"
    )
    services.consent_ingest(identity=ContactIdentity(email="other@example.net"), decision=decide())
    services.erasure_request(contact=Contact.objects.get(email="other@example.net"), channel="api")
    new_key = ErasedIdentifier.objects.exclude(key_id=old_key).values_list("key_id", flat=True).first()
    assert new_key and new_key != old_key


def _check_ids() -> set[str]:
    from django.core.checks import Tags, run_checks

    return {message.id for message in run_checks(tags=[Tags.database], databases=["default"])}


@pytest.mark.django_db
def test_rotating_secret_key_keeps_erased_people_held_while_its_former_key_is_a_fallback(
    decide, settings, client_for, admin_user
):
    old_key, new_key = "former-secret-key-" + "o" * 40, "current-secret-key-" + "n" * 40
    settings.ERASURE_SUPPRESSION_SECRETS, settings.SECRET_KEY = [], old_key
    services.erasure_request(contact=_person(decide), channel=ErasureRequest.Channel.API)
    assert _check_ids().isdisjoint({"compliance.E011", "compliance.W011"})

    # Rotated as docs/operations.md says: the former key kept as a fallback for a while.
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = new_key, [old_key]
    back = services.consent_ingest(identity=ContactIdentity(email=EMAIL), decision=decide()).event.contact
    assert Suppression.objects.filter(contact=back).exists(), "the erased person is held again"
    assert "compliance.W011" in _check_ids()  # dropping the fallback would orphan the digests
    # Setting a secret of its own later changes nothing for the digests made before.
    settings.ERASURE_SUPPRESSION_SECRETS = ["a-suppression-secret-of-its-own-0123456789"]
    assert services.erased_identifiers_match(email=EMAIL, phone=PHONE)

    settings.SECRET_KEY_FALLBACKS = []
    assert not services.erased_identifiers_match(email=EMAIL)
    assert "compliance.E011" in _check_ids()
    page = client_for(admin_user).get(reverse("admin:compliance_erasurerequest_changelist"))
    assert "made with a suppression secret no longer configured" in page.content.decode()
    assert "SECRET_KEY_FALLBACKS" in page.content.decode()


@pytest.mark.django_db
def test_retention_counts_from_an_expiry_not_from_the_opt_in_it_ended(decide):
    from datetime import UTC, datetime

    from compliance.services.retention import retention_erase

    opted_in = datetime(2015, 1, 10, 12, tzinfo=UTC)
    with time_machine.travel(opted_in, tick=False):
        services.consent_ingest(
            identity=ContactIdentity(email="lapsed@example.net"),
            decision=decide(purpose="phone_marketing", occurred_at=opted_in),
        )
    # phone_marketing's opt-in is valid 12 months: it expires on 2016-01-10.
    with time_machine.travel(datetime(2016, 1, 11, tzinfo=UTC), tick=False):
        assert services.consent_expire_due() == 1
    lapsed = Contact.objects.get(email="lapsed@example.net")
    assert lapsed.states.get().status == "expired"

    with time_machine.travel(datetime(2022, 12, 1, tzinfo=UTC), tick=False):
        assert retention_erase() == 0, "seven years after the opt-in, but not after its expiry"
    with time_machine.travel(datetime(2023, 1, 12, tzinfo=UTC), tick=False):
        assert retention_erase() == 1
    assert ErasureRequest.objects.get().contact_id == lapsed.pk


@pytest.mark.django_db
def test_retention_erases_seven_years_after_the_last_consent_ended_but_not_the_held(decide, admin_user):
    start = timezone.now() - timedelta(days=1)
    with time_machine.travel(start, tick=False):
        gone = _person(decide)
        services.consent_ingest(
            identity=ContactIdentity(app_user_id="u-q"),
            decision=decide(status="opted_out", policy_version=None),
        )
        services.consent_ingest(
            identity=ContactIdentity(app_user_id="u-q"),
            decision=decide(purpose="profiling", status="opted_out", policy_version=None),
        )
        services.consent_ingest(
            identity=ContactIdentity(email="held@example.net"),
            decision=decide(status="opted_out", policy_version=None),
        )
        services.consent_ingest(identity=ContactIdentity(email="still.in@example.net"), decision=decide())
    held = Contact.objects.get(email="held@example.net")
    services.legal_hold_set(contact=held, reason="Tax audit 2026", actor_user=admin_user)
    from compliance.services.retention import retention_erase

    with time_machine.travel(start + timedelta(days=365 * 7 - 3), tick=False):
        assert retention_erase() == 0, "not yet seven years"
    with time_machine.travel(start + timedelta(days=365 * 7 + 3), tick=False):
        assert retention_erase() == 1
    erasure = ErasureRequest.objects.get()
    assert (erasure.contact_id, erasure.channel, erasure.requested_by) == (gone.pk, "retention", "system")
    assert Contact.objects.get(email="still.in@example.net").erased_at is None
    assert Contact.objects.get(pk=held.pk).erased_at is None
    assert LegalHold.objects.get().lifted_at is None
    assert ledger_verify().ok
