"""Zoho Campaigns API v1.1: always HTTP 200 with a code/status envelope; per-method call locks."""

from __future__ import annotations

import functools
import json
import re
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.errors import ZohoError
from zohosim.guard import Api, F, api_call, sim_state
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
# ``status`` of getlistsubscribers and of listsubscriberscount, as zoho-api.md section 7 lists them
# (``spam`` only for the count).
LIST_STATUSES = ("active", "recent", "most recent", "unsub", "bounce")
COUNT_STATUSES = ("active", "unsub", "bounce", "spam")
DEFAULT_RANGE = 20
# The HTTP method(s) zoho-api.md section 7 gives each method; any other is refused like a wrong URL.
GET = ("GET",)
POST = ("POST",)
GET_OR_POST = ("GET", "POST")
POSITIVE_INT = re.compile(r"[0-9]+")
# Messages of the empty-page codes (``campaigns_empty_page_codes``).
EMPTY_PAGE_MESSAGES = {
    "2203": "No contacts found in the list.",
    "6302": "No contacts found for this campaign.",
}


def _method() -> str:
    """The Campaigns method being answered (``api_call`` sets ``g.op`` to ``campaigns.<method>``)."""
    return str(g.op).removeprefix("campaigns.")


def _envelope_body(code: int | str, status: str, message: str, **extra: Any) -> dict[str, Any]:
    method = _method()
    code_value: int | str = str(code) if method in STRING_CODE_METHODS else int(code)
    caps = method in CAPITALISED_METHODS
    return {
        "Code" if caps else "code": code_value,
        "status": status,
        "message": message,
        **extra,
        "URI" if caps else "uri": request.path,
        "version": "1.1",
    }


def _envelope(message: str, **extra: Any) -> Response:
    """A success envelope."""
    g.code = "0"
    return jsonify(_envelope_body(0, "success", message, **extra))


def _error(code: int | str, message: str) -> ZohoError:
    """An error envelope to raise; HTTP 200, as Campaigns answers errors."""
    return ZohoError(str(code), body=_envelope_body(code, "error", message), status=200)


class CampaignsApi(Api):
    """Campaigns: refusals as error envelopes; the per-method lock; no credits."""

    def __init__(self, method: str) -> None:
        super().__init__(f"campaigns.{method}")
        self.method = method

    def invalid_token(self) -> ZohoError:
        return _error(1007, "Unauthorized access. Please check the OAuth token.")

    def rate_limited(self) -> ZohoError:
        cfg = sim_state().config
        return _error(cfg.campaigns_lock_code, cfg.campaigns_lock_message)

    def server_error(self) -> ZohoError:
        return ZohoError(
            "500", body={"code": "500", "status": "error", "message": "Internal Server Error"}, status=500
        )

    def throttle(self, state: SimState) -> None:
        cfg = state.config
        method = self.method
        with state.lock:
            now = state.now()
            until = state.campaign_locks.get(method, 0.0)
            if until > now:
                raise self.rate_limited()
            if method in LOCKED_METHODS:
                calls = state.campaign_calls.setdefault(method, deque())
                while calls and calls[0] <= now - cfg.campaigns_method_window_s:
                    calls.popleft()
                calls.append(now)
                if len(calls) > cfg.campaigns_method_limit:
                    state.campaign_locks[method] = now + cfg.campaigns_lock_s
                    calls.clear()
                    raise self.rate_limited()


def _wrong_method(method: str, allowed: tuple[str, ...]) -> Response:
    """A method Zoho does not serve on this path: refused as a wrong URL (code 1004, HTTP 200),
    before auth and the lock count, as an unknown path is."""
    g.op = f"campaigns.{method}"
    return _error(
        1004, f"Invalid URL: {method} takes {' or '.join(allowed)}, not {request.method}."
    ).response()


def _require_json() -> None:
    """``resfmt=JSON`` on every call (zoho-api.md section 7: every method takes ``resfmt=JSON|XML``).
    Without it Zoho may answer XML, which neither the sim nor the client speaks."""
    resfmt = _param("resfmt")
    code = sim_state().config.campaigns_bad_param_code
    if resfmt is None or resfmt == "":
        raise _error(code, "Missing resfmt: zohosim answers resfmt=JSON only (Zoho may answer XML).")
    if resfmt == "XML":
        raise _error(code, "resfmt=XML is not implemented by zohosim: send resfmt=JSON.")
    if resfmt != "JSON":
        raise _error(code, f"Invalid resfmt {resfmt!r}: JSON or XML.")


def campaigns_route(path: str, methods: tuple[str, ...]) -> Callable[[F], F]:
    """Route ``/api/v1.1<path>`` to a view guarded by the shared pipeline; the Campaigns method is
    the last part of the path. ``methods`` are the HTTP methods the doc gives it: another is
    refused as a wrong URL; a call without ``resfmt=JSON`` is refused after the auth check."""

    def decorate(view: F) -> F:
        method = path.rsplit("/", 1)[-1]

        @functools.wraps(view)
        def checked(*args: Any, **kwargs: Any) -> Any:
            _require_json()
            return view(*args, **kwargs)

        guarded = api_call(CampaignsApi(method))(checked)

        @functools.wraps(view)
        def routed(*args: Any, **kwargs: Any) -> Any:
            if request.method not in methods:
                return _wrong_method(method, methods)
            return guarded(*args, **kwargs)

        bp.route(path, methods=["GET", "POST"])(routed)
        return routed  # type: ignore[return-value]

    return decorate


def _param(name: str) -> str | None:
    value = request.values.get(name)
    return value.strip() if isinstance(value, str) else None


def _positive(name: str, default: int) -> int:
    raw = _param(name)
    if raw is None:
        return default
    if not POSITIVE_INT.fullmatch(raw) or int(raw) < 1:
        code = sim_state().config.campaigns_bad_param_code
        raise _error(code, f"Invalid {name} {raw!r}: a positive integer is required.")
    return int(raw)


def _paging() -> tuple[int, int]:
    """``fromindex`` (1-based) and ``range``: absent, their defaults; not a positive integer, an
    error; ``range`` above ``campaigns_max_range`` refused or capped (``campaigns_range_over_max``)."""
    cfg = sim_state().config
    start = _positive("fromindex", 1)
    count = _positive("range", DEFAULT_RANGE)
    if count > cfg.campaigns_max_range:
        if cfg.campaigns_range_over_max != "cap":
            raise _error(
                cfg.campaigns_bad_param_code,
                f"Invalid range {count}: at most {cfg.campaigns_max_range} rows a page.",
            )
        count = cfg.campaigns_max_range
    return start, count


def _page(key: str, details: list[dict[str, Any]]) -> Response:
    """A page of rows; an empty one answers the method's empty-page error when it has one
    (``campaigns_empty_page_codes``)."""
    if not details:
        code = sim_state().config.campaigns_empty_page_codes.get(_method(), "")
        if code:
            raise _error(code, EMPTY_PAGE_MESSAGES.get(code, "No data found."))
    return _envelope("Data fetched successfully.", **{key: details})


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


def _list(state: SimState) -> MailingList:
    mlist = state.lists.get(_param("listkey") or "")
    if mlist is None:
        raise _error(2501, "Invalid list key.")
    return mlist


@campaigns_route("/json/listsubscribe", POST)
def listsubscribe() -> Response:
    state = sim_state()
    with state.lock:
        mlist = _list(state)
        info = _contactinfo()
        if info is None:
            raise _error(2001, 'Invalid contactinfo: a JSON object with "Contact Email" is required.')
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
        return _envelope("A confirmation email has been sent to the user.")
    return _envelope("User successfully subscribed.")


@campaigns_route("/json/listunsubscribe", POST)
def listunsubscribe() -> Response:
    state = sim_state()
    with state.lock:
        mlist = _list(state)
        info = _contactinfo()
        if info is None:
            raise _error(2103, "Contact does not exist.")
        sub = mlist.subscribers.get(info["Contact Email"].strip().lower())
        if sub is None:
            raise _error(2103, "Contact does not exist.")
        if sub.status == "active":
            sub.status = "unsub"
    return _envelope("User successfully unsubscribed.")


@campaigns_route("/json/contactdonotmail", POST)
def contactdonotmail() -> Response:
    state = sim_state()
    info = _contactinfo()
    if info is None:
        raise _error(2103, "Contact does not exist.")
    with state.lock:
        key = info["Contact Email"].strip().lower()
        state.donotmail.add(key)
        for mlist in state.lists.values():
            sub = mlist.subscribers.get(key)
            if sub is not None and sub.status == "active":
                sub.status = "unsub"
    return _envelope("Contact moved to Do-Not-Mail successfully.")


def _select(mlist: MailingList, status: str) -> list[Subscriber]:
    if status in ("active", "recent", "most recent"):
        return [s for s in mlist.subscribers.values() if s.status == "active"]
    return [s for s in mlist.subscribers.values() if s.status == status]


@campaigns_route("/getlistsubscribers", GET_OR_POST)
def getlistsubscribers() -> Response:
    state = sim_state()
    status = (_param("status") or "active").lower()
    if status not in LIST_STATUSES:
        raise _error(
            2502, f"Error while listing contacts: invalid status; one of {', '.join(LIST_STATUSES)}."
        )
    start, count = _paging()
    with state.lock:
        mlist = _list(state)
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
    return _page("list_of_details", details)


@campaigns_route("/listsubscriberscount", GET)
def listsubscriberscount() -> Response:
    state = sim_state()
    status = (_param("status") or "active").lower()
    if status not in COUNT_STATUSES:
        raise _error(
            2502, f"Error while counting contacts: invalid status; one of {', '.join(COUNT_STATUSES)}."
        )
    with state.lock:
        mlist = _list(state)
        n = len(_select(mlist, status))
    return _envelope("Data fetched successfully.", no_of_contacts=n)


@campaigns_route("/getmailinglists", GET)
def getmailinglists() -> Response:
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
    return _page("list_of_details", details)


@campaigns_route("/recentsentcampaigns", GET)
def recentsentcampaigns() -> Response:
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
    return _page("recent_campaigns", rows)


def _recipient_status(state: SimState, r: Recipient) -> str:
    if "senthardbounce" in r.actions:
        return "bounce"
    if "optoutleads" in r.actions or r.email.lower() in state.donotmail:
        return "unsub"
    return "active"


@campaigns_route("/getcampaignrecipientsdata", POST)
def getcampaignrecipientsdata() -> Response:
    state = sim_state()
    action = (_param("action") or "").lower()
    start, count = _paging()
    with state.lock:
        camp = state.campaigns.get(_param("campaignkey") or "")
        if camp is None:
            raise _error(6002, "Invalid campaign key.")
        if action not in ACTIONS:
            raise _error(state.config.campaigns_bad_param_code, "Invalid action.")
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
    return _page("list_of_details", details)


@campaigns_route("/addlistsubscribersinbulk", POST)
def addlistsubscribersinbulk() -> Response:
    state = sim_state()
    emails = [e.strip() for e in (_param("emailids") or "").split(",") if e.strip()]
    if not emails or len(emails) > 10:
        raise _error(2001, "Between 1 and 10 email ids are allowed.")
    with state.lock:
        mlist = _list(state)
        for email in emails:
            key = email.lower()
            if key not in mlist.subscribers:
                mlist.subscribers[key] = Subscriber(
                    email=email, added_time=state.now(), zuid=str(90_000_000 + len(mlist.subscribers))
                )
    return _envelope("Contacts added successfully.")


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
