"""The seeds' story end to end, with real Celery workers on Redis and zohosim over HTTP.

The API user may not edit the email consent fields (Zoho accepts the write and
ignores them), and a workflow rule resets phone consent right after our write:
SMS changes verify; email and phone become discrepancies with the right kinds and
hints and, after three failed retries, exactly one alert each.
"""

from __future__ import annotations

from typing import Any

from sync.models import Alert, Discrepancy, SyncPush

EMAIL_FIELDS = ["Email_Opt_Out", "Data_Processing_Basis_Details.Contact_Through_Email"]
PHONE = "Data_Processing_Basis_Details.Contact_Through_Phone"


def test_sms_verifies_while_email_and_phone_are_flagged_and_alerted_once(
    workers: Any, ledger: Any, crm: Any, sim: Any
) -> None:
    # Given the seeds' Zoho org
    sim.fault("field_no_permission", fields=EMAIL_FIELDS, mode="silent")
    sim.fault("workflow_reset", field=PHONE, value=False, delay_s=0)
    sms = ledger.change("sms@example.com", "sms_marketing", "opted_in", zoho_id=crm("sms@example.com"))
    email = ledger.change(
        "email@example.com", "email_marketing", "opted_in", zoho_id=crm("email@example.com")
    )
    phone = ledger.change(
        "phone@example.com", "phone_marketing", "opted_in", zoho_id=crm("phone@example.com")
    )

    # When the workers run
    workers.start(2)
    workers.wait_until(
        lambda: (
            Alert.objects.count() >= 3
            and SyncPush.objects.filter(contact=sms, verification="verified").exists()
        ),
        "three alerts and the SMS change verified",
    )

    # Then SMS is verified, with no discrepancy
    assert not Discrepancy.objects.filter(contact=sms).exists()
    assert sim.contact(SyncPush.objects.filter(contact=sms).first().zoho_id)["SMS_Opt_In"] is True
    # email: not applied (field-level security), one per field, hint names the field
    for crm_field in EMAIL_FIELDS:
        d = Discrepancy.objects.get(contact=email, crm_field=crm_field)
        assert d.kind == Discrepancy.Kind.NOT_APPLIED and d.status == Discrepancy.Status.OPEN
        assert f"edit rights on {crm_field}" in d.hint
        assert d.retries == 3 and d.next_retry_at is None
        assert d.evidence["zoho_answer"]["code"] == "SUCCESS" and d.evidence["Modified_By"]
    # phone: overwritten by the workflow after our write
    d = Discrepancy.objects.get(contact=phone, crm_field=PHONE)
    assert d.kind == Discrepancy.Kind.OVERWRITTEN
    assert f"workflow rules on {PHONE}" in d.hint
    assert d.evidence["Modified_By"]["name"].startswith("Workflow")
    assert d.retries == 3
    # exactly one alert per discrepancy, emailed
    discrepancies = Discrepancy.objects.filter(status="open")
    assert discrepancies.count() == 3
    assert sorted(Alert.objects.values_list("discrepancy_id", flat=True)) == sorted(
        d.pk for d in discrepancies
    )
    assert all(a.kind == Alert.Kind.RETRIES_EXHAUSTED for a in Alert.objects.all())
    # each contact was pushed once and retried three times, never more
    assert SyncPush.objects.filter(contact=email).count() == 4
    assert SyncPush.objects.filter(contact=phone).count() == 4
    # a few more rounds add nothing
    for _ in range(5):
        workers.beat()
    workers.wait_until(lambda: True, "")
    assert Alert.objects.count() == 3
