"""Helpers for the tests of Leads as well as Contacts (``ZOHO_MODULES=Contacts,Leads``): Leads made
and edited in zohosim, a Lead converted through Zoho's Convert Lead API, every waiting push sent."""

from __future__ import annotations

from typing import Any

from sync.outbox import outbox_claim
from sync.push import outbox_batch_push
from sync.verify import pushes_verify_due
from sync.zoho.transport import Request
from tests.sync.conftest import NO_CONSENT

# A CRM user (not our API user, not a workflow).
AGENT = {"id": "5725767000000000003", "name": "Maria Agent"}


def push_all(zoho: Any) -> None:
    while claim := outbox_claim(worker="test"):
        outbox_batch_push(claim=claim, zoho=zoho)


def add_lead(sim: Any, email: str, **fields: Any) -> str:
    values = {**NO_CONSENT, "Last_Name": email.split("@")[0], "Email": email, **fields}
    response = sim.http.post("/_sim/contacts", params={"module": "Leads"}, json={"fields": values})
    assert response.status_code < 400, response.text
    return str(response.json()["id"])


def lead(sim: Any, record_id: str) -> dict[str, Any]:
    response = sim.http.get(f"/_sim/contacts/{record_id}", params={"module": "Leads"})
    assert response.status_code == 200, response.text
    return dict(response.json())


def lead_edit(sim: Any, record_id: str, **fields: Any) -> None:
    """A CRM user edits the Lead in Zoho's UI."""
    response = sim.http.post(
        f"/_sim/contacts/{record_id}", params={"module": "Leads"}, json={"fields": fields, "user": AGENT}
    )
    assert response.status_code < 400, response.text


def convert(zoho: Any, lead_id: str, *, into: str | None = None) -> str:
    """A CRM user converts the Lead (Zoho's Convert Lead API), into a new Contact or into the
    Contact `into`: the Contact it became."""
    options: dict[str, Any] = {"overwrite": True}
    if into is not None:
        options["Contacts"] = {"id": into}
    response = zoho.crm.transport.call(
        Request(
            service="crm",
            operation="crm.convert",
            method="POST",
            host="api",
            path=f"/crm/v8/Leads/{lead_id}/actions/convert",
            json={"data": [options]},
            credits=5,
        )
    )
    return str(response.body["data"][0]["details"]["Contacts"]["id"])


def person_with_records(
    sim: Any, ledger: Any, email: str, *, contact_too: bool = True, lead_reset: bool = False
) -> tuple[Any, str, str]:
    """A person who opted in to SMS, with a Lead (whose SMS consent a workflow resets after each
    write when `lead_reset`) and, when `contact_too`, a Contact of the same address, not pushed
    yet: (the ledger contact, the Contact record or "", the Lead)."""
    contact_record = (
        str(sim.add_contact(**{**NO_CONSENT, "Last_Name": "P", "Email": email})) if contact_too else ""
    )
    lead_id = add_lead(sim, email)
    if lead_reset:
        sim.fault("workflow_reset", field="SMS_Opt_In", value=False, delay_s=0, record_ids=[lead_id])
    person = ledger.change(email, "sms_marketing", "opted_in")
    return person, contact_record, lead_id


def lead_converted(sim: Any, ledger: Any, zoho: Any, email: str) -> tuple[Any, str, str]:
    """A person whose only record, a Lead, holds their opt-in (pushed and verified), then is
    converted to a new Contact: (the ledger contact, the Lead, the Contact it became)."""
    person, _, lead_id = person_with_records(sim, ledger, email, contact_too=False)
    push_all(zoho)
    pushes_verify_due(zoho=zoho)
    return person, lead_id, convert(zoho, lead_id)
