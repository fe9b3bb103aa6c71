"""Link tokens: signed, bound to contact, purpose and kind, expiring, revocable, rotatable."""

from __future__ import annotations

import base64
import zlib
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from compliance.lifecycle import tokens
from compliance.lifecycle.tokens import Kind, TokenInvalid
from compliance.models import Contact


@pytest.fixture
def ana(db: None) -> Contact:
    return Contact.objects.create(email="ana.secret@example.com", first_name="Ana", last_name="Ruiz")


def make(contact: Contact, **kwargs: Any) -> str:
    values: dict[str, Any] = {
        "kind": Kind.UNSUBSCRIBE,
        "purpose": "email_marketing",
        "ttl": timedelta(days=1),
    }
    values.update(kwargs)
    return tokens.token_make(contact=contact, **values)


def test_a_token_reads_back_what_it_was_made_with(ana: Contact) -> None:
    token = make(ana, campaign="CK-42", message_id=7)

    link = tokens.token_read(token, kind=Kind.UNSUBSCRIBE)

    assert (link.contact_id, link.purpose, link.campaign, link.message_id) == (
        ana.pk,
        "email_marketing",
        "CK-42",
        7,
    )


def test_it_carries_no_personal_data_in_clear(ana: Contact) -> None:
    token = make(ana)
    payload = token.split(":")[0]
    raw = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload.lstrip(".")) % 4))
    content = zlib.decompress(raw) if payload.startswith(".") else raw

    for personal in (b"ana.secret", b"example.com", b"Ana", b"Ruiz"):
        assert personal not in content and personal not in token.encode()


def test_two_tokens_for_the_same_link_differ_only_by_their_signature_key(ana: Contact, settings: Any) -> None:
    first = make(ana)
    settings.LINK_SIGNING_KEYS = ["another-key-entirely-0123456789"]

    assert make(ana) != first


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # the signature
        lambda t: ("x" + t[1:]) if t[0] != "x" else ("y" + t[1:]),  # the payload
        lambda t: t.split(":")[0],  # no signature at all
        lambda t: "",
        lambda t: t + "A" * 500,  # too long to be ours
    ],
    ids=["signature", "payload", "unsigned", "empty", "oversized"],
)
def test_a_tampered_token_is_refused(ana: Contact, tamper: Any) -> None:
    with pytest.raises(TokenInvalid) as refused:
        tokens.token_read(tamper(make(ana)), kind=Kind.UNSUBSCRIBE)
    assert refused.value.reason == "tampered"


def test_a_token_of_another_kind_is_refused(ana: Contact) -> None:
    with pytest.raises(TokenInvalid) as refused:
        tokens.token_read(make(ana, kind=Kind.PREFERENCES), kind=Kind.UNSUBSCRIBE)
    assert refused.value.reason == "unknown"


def test_a_token_expires(ana: Contact) -> None:
    token = make(ana, ttl=timedelta(hours=168))

    with time_machine.travel(timezone.now() + timedelta(hours=167), tick=False):
        assert tokens.token_read(token, kind=Kind.UNSUBSCRIBE).contact_id == ana.pk
    with (
        time_machine.travel(timezone.now() + timedelta(hours=169), tick=False),
        pytest.raises(TokenInvalid) as refused,
    ):
        tokens.token_read(token, kind=Kind.UNSUBSCRIBE)
    assert refused.value.reason == "expired"


def test_revoking_a_contacts_links_refuses_every_older_token_and_no_one_elses(ana: Contact) -> None:
    ben = Contact.objects.create(email="ben@example.com")
    anas, bens = make(ana), make(ben)

    tokens.links_revoke(contact=ana)

    with pytest.raises(TokenInvalid) as refused:
        tokens.token_read(anas, kind=Kind.UNSUBSCRIBE)
    assert refused.value.reason == "revoked"
    assert tokens.token_read(bens, kind=Kind.UNSUBSCRIBE).contact_id == ben.pk
    # and a link made after the revocation works
    assert tokens.token_read(make(ana), kind=Kind.UNSUBSCRIBE).contact_id == ana.pk
    assert tokens.links_revoke(contact=ana) == 2


def test_a_key_rotation_keeps_old_links_working_until_the_old_key_is_dropped(
    ana: Contact, settings: Any
) -> None:
    settings.LINK_SIGNING_KEYS = ["key-2025-0123456789abcdef"]
    old = make(ana)

    settings.LINK_SIGNING_KEYS = ["key-2026-0123456789abcdef", "key-2025-0123456789abcdef"]
    new = make(ana)
    assert tokens.token_read(old, kind=Kind.UNSUBSCRIBE).contact_id == ana.pk
    assert tokens.token_read(new, kind=Kind.UNSUBSCRIBE).contact_id == ana.pk

    settings.LINK_SIGNING_KEYS = ["key-2026-0123456789abcdef"]
    assert tokens.token_read(new, kind=Kind.UNSUBSCRIBE).contact_id == ana.pk
    with pytest.raises(TokenInvalid):
        tokens.token_read(old, kind=Kind.UNSUBSCRIBE)


def test_a_token_for_a_contact_that_is_gone_is_unknown(ana: Contact) -> None:
    token = make(ana)
    Contact.objects.filter(pk=ana.pk).delete()

    with pytest.raises(TokenInvalid) as refused:
        tokens.token_read(token, kind=Kind.UNSUBSCRIBE)
    assert refused.value.reason == "unknown"
