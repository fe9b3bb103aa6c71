"""Policy versions at /policies/: the list, publishing, immutability, the difference between two,
and how many current opt-ins cite each."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction
from django.urls import reverse

from compliance import selectors, services
from compliance.models import PolicyVersion

pytestmark = pytest.mark.django_db

OLD_TEXT = "We send offers you chose.\nYou may withdraw at any time.\nWe keep data for two years.\nContact: dpo@example.com"
NEW_TEXT = "We send offers you chose.\nYou may withdraw at any time, by app or phone.\nWe keep data for two years.\nContact: dpo@example.com\nWe share nothing."


@pytest.fixture
def two_versions(db: None) -> tuple[PolicyVersion, PolicyVersion]:
    old = services.policy_version_publish(label="2026-01", effective_at="2026-01-01", text=OLD_TEXT)
    new = services.policy_version_publish(label="2026-06", effective_at="2026-06-01", text=NEW_TEXT)
    return old, new


def contact(email: str) -> services.ContactIdentity:
    return services.ContactIdentity(email=email)


# --- Immutability --------------------------------------------------------------------------------


def test_a_published_version_cannot_change_through_the_model(two_versions):
    old, _ = two_versions
    old.text = "Rewritten."
    with pytest.raises(ValidationError, match="published and cannot change"):
        old.save()
    with pytest.raises(ValidationError, match="cannot be deleted"):
        PolicyVersion.objects.get(pk=old.pk).delete()
    assert PolicyVersion.objects.get(pk=old.pk).text == OLD_TEXT


@pytest.mark.postgres
def test_the_database_refuses_an_update_that_steps_around_the_model(two_versions):
    old, _ = two_versions
    with pytest.raises(DatabaseError, match="published and cannot change"), transaction.atomic():
        PolicyVersion.objects.filter(pk=old.pk).update(text="Rewritten.")
    assert PolicyVersion.objects.get(pk=old.pk).text == OLD_TEXT


def test_no_page_offers_to_edit_a_version(client_for, admin_user, two_versions):
    old, _ = two_versions
    client = client_for(admin_user)
    detail = client.get(reverse("compliance:policy_detail", args=[old.pk]))

    assert detail.status_code == 200
    assert "<form" not in detail.content.decode().split("<main>")[1]
    # Publishing under a label in use is refused, not an overwrite.
    again = client.post(
        reverse("compliance:policy_publish"),
        {"label": "2026-01", "effective_at": "2027-01-01", "text": "New."},
    )
    assert again.status_code == 400
    assert "already exists" in " ".join(again.context["form"].errors["label"])
    assert PolicyVersion.objects.get(label="2026-01").text == OLD_TEXT


# --- Publishing ----------------------------------------------------------------------------------


def test_an_admin_publishes_a_version_from_the_page(client_for, admin_user):
    response = client_for(admin_user).post(
        reverse("compliance:policy_publish"),
        {"label": "2027-01", "effective_at": "2027-01-01", "text": "  The new notice.\n", "url": ""},
    )

    policy = PolicyVersion.objects.get(label="2027-01")
    assert response.status_code == 302
    # Publishing opens the re-permission view of the new version.
    assert response["Location"] == reverse("lifecycle:repermission", args=[policy.pk])
    assert policy.published_at is not None and policy.text == "The new notice."
    assert str(policy.effective_at) == "2027-01-01" and len(policy.sha256) == 64


def test_a_version_may_be_published_as_a_url(client_for, admin_user):
    client_for(admin_user).post(
        reverse("compliance:policy_publish"),
        {"label": "2027-02", "effective_at": "2027-02-01", "url": "example.com/privacy/2027-02"},
    )
    assert PolicyVersion.objects.get(label="2027-02").url == "https://example.com/privacy/2027-02"


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"effective_at": "2027-01-01", "text": "x"}, "label", "This field is required."),
        ({"label": "2027-01", "text": "x"}, "effective_at", "This field is required."),
        (
            {"label": "2027-01", "effective_at": "31.02.2027", "text": "x"},
            "effective_at",
            "Enter a valid date.",
        ),
        ({"label": "2027-01", "effective_at": "2027-01-01"}, "text", "Give the notice's text or its URL."),
        ({"label": "2027-01", "effective_at": "2027-01-01", "url": "not a url"}, "url", "Enter a valid URL."),
        ({"label": "x" * 51, "effective_at": "2027-01-01", "text": "x"}, "label", "at most 50 characters"),
    ],
)
def test_bad_input_is_refused_beside_its_field_and_publishes_nothing(
    client_for, admin_user, form, field, message
):
    response = client_for(admin_user).post(reverse("compliance:policy_publish"), form)

    assert response.status_code == 400
    errors = response.context["form"].errors
    assert any(message in error for error in errors.get(field, [])), errors
    assert 'class="field-errors"' in response.content.decode()
    assert not PolicyVersion.objects.exists()


@pytest.mark.parametrize(
    ("role", "status"), [("officer", 403), ("auditor", 403), ("outsider", 403), ("admin_user", 200)]
)
def test_only_admins_publish(request, client_for, role, status):
    client = client_for(request.getfixturevalue(role))

    assert client.get(reverse("compliance:policy_publish")).status_code == status
    posted = client.post(
        reverse("compliance:policy_publish"), {"label": "z", "effective_at": "2027-01-01", "text": "x"}
    )
    assert posted.status_code == (302 if status == 200 else 403)
    assert PolicyVersion.objects.filter(label="z").exists() == (status == 200)


# --- The difference between two versions ---------------------------------------------------------


def test_the_difference_shows_removed_and_added_lines_with_their_numbers(two_versions):
    old, new = two_versions

    lines = selectors.policy_version_diff(old=old, new=new)

    changed = [
        (line.kind, line.text, line.old_number, line.new_number) for line in lines if line.kind != "same"
    ]
    assert changed == [
        ("removed", "You may withdraw at any time.", 2, None),
        ("added", "You may withdraw at any time, by app or phone.", None, 2),
        ("added", "We share nothing.", None, 5),
    ]
    same = [(line.old_number, line.new_number) for line in lines if line.kind == "same"]
    assert same == [(1, 1), (3, 3), (4, 4)]


def test_far_apart_changes_are_shown_as_hunks_with_a_gap(db):
    body = [f"Clause {n}." for n in range(1, 21)]
    old = services.policy_version_publish(label="a", effective_at="2026-01-01", text="\n".join(body))
    changed = [*body]
    changed[1], changed[18] = "Clause two, revised.", "Clause nineteen, revised."
    new = services.policy_version_publish(label="b", effective_at="2026-02-01", text="\n".join(changed))

    kinds = [line.kind for line in selectors.policy_version_diff(old=old, new=new)]

    assert kinds.count("gap") == 1
    assert kinds.count("removed") == kinds.count("added") == 2


def test_identical_texts_have_no_difference(db):
    old = services.policy_version_publish(label="a", effective_at="2026-01-01", text="Same.")
    new = services.policy_version_publish(label="b", effective_at="2026-02-01", text="Same.")
    assert selectors.policy_version_diff(old=old, new=new) == []


def test_the_diff_page(client_for, auditor, two_versions):
    old, new = two_versions
    page = client_for(auditor).get(reverse("compliance:policy_diff"), {"old": old.label, "new": new.label})

    html = page.content.decode()
    assert page.status_code == 200
    assert '<tr class="removed">' in html and "You may withdraw at any time, by app or phone." in html
    bad = client_for(auditor).get(reverse("compliance:policy_diff"), {"old": old.label, "new": "nope"})
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()


# --- How many current opt-ins cite each version --------------------------------------------------


def test_counts_are_of_current_opt_ins_citing_each_version(two_versions, decide):
    old, new = two_versions
    services.consent_ingest(identity=contact("a@example.com"), decision=decide(policy_version=old.label))
    services.consent_ingest(identity=contact("b@example.com"), decision=decide(policy_version=old.label))
    services.consent_ingest(identity=contact("c@example.com"), decision=decide(policy_version=new.label))
    services.consent_ingest(
        identity=contact("c@example.com"), decision=decide(purpose="profiling", policy_version=new.label)
    )
    # b re-consents under the new version; a withdraws (an opt-out is not a consent).
    services.consent_ingest(identity=contact("b@example.com"), decision=decide(policy_version=new.label))
    services.consent_ingest(
        identity=contact("a@example.com"), decision=decide(status="opted_out", policy_version=old.label)
    )

    counts = selectors.policy_version_consent_counts()

    assert counts == {new.pk: 3}
    assert counts.get(old.pk, 0) == 0


def test_the_list_shows_each_version_with_its_count_newest_first(client_for, officer, two_versions, decide):
    old, _new = two_versions
    services.consent_ingest(identity=contact("a@example.com"), decision=decide(policy_version=old.label))

    page = client_for(officer).get(reverse("compliance:policy_list"))

    rows = [(p.label, p.consent_count) for p in page.context["table"].data]
    assert rows == [("2026-06", 0), ("2026-03", 0), ("2026-01", 1)]  # 2026-03: the `decide` fixture's
    assert "Publish a new version" not in page.content.decode()  # officers do not publish
    filtered = client_for(officer).get(reverse("compliance:policy_list"), {"label": "06"})
    assert [p.label for p in filtered.context["table"].data] == ["2026-06"]


def test_admins_are_offered_to_publish(client_for, admin_user, two_versions):
    assert (
        "Publish a new version"
        in client_for(admin_user).get(reverse("compliance:policy_list")).content.decode()
    )


@pytest.mark.parametrize(
    ("role", "status"), [("officer", 200), ("auditor", 200), ("admin_user", 200), ("outsider", 403)]
)
def test_every_role_reads_the_policies(request, client_for, two_versions, role, status):
    client = client_for(request.getfixturevalue(role))
    old, new = two_versions
    for url in (
        reverse("compliance:policy_list"),
        reverse("compliance:policy_detail", args=[old.pk]),
        f"{reverse('compliance:policy_diff')}?old={old.label}&new={new.label}",
    ):
        assert client.get(url).status_code == status, url


def test_unknown_version_is_not_found(client_for, officer):
    assert client_for(officer).get(reverse("compliance:policy_detail", args=[999])).status_code == 404
