"""Zoho Campaigns API v1.1: always HTTP 200 with a code/status envelope; per-method call locks."""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.auth import check_token
from zohosim.guard import sim_state
from zohosim.state import MailingList, Recipient, SimState, Subscriber

bp = Blueprint("campaigns", __name__, url_prefix="/api/v1.1")

LOCKED_METHODS = ("getlistsubscribers", "listunsubscribe", "contactdonotmail", "listsubscriberscount")
# Methods whose envelope carries ``code`` as the string "0" (the others send the integer 0).
STRING_CODE_METHODS = frozenset(
    {"getlistsubscribers", "getmailinglists", "listsubscriberscount", "getcampaignrecipientsdata"}
)
# listsubscriberscount spells the envelope keys ``Code`` and ``URI`` (as in Airbyte's schema).
CAPITALISED_METHODS = frozenset({"listsubscriberscount"})
ACTIONS = (
    "sentcontacts", "openedleads", "optoutleads", "spamleads", "unopenedleads", "clickedleads",
    "senthardbounce", "sentsoftbounce", "unsentleads",
)  # fmt: skip
LIST_STATUSES = ("active", "recent", "most recent", "unsub", "bounce", "spam")
DEFAULT_RANGE = 20


def _envelope(method: str, code: int | str, status: str, message: str, **extra: Any) -> Response:
    code_value: int | str = str(code) if method in STRING_CODE_METHODS else int(code)
    g.code = str(code)
    caps = method in CAPITALISED_METHODS
    body: dict[str, Any] = {
        "Code" if caps else "code": code_value,
        "status": status,
        "message": message,
        **extra,
        "URI" if caps else "uri": request.path,
        "version": "1.1",
    }
    return jsonify(body)  # HTTP 200 even for errors


def _error(method: str, code: int | str, message: str) -> Response:
    return _envelope(method, code, "error", message)


def _gate(method: str) -> Response | None:
    """Auth, faults and the per-method lock. Returns the error envelope to send, or None."""
    state = sim_state()
    op = f"campaigns.{method}"
    g.op = op
    faults = state.faults
    if faults.pick("wrong_dc", op) is not None:
        return _error(method, 1007, "Unauthorized access. Please check the OAuth token.")
    scheme, _, value = (request.headers.get("Authorization") or "").partition(" ")
    if scheme != "Zoho-oauthtoken" or not check_token(state, value.strip()):
        return _error(method, 1007, "Unauthorized access. Please check the OAuth token.")
    if faults.pick("expire_tokens", op) is not None:
        with state.lock:
            state.tokens.pop(value.strip(), None)
        return _error(method, 1007, "Unauthorized access. Please check the OAuth token.")
    cfg = state.config
    with state.lock:
        now = state.now()
        until = state.campaign_locks.get(method, 0.0)
        if until > now:
            return _error(method, cfg.campaigns_lock_code, cfg.campaigns_lock_message)
        if method in LOCKED_METHODS:
            calls = state.campaign_calls.setdefault(method, deque())
            while calls and calls[0] <= now - cfg.campaigns_method_window_s:
                calls.popleft()
            calls.append(now)
            if len(calls) > cfg.campaigns_method_limit:
                state.campaign_locks[method] = now + cfg.campaigns_lock_s
                calls.clear()
                return _error(method, cfg.campaigns_lock_code, cfg.campaigns_lock_message)
    if faults.pick("rate_limit", op) is not None:
        return _error(method, cfg.campaigns_lock_code, cfg.campaigns_lock_message)
    slow = faults.pick("slow", op)
    if slow is not None:
        time.sleep(float(slow.get("delay_s", 1.0)))
    if faults.pick("server_error", op) is not None:
        g.code = "500"
        resp = jsonify({"code": "500", "status": "error", "message": "Internal Server Error"})
        resp.status_code = 500
        return resp
    state.quota.calls_by_op[op] += 1
    return None


def _param(name: str) -> str | None:
    value = request.values.get(name)
    return value.strip() if isinstance(value, str) else None


def _paging() -> tuple[int, int]:
    try:
        start = max(1, int(_param("fromindex") or 1))
    except ValueError:
        start = 1
    try:
        count = max(1, int(_param("range") or DEFAULT_RANGE))
    except ValueError:
        count = DEFAULT_RANGE
    return start, count


def _contactinfo() -> dict[str, Any] | None:
    raw = _param("contactinfo")
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("Contact Email"), str):
        return None
    return info


def _ms(ts: float) -> str:
    return str(int(ts * 1000))


def _list(state: SimState, method: str) -> MailingList | Response:
    key = _param("listkey")
    mlist = state.lists.get(key or "")
    if mlist is None:
        return _error(method, 2501, "Invalid list key.")
    return mlist


@bp.route("/json/listsubscribe", methods=["GET", "POST"])
def listsubscribe() -> Response:
    method = "listsubscribe"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    with state.lock:
        mlist = _list(state, method)
        if isinstance(mlist, Response):
            return mlist
        info = _contactinfo()
        if info is None:
            return _error(
                method, 2001, 'Invalid contactinfo: a JSON object with "Contact Email" is required.'
            )
        email = info["Contact Email"].strip()
        key = email.lower()
        sub = mlist.subscribers.get(key)
        if sub is None:
            sub = Subscriber(
                email=email, added_time=state.now(), zuid=str(90_000_000 + len(mlist.subscribers))
            )
            mlist.subscribers[key] = sub
        sub.firstname = info.get("First Name", sub.firstname)
        sub.lastname = info.get("Last Name", sub.lastname)
        sub.phone = info.get("Phone", sub.phone)
        sub.companyname = info.get("Company Name", sub.companyname)
        if sub.status != "bounce" and key not in state.donotmail:
            sub.status = "active"
    if mlist.double_opt_in:
        return _envelope(method, 0, "success", "A confirmation email has been sent to the user.")
    return _envelope(method, 0, "success", "User successfully subscribed.")


@bp.route("/json/listunsubscribe", methods=["GET", "POST"])
def listunsubscribe() -> Response:
    method = "listunsubscribe"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    with state.lock:
        mlist = _list(state, method)
        if isinstance(mlist, Response):
            return mlist
        info = _contactinfo()
        if info is None:
            return _error(method, 2103, "Contact does not exist.")
        sub = mlist.subscribers.get(info["Contact Email"].strip().lower())
        if sub is None:
            return _error(method, 2103, "Contact does not exist.")
        if sub.status == "active":
            sub.status = "unsub"
    return _envelope(method, 0, "success", "User successfully unsubscribed.")


@bp.route("/json/contactdonotmail", methods=["GET", "POST"])
def contactdonotmail() -> Response:
    method = "contactdonotmail"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    info = _contactinfo()
    if info is None:
        return _error(method, 2103, "Contact does not exist.")
    with state.lock:
        key = info["Contact Email"].strip().lower()
        state.donotmail.add(key)
        for mlist in state.lists.values():
            sub = mlist.subscribers.get(key)
            if sub is not None and sub.status == "active":
                sub.status = "unsub"
    return _envelope(method, 0, "success", "Contact moved to Do-Not-Mail successfully.")


def _select(mlist: MailingList, status: str) -> list[Subscriber]:
    if status in ("active", "recent", "most recent"):
        return [s for s in mlist.subscribers.values() if s.status == "active"]
    return [s for s in mlist.subscribers.values() if s.status == status]


@bp.route("/getlistsubscribers", methods=["GET", "POST"])
def getlistsubscribers() -> Response:
    method = "getlistsubscribers"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    status = (_param("status") or "active").lower()
    if status not in LIST_STATUSES:
        return _error(method, 2502, "Error while listing contacts: invalid status.")
    start, count = _paging()
    with state.lock:
        mlist = _list(state, method)
        if isinstance(mlist, Response):
            return mlist
        rows = _select(mlist, status)
        desc = (_param("sort") or "asc").lower() == "desc" or status in ("recent", "most recent")
        rows.sort(key=lambda s: (s.added_time, s.email), reverse=desc)
        page = rows[start - 1 : start - 1 + count]
        details = [
            {
                "contact_email": s.email,
                "firstname": s.firstname,
                "lastname": s.lastname,
                "companyname": s.companyname,
                "phone": s.phone,
                "zuid": s.zuid,
                "added_time": _ms(s.added_time),
            }
            for s in page
        ]
    return _envelope(method, 0, "success", "Data fetched successfully.", list_of_details=details)


@bp.route("/listsubscriberscount", methods=["GET", "POST"])
def listsubscriberscount() -> Response:
    method = "listsubscriberscount"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    status = (_param("status") or "active").lower()
    with state.lock:
        mlist = _list(state, method)
        if isinstance(mlist, Response):
            return mlist
        n = len(_select(mlist, status))
    return _envelope(method, 0, "success", "Data fetched successfully.", no_of_contacts=n)


@bp.route("/getmailinglists", methods=["GET", "POST"])
def getmailinglists() -> Response:
    method = "getmailinglists"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    start, count = _paging()
    with state.lock:
        lists = sorted(
            state.lists.values(), key=lambda m: m.created, reverse=(_param("sort") or "asc") == "desc"
        )
        details = [
            {
                "listkey": m.listkey,
                "listname": m.name,
                "listtype": "Double Opt-In" if m.double_opt_in else "Single Opt-In",
                "noofcontacts": str(sum(1 for s in m.subscribers.values() if s.status == "active")),
                "noofunsubcnt": str(sum(1 for s in m.subscribers.values() if s.status == "unsub")),
                "noofbouncecnt": str(sum(1 for s in m.subscribers.values() if s.status == "bounce")),
                "date": _ms(m.created),
                "lockstatus": "unlocked",
            }
            for m in lists[start - 1 : start - 1 + count]
        ]
    return _envelope(method, 0, "success", "Data fetched successfully.", list_of_details=details)


@bp.route("/recentsentcampaigns", methods=["GET", "POST"])
def recentsentcampaigns() -> Response:
    method = "recentsentcampaigns"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    start, count = _paging()
    with state.lock:
        camps = sorted(state.campaigns.values(), key=lambda c: c.sent_time, reverse=True)
        rows = [
            {
                "campaign_key": c.campaignkey,
                "campaign_name": c.name,
                "campaign_status": "Sent",
                "sent_time": _ms(c.sent_time),
                "created_time": _ms(c.sent_time),
                "listkeys": c.listkeys,
            }
            for c in camps[start - 1 : start - 1 + count]
        ]
    return _envelope(method, 0, "success", "Data fetched successfully.", recent_campaigns=rows)


def _recipient_status(state: SimState, r: Recipient) -> str:
    if "senthardbounce" in r.actions:
        return "bounce"
    if "optoutleads" in r.actions or r.email.lower() in state.donotmail:
        return "unsub"
    return "active"


@bp.route("/getcampaignrecipientsdata", methods=["GET", "POST"])
def getcampaignrecipientsdata() -> Response:
    method = "getcampaignrecipientsdata"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    action = (_param("action") or "").lower()
    start, count = _paging()
    with state.lock:
        camp = state.campaigns.get(_param("campaignkey") or "")
        if camp is None:
            return _error(method, 6002, "Invalid campaign key.")
        if action not in ACTIONS:
            return _error(method, 1004, "Invalid action.")
        if action == "unopenedleads":
            rows = [r for r in camp.recipients.values() if "openedleads" not in r.actions]
        else:
            rows = [r for r in camp.recipients.values() if action in r.actions]
        details = [
            {
                "contactemailaddress": r.email,
                "contactid": r.contactid,
                "contactfn": r.firstname,
                "contactln": r.lastname,
                "contactstatus": _recipient_status(state, r),
                "sent_time": _ms(r.sent_time),
                "sentdate": state.fmt(r.sent_time),
            }
            for r in rows[start - 1 : start - 1 + count]
        ]
    return _envelope(method, 0, "success", "Data fetched successfully.", list_of_details=details)


@bp.route("/addlistsubscribersinbulk", methods=["GET", "POST"])
def addlistsubscribersinbulk() -> Response:
    method = "addlistsubscribersinbulk"
    blocked = _gate(method)
    if blocked is not None:
        return blocked
    state = sim_state()
    emails = [e.strip() for e in (_param("emailids") or "").split(",") if e.strip()]
    if not emails or len(emails) > 10:
        return _error(method, 2001, "Between 1 and 10 email ids are allowed.")
    with state.lock:
        mlist = _list(state, method)
        if isinstance(mlist, Response):
            return mlist
        for email in emails:
            key = email.lower()
            if key not in mlist.subscribers:
                mlist.subscribers[key] = Subscriber(
                    email=email, added_time=state.now(), zuid=str(90_000_000 + len(mlist.subscribers))
                )
    return _envelope(method, 0, "success", "Contacts added successfully.")


# ----- simulated people (used by /_sim)


def _lists_with(state: SimState, email: str, listkey: str | None) -> list[MailingList]:
    if listkey is not None:
        mlist = state.lists.get(listkey)
        if mlist is None:
            raise KeyError(listkey)
        return [mlist]
    return [m for m in state.lists.values() if email.lower() in m.subscribers]


def _campaign_for(state: SimState, email: str, campaignkey: str | None) -> Recipient | None:
    key = email.lower()
    if campaignkey is not None:
        camp = state.campaigns[campaignkey]
    else:
        with_recipient = [c for c in state.campaigns.values() if key in c.recipients]
        if not with_recipient:
            return None
        camp = max(with_recipient, key=lambda c: c.sent_time)
    if key not in camp.recipients:
        camp.recipients[key] = Recipient(
            email, str(70_000_000 + len(camp.recipients)), sent_time=camp.sent_time
        )
    return camp.recipients[key]


def sim_unsubscribe(
    state: SimState, email: str, *, listkey: str | None = None, campaignkey: str | None = None
) -> dict[str, Any]:
    """A person clicks "unsubscribe": the list status becomes unsub; the campaign gets an optoutleads row."""
    with state.lock:
        lists = _lists_with(state, email, listkey)
        for mlist in lists:
            sub = mlist.subscribers.get(email.lower())
            if sub is None:
                sub = Subscriber(email=email, added_time=state.now())
                mlist.subscribers[email.lower()] = sub
            sub.status = "unsub"
        recipient = _campaign_for(state, email, campaignkey)
        if recipient is not None:
            recipient.actions.add("optoutleads")
        return {
            "email": email,
            "lists": [m.listkey for m in lists],
            "campaign_recorded": recipient is not None,
        }


def sim_bounce(
    state: SimState,
    email: str,
    *,
    kind: str = "hard",
    listkey: str | None = None,
    campaignkey: str | None = None,
) -> dict[str, Any]:
    """A hard bounce moves the list status to bounce; a soft bounce only shows in the campaign report."""
    with state.lock:
        lists = _lists_with(state, email, listkey)
        for mlist in lists:
            sub = mlist.subscribers.get(email.lower())
            if sub is None:
                continue
            sub.bounce_kind = kind
            if kind == "hard":
                sub.status = "bounce"
        recipient = _campaign_for(state, email, campaignkey)
        if recipient is not None:
            recipient.actions.add("senthardbounce" if kind == "hard" else "sentsoftbounce")
        return {
            "email": email,
            "kind": kind,
            "lists": [m.listkey for m in lists],
            "campaign_recorded": recipient is not None,
        }
