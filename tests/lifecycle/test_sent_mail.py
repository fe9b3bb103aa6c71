"""The demo's sent-mail page: admins only, demo mode only; its sign-up form mails a confirmation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from compliance.models import ConsentEvent, ConsentState, LifecycleMessage, PolicyVersion

URL = "/lifecycle/sent-mail/"


@pytest.fixture
def demo(settings: Any) -> Any:
    settings.DEMO_MODE = True
    settings.LIFECYCLE_SEND_ON_COMMIT = False
    return settings


@pytest.mark.parametrize(
    ("role", "status"), [("officer", 403), ("auditor", 403), ("outsider", 403), ("admin_user", 200)]
)
def test_only_admins_read_the_sent_mail(
    demo: Any, role: str, status: int, request: Any, client_for: Callable[..., Client]
) -> None:
    assert client_for(request.getfixturevalue(role)).get(URL).status_code == status


def test_it_sends_the_anonymous_to_log_in_and_does_not_exist_outside_demo_mode(
    settings: Any, admin_user: Any, client_for: Callable[..., Client]
) -> None:
    settings.DEMO_MODE = True
    assert Client().get(URL).status_code == 302
    settings.DEMO_MODE = False
    assert client_for(admin_user).get(URL).status_code == 404


def test_a_demo_sign_up_mails_a_confirmation_whose_links_the_page_shows(
    demo: Any,
    admin_user: Any,
    client_for: Callable[..., Client],
    policy: PolicyVersion,
    django_capture_on_commit_callbacks: Any,
) -> None:
    admin = client_for(admin_user)

    response = admin.post(URL, {"email": "newcomer@example.com"})
    assert response.status_code == 302

    (message,) = LifecycleMessage.objects.all()
    assert message.to_email == "newcomer@example.com"
    state = ConsentState.objects.get(contact=message.contact, purpose__code="email_marketing")
    assert (state.status, state.event.source) == ("pending", "web_portal")  # type: ignore[union-attr]
    page = admin.get(URL).content.decode()
    assert "http://testserver/c/" in page and 'name="List-Unsubscribe" value="One-Click"' in page
    # and a bad address records nothing
    assert admin.post(URL, {"email": "not an address"}).status_code == 400
    assert LifecycleMessage.objects.count() == 1


def test_a_mail_never_written_shows_why_and_offers_no_unsubscribe(
    demo: Any, admin_user: Any, client_for: Callable[..., Client], pending: ConsentEvent
) -> None:
    from compliance.lifecycle.suppressions import DO_NOT_CONTACT

    LifecycleMessage.objects.create(
        kind=LifecycleMessage.Kind.CONFIRMATION,
        contact=pending.contact,
        purpose=pending.purpose,
        event=pending,
        message_id="<held@consent-desk.test>",
        to_email="ana@example.com",
        subject="",
        body_text="",
        status=LifecycleMessage.Status.FAILED,
        last_error=DO_NOT_CONTACT,
    )

    page = client_for(admin_user).get(URL).content.decode()

    assert "No mail written" in page
    assert "Nothing was written or sent to this address." in page and DO_NOT_CONTACT in page
    assert 'class="mail-body"' not in page and "List-Unsubscribe" not in page
