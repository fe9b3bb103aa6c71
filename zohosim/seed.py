"""Seeding: from JSON (``--seed-file``, ``POST /_sim/seed``) and a fast generator for large data sets."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from zohosim.config import SimConfig
from zohosim.state import ID_BASE, Campaign, MailingList, Recipient, Record, SimState, Subscriber

FIRST = (
    "Ada",
    "Ben",
    "Cleo",
    "Dan",
    "Eva",
    "Finn",
    "Gia",
    "Hugo",
    "Ines",
    "Jon",
    "Kai",
    "Lena",
    "Milo",
    "Nora",
)
LAST = (
    "Smith",
    "Jones",
    "Brown",
    "Garcia",
    "Muller",
    "Rossi",
    "Dubois",
    "Novak",
    "Silva",
    "Kowalski",
    "Berg",
)
GEN_ID_BASE = ID_BASE + 10_000_000_000


def generate(
    contacts: int = 1000,
    lists: int = 2,
    seed: int = 0,
    *,
    subscribers_per_list: int | None = None,
    campaigns: int = 1,
    opt_out_ratio: float = 0.1,
    details_ratio: float = 0.2,
    duplicates: int = 0,
    state: SimState | None = None,
    config: SimConfig | None = None,
) -> SimState:
    """Fill ``state`` (a new SimState when None) with generated contacts, lists and campaigns.

    Contacts get ids ``GEN_ID_BASE + 1000*i``; ``email`` is ``contact{i}@example.com``. 1,000,000 contacts
    take a few seconds and roughly 600 MB (see docs/zohosim.md for measured figures).
    """
    state = state or SimState(config)
    rng = random.Random(seed)
    rand = rng.random
    with state.lock:
        store = state.modules["Contacts"]
        start = (store.ids[-1] + 1_000) if store.ids else GEN_ID_BASE
        now = state.now()
        agent = state.agent_user_id
        n_first, n_last = len(FIRST), len(LAST)
        records = store.records
        ids = store.ids
        for i in range(contacts):
            rid = start + i * 1_000
            rec = Record(rid, now - 86_400 * 30 + i * 0.001, agent)
            rec.First_Name = FIRST[i % n_first]
            rec.Last_Name = LAST[(i // n_first) % n_last]
            rec.Email = f"contact{i}@example.com"
            rec.Phone = f"+4930{i:08d}"
            if rand() < opt_out_ratio:
                rec.Email_Opt_Out = True
            if rand() < details_ratio:
                rec.Data_Processing_Basis = "Obtained"
                rec.extra = {
                    "Data_Processing_Basis_Details": {
                        "id": str(rid + 7),
                        "Contact_Through_Email": not rec.Email_Opt_Out,
                        "Contact_Through_Phone": rand() < 0.5,
                        "Contact_Through_Survey": False,
                        "Contact_Through_Social": False,
                        "Consent_Date": "2024-01-15",
                        "Consent_Through": "Email",
                        "Data_Processing_Basis": "Obtained",
                    }
                }
            records[rid] = rec
            ids.append(rid)
        if ids and ids != sorted(ids):
            ids.sort()
        store._email_index = None
        for d in range(min(duplicates, contacts)):
            original = records[start + d * 1_000]
            state.add_record(
                "Contacts", Email=original.Email, First_Name=original.First_Name, Last_Name="Duplicate"
            )
        per_list = subscribers_per_list if subscribers_per_list is not None else min(contacts, 1000)
        for n in range(lists):
            key = f"3z{seed:04d}{n:04d}" + "a" * 8
            mlist = MailingList(key, f"Newsletter {n + 1}", now - 86_400 * 60)
            for i in range(min(per_list, contacts)):
                email = f"contact{i}@example.com"
                status = "unsub" if rand() < 0.05 else "bounce" if rand() < 0.02 else "active"
                mlist.subscribers[email] = Subscriber(
                    email=email,
                    status=status,
                    firstname=FIRST[i % n_first],
                    lastname=LAST[(i // n_first) % n_last],
                    added_time=now - 86_400 * 30 + i,
                    zuid=str(80_000_000 + i),
                    bounce_kind="hard" if status == "bounce" else None,
                )
            state.lists[key] = mlist
        if state.lists:
            first = next(iter(state.lists.values()))
            for c in range(campaigns):
                ckey = f"3c{seed:04d}{c:04d}" + "b" * 8
                camp = Campaign(ckey, f"Campaign {c + 1}", now - 86_400 * (c + 1), [first.listkey])
                for sub in first.subscribers.values():
                    rec_ = Recipient(sub.email, sub.zuid, sub.firstname, sub.lastname, camp.sent_time)
                    if sub.status == "bounce":
                        rec_.actions.add("senthardbounce")
                    elif sub.status == "unsub":
                        rec_.actions.add("optoutleads")
                    camp.recipients[sub.email.lower()] = rec_
                state.campaigns[ckey] = camp
    return state


def _add_list(state: SimState, spec: dict[str, Any]) -> str:
    now = state.now()
    key = spec.get("listkey") or f"3zlist{len(state.lists) + 1:04d}"
    mlist = state.lists.get(key) or MailingList(
        key, spec.get("name", spec.get("listname", key)), now, bool(spec.get("double_opt_in", False))
    )
    state.lists[key] = mlist
    for sub in spec.get("subscribers", []):
        _add_subscriber(state, mlist, sub)
    return key


def _add_subscriber(state: SimState, mlist: MailingList, sub: dict[str, Any] | str) -> None:
    if isinstance(sub, str):
        sub = {"email": sub}
    email = sub["email"]
    status = sub.get("status", "active")
    if status not in ("active", "unsub", "bounce"):
        raise ValueError(f"subscriber status {status!r}")
    mlist.subscribers[email.lower()] = Subscriber(
        email=email,
        status=status,
        firstname=sub.get("firstname", sub.get("First Name", "")),
        lastname=sub.get("lastname", sub.get("Last Name", "")),
        phone=sub.get("phone", ""),
        companyname=sub.get("companyname", ""),
        added_time=float(sub.get("added_time", state.now())),
        zuid=str(sub.get("zuid", 90_000_000 + len(mlist.subscribers))),
        bounce_kind=sub.get("bounce_kind", "hard" if status == "bounce" else None),
    )


def _add_campaign(state: SimState, spec: dict[str, Any]) -> str:
    key = spec.get("campaignkey") or f"3ccamp{len(state.campaigns) + 1:04d}"
    listkeys = list(spec.get("listkeys", []))
    camp = Campaign(key, spec.get("name", key), float(spec.get("sent_time", state.now())), listkeys)
    recipients = spec.get("recipients")
    if recipients is None:
        recipients = [
            {"email": s.email, "firstname": s.firstname, "lastname": s.lastname}
            for lk in listkeys
            if lk in state.lists
            for s in state.lists[lk].subscribers.values()
        ]
    for r in recipients:
        if isinstance(r, str):
            r = {"email": r}
        rec = Recipient(
            r["email"],
            str(r.get("contactid", 70_000_000 + len(camp.recipients))),
            r.get("firstname", ""),
            r.get("lastname", ""),
            camp.sent_time,
        )
        rec.actions.update(r.get("actions", []))
        camp.recipients[r["email"].lower()] = rec
    state.campaigns[key] = camp
    return key


def load(state: SimState, data: dict[str, Any]) -> dict[str, Any]:
    """Apply a seed document; returns the ids created. See docs/zohosim.md for the format."""
    summary: dict[str, Any] = {}
    with state.lock:
        if data.get("config"):
            state.config.update(data["config"])
        if data.get("edition"):
            state.config.update({"edition": data["edition"]})
        users = data.get("users")
        if isinstance(users, int):
            state.config.users = users
        elif isinstance(users, list):
            for u in users:
                state.add_user(
                    str(u["id"]), u["name"], u.get("email", ""), profile=u.get("profile"), role=u.get("role")
                )
        if data.get("generate"):
            generate(state=state, **data["generate"])
            summary["generated"] = data["generate"]
        for module in ("contacts", "leads"):
            rows = data.get(module)
            if isinstance(rows, int):
                generate(contacts=rows, lists=0, campaigns=0, state=state)
                summary[module] = rows
            elif rows:
                module_name = module.capitalize()
                summary[module] = [state.add_record(module_name, **dict(r)) for r in rows]
        if data.get("lists"):
            summary["lists"] = [_add_list(state, spec) for spec in data["lists"]]
        subs = data.get("subscribers")
        if isinstance(subs, dict):
            for key, rows in subs.items():
                mlist = state.lists.get(key) or state.lists[_add_list(state, {"listkey": key})]
                for row in rows:
                    _add_subscriber(state, mlist, row)
        elif isinstance(subs, list):
            for row in subs:
                key = row["listkey"]
                mlist = state.lists.get(key) or state.lists[_add_list(state, {"listkey": key})]
                _add_subscriber(state, mlist, row)
        if data.get("campaigns"):
            summary["campaigns"] = [_add_campaign(state, spec) for spec in data["campaigns"]]
        if data.get("duplicate_email"):
            summary["duplicate_email"] = state.faults.set("duplicate_email", data["duplicate_email"])
    return summary


def load_file(state: SimState, path: str | Path) -> dict[str, Any]:
    return load(state, json.loads(Path(path).read_text()))
