"""No address in the ledger's hashed columns (issue 14): a Campaigns pull's and a Zoho import's
unsubscribe name the address in their idempotency keys by its keyed token only, stable enough
that pulling and importing again records nothing new, and gone from every event after erasure."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from compliance import services
from compliance.address_tokens import address_token, email_token
from compliance.models import ConsentEvent, Contact, ErasedIdentifier, ErasureRequest, PolicyVersion
from compliance.services.erased_identifiers import erased_identifier_digests
from sync.campaigns_pull import campaigns_pull, unsubscribe_key

pytestmark = pytest.mark.postgres

EMAIL = "zephyrine.oddbottle@example.org"
LIST = "3zaddresstokens01"


def _seed_unsubscribed(sim: Any, *emails: str) -> None:
    subscribers: list[Any] = [{"email": email, "status": "unsub"} for email in emails]
    sim.seed(lists=[{"listkey": LIST, "name": "Newsletter", "subscribers": subscribers}])


def _ledger_rows_naming(value: str) -> tuple[int, int]:
    """(consent events, identity events) whose hashed columns, or whole row, name `value`."""
    like = f"%{value}%"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM compliance_consentevent e WHERE e.idempotency_key ILIKE %s "
            "OR e.evidence::text ILIKE %s OR e.reason ILIKE %s OR e.actor ILIKE %s OR e::text ILIKE %s",
            [like] * 5,
        )
        consent = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM compliance_identityevent e WHERE e.request_key ILIKE %s "
            "OR e.reason ILIKE %s OR e.source ILIKE %s OR e.actor ILIKE %s OR e::text ILIKE %s",
            [like] * 5,
        )
        identity = cursor.fetchone()[0]
    return consent, identity


def _import(*args: str) -> str:
    out = io.StringIO()
    call_command("import_zoho_consent", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def policy(db: None) -> PolicyVersion:
    return services.policy_version_publish(
        label="2023-06", effective_at="2023-06-01", text="We send offers you chose."
    )


def test_the_token_is_stable_keyed_and_not_the_suppression_digest(settings: Any) -> None:
    token = email_token(EMAIL)
    assert token == email_token(EMAIL) == address_token("email", EMAIL)
    assert EMAIL not in token and "oddbottle" not in token
    assert len(token) == 40 and int(token, 16) >= 0
    assert token != email_token("other@example.org")
    assert token != address_token("phone", EMAIL)
    assert not any(digest.startswith(token) for digest in erased_identifier_digests("email", EMAIL))
    settings.SECRET_KEY = "another secret"
    assert email_token(EMAIL) != token


@pytest.mark.django_db
def test_a_pulled_unsubscribe_names_no_address_in_the_ledger_and_pulling_again_records_nothing(
    sim: Any, zoho: Any
) -> None:
    _seed_unsubscribed(sim, EMAIL)

    first = campaigns_pull(client=zoho, list_keys=[LIST])
    second = campaigns_pull(client=zoho, list_keys=[LIST])

    (event,) = ConsentEvent.objects.filter(source="campaigns")
    assert event.contact.email == EMAIL
    assert event.idempotency_key == unsubscribe_key(LIST, EMAIL)
    assert event.idempotency_key == f"campaigns:unsub:{LIST}:{email_token(EMAIL)}"
    assert event.shown_evidence["campaigns_row"]["contact_email"] == EMAIL  # kept apart, erasable
    # The query sees the token where the address used to be (the contact's identity event
    # carries the decision's key as its request key) ...
    assert _ledger_rows_naming(email_token(EMAIL)) == (1, 1)
    # ... and the address nowhere.
    assert _ledger_rows_naming(EMAIL) == (0, 0)
    assert _ledger_rows_naming("oddbottle") == (0, 0)
    assert (first.unsubscribes_recorded, second.unsubscribes_recorded) == (1, 0)
    assert ConsentEvent.objects.filter(source="campaigns").count() == 1


@pytest.mark.django_db
def test_an_imported_unsubscribe_names_no_address_in_the_ledger_and_importing_again_records_nothing(
    sim_settings: Any, sim: Any, policy: PolicyVersion
) -> None:
    sim_settings.RECONCILE_BULK_POLL_S = 0
    sim_settings.ZOHO_CAMPAIGNS_LIST_KEYS = [LIST]
    _seed_unsubscribed(sim, EMAIL.upper())

    first = _import()
    second = _import()

    (event,) = ConsentEvent.objects.filter(idempotency_key__startswith="import-zoho:")
    assert (event.contact.email, event.status) == (EMAIL, "opted_out")
    assert event.idempotency_key == f"import-zoho:campaigns:{LIST}:{email_token(EMAIL)}:unsub"
    assert _ledger_rows_naming(EMAIL) == (0, 0)
    assert _ledger_rows_naming("oddbottle") == (0, 0)
    assert "1 decisions recorded" in first or "1 decision recorded" in first
    assert "0 decisions recorded, 1 already in the ledger" in second
    assert ConsentEvent.objects.filter(contact=event.contact).count() == 1


@pytest.mark.django_db
def test_after_erasure_a_pulled_unsubscribe_leaves_the_address_in_no_ledger_row(
    sim: Any, zoho: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _seed_unsubscribed(sim, EMAIL)
    campaigns_pull(client=zoho, list_keys=[LIST])
    contact = Contact.objects.get(email=EMAIL)

    with django_capture_on_commit_callbacks(execute=True):
        services.erasure_request(contact=contact, channel=ErasureRequest.Channel.API)

    assert ErasedIdentifier.objects.filter(kind="email").count() == 1
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM compliance_consentevent WHERE idempotency_key ILIKE %s "
            "OR evidence::text ILIKE %s OR reason ILIKE %s OR actor ILIKE %s",
            [f"%{EMAIL}%"] * 4,
        )
        assert cursor.fetchone()[0] == 0
    assert _ledger_rows_naming(EMAIL) == (0, 0)
    # The event stays, its key still the list's and the token's: a later pull records nothing.
    assert ConsentEvent.objects.filter(contact=contact, idempotency_key=unsubscribe_key(LIST, EMAIL)).exists()
    assert campaigns_pull(client=zoho, list_keys=[LIST]).unsubscribes_recorded == 0
    assert _ledger_rows_naming(EMAIL) == (0, 0)
