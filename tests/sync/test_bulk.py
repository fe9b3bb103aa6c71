"""Discrepancies in bulk (sync.bulk): groups by likely cause and CRM field, and the three bulk actions."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from compliance.models import ConsentEvent, ConsentState, Source
from sync import bulk
from sync.discrepancies import HINTS, discrepancy_record
from sync.models import BulkAction, Discrepancy, SyncPush, ZohoCall

pytestmark = pytest.mark.django_db

SMS = "SMS_Opt_In"
PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"


@pytest.fixture
def queued(monkeypatch: Any) -> list[int]:
    """The bulk actions sent to the broker (the test runs them itself)."""
    sent: list[int] = []
    monkeypatch.setattr(bulk, "_enqueue", sent.append)
    return sent


def denied(contact_id: int, zoho_id: str = "") -> Discrepancy:
    return discrepancy_record(
        contact_id=contact_id,
        crm_field=SMS,
        kind=Discrepancy.Kind.PERMISSION_DENIED,
        zoho_id=zoho_id,
        expected=True,
        actual=False,
        hint=HINTS[Discrepancy.Kind.PERMISSION_DENIED].format(field=SMS),
    ).discrepancy


def overwritten(contact_id: int, *, actual: Any = False, expected: Any = True) -> Discrepancy:
    return discrepancy_record(
        contact_id=contact_id,
        crm_field=PHONE,
        kind=Discrepancy.Kind.OVERWRITTEN,
        expected=expected,
        actual=actual,
        evidence={
            "readback": {PHONE: actual},
            "Modified_By": {"id": "5725767000000000777", "name": "Maria (sales)"},
            "Modified_Time": timezone.now().isoformat(),
        },
        hint=HINTS[Discrepancy.Kind.OVERWRITTEN].format(field=PHONE),
    ).discrepancy


def group_params(d: Discrepancy) -> dict[str, str]:
    return {"kind": d.kind, "field": d.crm_field, "cause": bulk.cause_of(d.hint)}


def test_groups_join_hints_that_differ_only_in_a_record_s_particulars(ledger: Any) -> None:
    for n in range(3):
        contact = ledger.change(f"gone{n}@example.com", "sms_marketing", "opted_in", zoho_id=f"57257670{n}")
        discrepancy_record(
            contact_id=contact.pk,
            crm_field="",
            kind=Discrepancy.Kind.RECORD_MISSING,
            zoho_id=f"57257670{n}",
            hint=HINTS[Discrepancy.Kind.RECORD_MISSING].format(zoho_id=f"57257670{n}"),
        )
        denied(contact.pk)

    groups = bulk.discrepancy_groups()

    assert [(g.kind, g.crm_field, g.count) for g in groups] == [
        ("permission_denied", SMS, 3),
        ("record_missing", "", 3),
    ]
    assert (
        groups[1].cause
        == "The CRM record # does not exist (deleted or merged): link the contact to its new record."
    )
    assert groups[1].actions() == ["retry", "resolve"]


def test_a_bulk_retry_of_1000_discrepancies_goes_out_in_at_most_10_push_calls(
    ledger: Any, sim: Any, zoho: Any, engine_settings: Any, admin_user: Any, queued: list[int]
) -> None:
    # Given 1,000 contacts whose SMS opt-in Zoho refused, each with a CRM record.
    emails = [f"bulk{n}@example.com" for n in range(1000)]
    ids = sim.seed(contacts=[{"Last_Name": e.split("@")[0], "Email": e} for e in emails])["contacts"]
    contacts = [
        ledger.change(e, "sms_marketing", "opted_in", zoho_id=str(i))
        for e, i in zip(emails, ids, strict=True)
    ]
    for contact in contacts:
        denied(contact.pk, zoho_id=contact.zoho_id)
    group = bulk.discrepancy_groups()[0]
    assert group.count == 1000
    before = ZohoCall.objects.filter(operation="crm.update").count()

    # When an admin retries the whole group.
    action = bulk.bulk_action_request(
        action="retry", group=group, seen_count=group.count, seen_max_id=group.newest_id, by=admin_user
    )
    done = bulk.bulk_action_run(bulk_id=action.pk, zoho_factory=lambda: contextlib.nullcontext(zoho))

    # Then every contact went out again, 100 a call.
    updates = ZohoCall.objects.filter(operation="crm.update").order_by("id")[before:]
    assert len(updates) <= 10
    assert sum(call.records for call in updates) == 1000
    assert (done.status, done.matched, done.done, done.refused) == ("done", 1000, 1000, 0)
    assert SyncPush.objects.filter(contact__in=contacts).count() == 1000
    retried = Discrepancy.objects.filter(status="open")
    assert all(d.evidence.get("retry_since") for d in retried)


def test_resolve_all_asks_for_a_note_then_records_who_and_how_many(
    ledger: Any, client_for: Any, admin_user: Any, queued: list[int]
) -> None:
    rows = [denied(ledger.change(f"r{n}@example.com", "sms_marketing", "opted_in").pk) for n in range(3)]
    client = client_for(admin_user)
    page = client.get(reverse("sync:discrepancy_group"), group_params(rows[0]))
    assert page.status_code == 200 and "3</strong> open discrepancies" in page.content.decode()
    confirm_url = f"{reverse('sync:discrepancy_group_confirm')}?" + page.context["group_query"]
    form = {"action": "resolve", "seen_count": 3, "seen_max_id": rows[-1].pk}

    refused = client.post(confirm_url, {**form, "note": "  "})
    assert refused.status_code == 400
    assert "Write a note" in refused.content.decode()
    assert not BulkAction.objects.exists() and not queued

    answer = client.post(confirm_url, {**form, "note": "fixed the profile in Zoho"})
    action = BulkAction.objects.get()
    assert answer.status_code == 302 and answer["Location"] == action.get_absolute_url()
    assert (action.requested_by, action.seen_count, action.status) == (admin_user, 3, "queued")
    bulk.bulk_action_run(bulk_id=action.pk)
    action.refresh_from_db()
    assert (action.status, action.matched, action.done) == ("done", 3, 3)
    assert set(Discrepancy.objects.values_list("status", flat=True)) == {"resolved"}
    assert Discrepancy.objects.first().resolution.endswith(": fixed the profile in Zoho")
    detail = client.get(action.get_absolute_url()).content.decode()
    assert "3 resolved." in detail and "None of them is open any more." in detail


def test_a_group_that_changed_since_the_page_was_loaded_acts_only_on_what_still_matches(
    ledger: Any, admin_user: Any, queued: list[int], client_for: Any
) -> None:
    rows = [denied(ledger.change(f"c{n}@example.com", "sms_marketing", "opted_in").pk) for n in range(4)]
    group = bulk.discrepancy_group_get(
        **{"kind": rows[0].kind, "crm_field": SMS, "cause": bulk.cause_of(rows[0].hint)}
    )
    seen_count, seen_max_id = group.count, group.newest_id
    # Meanwhile one is resolved by a read-back and a new one opens.
    Discrepancy.objects.filter(pk=rows[0].pk).update(status="resolved")
    newcomer = denied(ledger.change("late@example.com", "sms_marketing", "opted_in").pk)

    confirm = client_for(admin_user).get(
        reverse("sync:discrepancy_group_confirm"),
        {**group_params(rows[1]), "action": "resolve", "seen_count": seen_count, "seen_max_id": seen_max_id},
    )
    assert "of the 4 you saw, 3 still match" in confirm.content.decode()
    action = bulk.bulk_action_request(
        action="resolve",
        group=bulk.discrepancy_group_get(kind=rows[1].kind, crm_field=SMS, cause=bulk.cause_of(rows[1].hint)),
        seen_count=seen_count,
        seen_max_id=seen_max_id,
        by=admin_user,
        note="done by hand",
    )
    bulk.bulk_action_run(bulk_id=action.pk)

    action.refresh_from_db()
    assert (action.seen_count, action.matched, action.done) == (4, 3, 3)
    assert Discrepancy.objects.get(pk=newcomer.pk).status == "open"
    page = client_for(admin_user).get(action.get_absolute_url()).content.decode()
    assert "3 of the 4 you saw still matched" in page


def test_record_as_the_person_s_decision_records_an_opt_out_only_toward_less_permission(
    ledger: Any, admin_user: Any, queued: list[int]
) -> None:
    out = ledger.change("maria@example.com", "phone_marketing", "opted_in")
    toward_more = ledger.change("more@example.com", "phone_marketing", "opted_in")
    good = overwritten(out.pk)
    wrong_way = overwritten(toward_more.pk, actual=True, expected=False)
    # Same group: the hint is the same; one row shows CRM giving more permission.
    group = bulk.discrepancy_group_get(kind="overwritten", crm_field=PHONE, cause=bulk.cause_of(good.hint))
    assert group.count == 2 and "record_decision" in group.actions()
    events_before = ConsentEvent.objects.count()

    action = bulk.bulk_action_request(
        action="record_decision",
        group=group,
        seen_count=2,
        seen_max_id=group.newest_id,
        by=admin_user,
    )
    bulk.bulk_action_run(bulk_id=action.pk)

    action.refresh_from_db()
    assert (action.matched, action.done, action.refused) == (2, 1, 1)
    assert ConsentEvent.objects.count() == events_before + 1
    event = ConsentEvent.objects.get(idempotency_key=f"crm-discrepancy:{good.pk}")
    assert (event.status, event.source, event.actor_user) == ("opted_out", Source.CRM, admin_user)
    assert event.shown_evidence["crm_evidence"]["Modified_By"]["name"] == "Maria (sales)"
    assert ConsentState.objects.get(contact=out, purpose__code="phone_marketing").status == "opted_out"
    assert ConsentState.objects.get(contact=toward_more, purpose__code="phone_marketing").status == "opted_in"
    assert Discrepancy.objects.get(pk=good.pk).status == "resolved"
    assert Discrepancy.objects.get(pk=wrong_way.pk).status == "open"


def test_an_action_the_kind_does_not_allow_is_refused_and_nothing_recorded(
    ledger: Any, admin_user: Any, queued: list[int]
) -> None:
    row = denied(ledger.change("x@example.com", "sms_marketing", "opted_in").pk)
    group = bulk.discrepancy_group_get(kind=row.kind, crm_field=SMS, cause=bulk.cause_of(row.hint))

    with pytest.raises(bulk.OperatorError, match="does not apply"):
        bulk.bulk_action_request(
            action="record_decision", group=group, seen_count=1, seen_max_id=row.pk, by=admin_user
        )
    assert not BulkAction.objects.exists() and not queued


@pytest.mark.parametrize("role", ["officer", "auditor", "outsider"])
def test_only_admins_may_act_on_a_group(
    role: str, request: Any, ledger: Any, client_for: Any, queued: list[int]
) -> None:
    row = denied(ledger.change("y@example.com", "sms_marketing", "opted_in").pk)
    client = client_for(request.getfixturevalue(role))
    url = f"{reverse('sync:discrepancy_group_confirm')}?kind={row.kind}&field={SMS}&cause=x"

    answer = client.post(url, {"action": "resolve", "seen_count": 1, "seen_max_id": row.pk, "note": "n"})

    assert answer.status_code == 403
    assert not BulkAction.objects.exists()


def test_a_crm_change_older_than_the_ledger_s_decision_is_not_recorded_as_the_person_s(
    ledger: Any, admin_user: Any, queued: list[int]
) -> None:
    contact = ledger.change("old@example.com", "phone_marketing", "opted_in")
    row = overwritten(contact.pk)
    row.evidence = {**row.evidence, "Modified_Time": "2020-01-01T00:00:00+00:00"}
    row.save(update_fields=["evidence"])
    group = bulk.discrepancy_group_get(kind="overwritten", crm_field=PHONE, cause=bulk.cause_of(row.hint))

    action = bulk.bulk_action_request(
        action="record_decision", group=group, seen_count=1, seen_max_id=row.pk, by=admin_user
    )
    bulk.bulk_action_run(bulk_id=action.pk)

    action.refresh_from_db()
    assert (action.done, action.refused) == (0, 1)
    assert ConsentState.objects.get(contact=contact, purpose__code="phone_marketing").status == "opted_in"
    assert Discrepancy.objects.get(pk=row.pk).status == "open"


def test_the_progress_page_reloads_itself_until_the_action_is_done(
    ledger: Any, admin_user: Any, client_for: Any, queued: list[int]
) -> None:
    row = denied(ledger.change("p@example.com", "sms_marketing", "opted_in").pk)
    group = bulk.discrepancy_group_get(kind=row.kind, crm_field=SMS, cause=bulk.cause_of(row.hint))
    action = bulk.bulk_action_request(
        action="resolve", group=group, seen_count=1, seen_max_id=row.pk, by=admin_user, note="n"
    )
    client = client_for(admin_user)

    queued_page = client.get(action.get_absolute_url())
    assert queued_page["Refresh"] == "2" and "Queued" in queued_page.content.decode()
    bulk.bulk_action_run(bulk_id=action.pk)
    done_page = client.get(action.get_absolute_url())
    assert "Refresh" not in done_page and "1 done of 1 (100 %)" in done_page.content.decode()


@pytest.mark.parametrize(
    "hint",
    [
        HINTS[Discrepancy.Kind.DUPLICATE].format(email="Jürgen.o'Neil+news@mail.example.co.uk"),
        HINTS[Discrepancy.Kind.RECORD_MISSING].format(zoho_id="5725767000000412001"),
        "CRM shows an opt-out the ledger does not: the field changed 3 s after our write (12.5 %).",
        "  Zoho never answered 4 writes  ",
        "",
    ],
)
def test_postgresql_finds_the_same_cause_as_python(ledger: Any, hint: str) -> None:
    contact = ledger.change("cause@example.com", "sms_marketing", "opted_in")
    row = discrepancy_record(contact_id=contact.pk, crm_field=SMS, kind="rejected", hint=hint).discrepancy

    in_sql = Discrepancy.objects.filter(pk=row.pk).annotate(cause=bulk._cause_sql()).get().cause

    assert in_sql == bulk.cause_of(hint)
