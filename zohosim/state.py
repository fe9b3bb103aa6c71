"""In-memory state of the simulator: records, users, tokens, Campaigns lists, logs. Thread-safe via one RLock."""

from __future__ import annotations

import bisect
import itertools
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from zohosim.config import SimConfig
from zohosim.faults import FaultSet
from zohosim.fields import FieldDef, build_fields, fmt_time
from zohosim.notifications import Notifier
from zohosim.quota import Quota

ID_BASE = 5_725_767_000_000_000_000
API_USER_ID = "5725767000000000001"
WORKFLOW_USER_ID = "5725767000000000002"
AGENT_USER_ID = "5725767000000000003"
ADMIN_PROFILE_ID = "5725767000000026011"
STANDARD_PROFILE_ID = "5725767000000026014"
CEO_ROLE_ID = "5725767000000026005"
MODULES = ("Contacts", "Leads")


def _touched(changes: dict[str, Any]) -> list[str]:
    return sorted(changes)


class SimClock:
    """Wall clock plus an adjustable offset, so tests can move time without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        self.offset += seconds
        return self.now()


class Record:
    """One CRM record. Slots keep 1,000,000 contacts compact; rarely-set fields live in ``extra``."""

    __slots__ = (
        "Data_Processing_Basis",
        "Email",
        "Email_Opt_Out",
        "First_Name",
        "Last_Name",
        "Mobile",
        "Phone",
        "created",
        "created_by",
        "extra",
        "id",
        "modified",
        "modified_by",
    )
    SLOT_FIELDS = frozenset(
        {"First_Name", "Last_Name", "Email", "Phone", "Mobile", "Email_Opt_Out", "Data_Processing_Basis"}
    )

    def __init__(self, rid: int, created: float, user_id: str) -> None:
        self.id = rid
        self.First_Name: str | None = None
        self.Last_Name: str | None = None
        self.Email: str | None = None
        self.Phone: str | None = None
        self.Mobile: str | None = None
        self.Email_Opt_Out: bool = False
        self.Data_Processing_Basis: str | None = "Not Applicable"
        self.created = created
        self.modified = created
        self.created_by = user_id
        self.modified_by = user_id
        self.extra: dict[str, Any] | None = None

    def get(self, name: str) -> Any:
        if name in self.SLOT_FIELDS:
            return getattr(self, name)
        if self.extra is None:
            return None
        return self.extra.get(name)

    def set(self, name: str, value: Any) -> None:
        if name in self.SLOT_FIELDS:
            setattr(self, name, value)
            return
        if self.extra is None:
            self.extra = {}
        self.extra[name] = value

    def get_path(self, path: str) -> Any:
        """Value of a field or of a nested key such as ``Data_Processing_Basis_Details.Contact_Through_Phone``."""
        head, _, rest = path.partition(".")
        value = self.get(head)
        if rest:
            return value.get(rest) if isinstance(value, dict) else None
        return value

    def set_path(self, path: str, value: Any, new_detail_id: str) -> None:
        head, _, rest = path.partition(".")
        if not rest:
            self.set(head, value)
            return
        current = self.get(head)
        merged = dict(current) if isinstance(current, dict) else {"id": new_detail_id}
        merged[rest] = value
        self.set(head, merged)


@dataclass
class AccessToken:
    token: str
    refresh_token: str
    issued_at: float
    expires_at: float


@dataclass
class Subscriber:
    email: str
    status: str = "active"  # active | unsub | bounce
    firstname: str = ""
    lastname: str = ""
    phone: str = ""
    companyname: str = ""
    added_time: float = 0.0
    zuid: str = ""
    bounce_kind: str | None = None


@dataclass
class MailingList:
    listkey: str
    name: str
    created: float
    double_opt_in: bool = False
    subscribers: dict[str, Subscriber] = field(default_factory=dict)  # key: lower-cased email


@dataclass
class Recipient:
    email: str
    contactid: str
    firstname: str = ""
    lastname: str = ""
    sent_time: float = 0.0
    actions: set[str] = field(default_factory=lambda: {"sentcontacts"})


@dataclass
class Campaign:
    campaignkey: str
    name: str
    sent_time: float
    listkeys: list[str] = field(default_factory=list)
    recipients: dict[str, Recipient] = field(default_factory=dict)


class ModuleStore:
    """Records of one module: a dict by numeric id plus a sorted id list for keyset paging."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: dict[int, Record] = {}
        self.ids: list[int] = []
        self._email_index: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def add(self, record: Record) -> None:
        if record.id in self.records:
            raise ValueError(f"duplicate id {record.id}")
        self.records[record.id] = record
        if not self.ids or record.id > self.ids[-1]:
            self.ids.append(record.id)
        else:
            bisect.insort(self.ids, record.id)
        if self._email_index is not None and record.Email:
            self._email_index.setdefault(record.Email.lower(), []).append(record.id)

    def remove(self, rid: int) -> Record | None:
        record = self.records.pop(rid, None)
        if record is None:
            return None
        index = bisect.bisect_left(self.ids, rid)
        if index < len(self.ids) and self.ids[index] == rid:
            del self.ids[index]
        self.email_changed(rid, record.Email, None)
        return record

    def email_changed(self, rid: int, old: str | None, new: str | None) -> None:
        if self._email_index is None:
            return
        if old:
            ids = self._email_index.get(old.lower(), [])
            if rid in ids:
                ids.remove(rid)
        if new:
            self._email_index.setdefault(new.lower(), []).append(rid)

    def by_email(self, email: str) -> list[Record]:
        if self._email_index is None:
            index: dict[str, list[int]] = {}
            for rid in self.ids:
                mail = self.records[rid].Email
                if mail:
                    index.setdefault(mail.lower(), []).append(rid)
            self._email_index = index
        return [self.records[i] for i in sorted(self._email_index.get(email.lower(), []))]


class SimState:
    """All mutable simulator state. Hold ``state.lock`` around any read-modify-write."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.lock = threading.RLock()
        self.clock = SimClock()
        self.faults = FaultSet(self)
        self.quota = Quota(self)
        self.notifier = Notifier(self)
        self._init_data()

    def _init_data(self) -> None:
        self.fields: dict[str, FieldDef] = build_fields(self.config)
        self.modules: dict[str, ModuleStore] = {name: ModuleStore(name) for name in MODULES}
        self._id_counter = itertools.count(1)
        self.users: dict[str, dict[str, Any]] = {}
        self._add_default_users()
        self.api_user_id = API_USER_ID
        self.workflow_user_id = WORKFLOW_USER_ID
        self.agent_user_id = AGENT_USER_ID
        self.tokens: dict[str, AccessToken] = {}
        self.tokens_by_refresh: dict[str, deque[str]] = {}
        self.mints: dict[str, deque[float]] = {}
        self.revoked_refresh: set[str] = set()
        self._token_counter = itertools.count(1)
        self.writes: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self._write_seq = itertools.count(1)
        self._call_seq = itertools.count(1)
        self.pending_resets: list[dict[str, Any]] = []
        self.lists: dict[str, MailingList] = {}
        self.campaigns: dict[str, Campaign] = {}
        self.donotmail: set[str] = set()
        self.campaign_calls: dict[str, deque[float]] = {}
        self.campaign_locks: dict[str, float] = {}
        self.bulk_jobs: dict[str, dict[str, Any]] = {}
        self.bulk_downloads: deque[float] = deque()
        # Consent records ever made (Data_Processing_Basis_Details ids) -> the record they belong to.
        self.consent_records: dict[str, int] = {}
        # Converted Leads (gone from the Leads module) by id, as `GET ?converted=true` shows them.
        self.converted_leads: dict[int, dict[str, Any]] = {}
        self._misc_counter = itertools.count(1)

    def reset(self, config: SimConfig | None = None) -> None:
        with self.lock:
            if config is not None:
                self.config = config
            self.faults.clear()
            self.faults.reseed(self.config.fault_seed)
            self.quota.reset()
            self.notifier.reset()
            self.clock.offset = 0.0
            self._init_data()

    # ----- time, ids, users

    def now(self) -> float:
        return self.clock.now()

    def fmt(self, ts: float | None) -> str | None:
        return fmt_time(ts, self.config)

    def next_record_id(self, module: str) -> int:
        store = self.modules[module]
        candidate = ID_BASE + 100_000_000 + next(self._id_counter) * 1_000
        if store.ids and candidate <= store.ids[-1]:
            candidate = store.ids[-1] + 1_000
        return candidate

    def next_misc_id(self) -> str:
        return str(ID_BASE + 900_000_000_000 + next(self._misc_counter))

    def _add_default_users(self) -> None:
        self.add_user(
            API_USER_ID,
            "Consent Desk API",
            "api@consentdesk.example",
            profile={"name": "Administrator", "id": ADMIN_PROFILE_ID},
        )
        self.add_user(WORKFLOW_USER_ID, "Workflow: Reset phone consent", "workflow@consentdesk.example")
        self.add_user(
            AGENT_USER_ID,
            "Maria Agent",
            "maria.agent@consentdesk.example",
            profile={"name": "Standard", "id": STANDARD_PROFILE_ID},
        )

    def add_user(
        self,
        user_id: str,
        name: str,
        email: str,
        *,
        profile: dict[str, str] | None = None,
        role: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        user = {
            "id": user_id,
            "name": name,
            "full_name": name,
            "email": email,
            "profile": profile or {"name": "Administrator", "id": ADMIN_PROFILE_ID},
            "role": role or {"name": "CEO", "id": CEO_ROLE_ID},
            "status": "active",
        }
        self.users[user_id] = user
        return user

    def consent_records_of(self, record_id: str | int) -> list[str]:
        """Ids of the consent records made for one CRM record (a push should make one, once)."""
        with self.lock:
            return [cid for cid, rid in self.consent_records.items() if rid == int(record_id)]

    def user_ref(self, user_id: str) -> dict[str, str]:
        user = self.users.get(user_id)
        name = user["name"] if user else "Unknown User"
        return {"name": name, "id": user_id}

    @property
    def api_user(self) -> dict[str, Any]:
        return self.users[self.api_user_id]

    # ----- records

    def add_record(self, module: str = "Contacts", *, rid: int | str | None = None, **values: Any) -> str:
        """Create a record directly (seeding, tests). Returns its id as a string."""
        with self.lock:
            numeric = int(rid) if rid is not None else self.next_record_id(module)
            created = values.pop("_created", None) or self.now()
            user_id = values.pop("_user_id", None) or self.agent_user_id
            record = Record(numeric, created, user_id)
            for name, value in values.items():
                if name == "Data_Processing_Basis_Details" and isinstance(value, dict):
                    value = {"id": self.next_misc_id(), **value}
                    self.consent_records[value["id"]] = numeric
                record.set(name, value)
            self.modules[module].add(record)
            return str(numeric)

    def add_contact(self, **values: Any) -> str:
        return self.add_record("Contacts", **values)

    def delete_record(self, module: str, rid: str | int) -> bool:
        """Delete a record as a CRM user would (tests): reads, COQL and Bulk Read no longer find it."""
        with self.lock:
            return self.modules[module].remove(int(rid)) is not None

    def find(self, module: str, rid: str | int) -> Record | None:
        try:
            numeric = int(rid)
        except (TypeError, ValueError):
            return None
        return self.modules[module].records.get(numeric)

    def render(self, record: Record, fields: list[str] | None = None) -> dict[str, Any]:
        """A record as the CRM API shows it (all fields, or ``id`` plus the chosen ones)."""
        return self.renderer(fields)(record)

    def renderer(
        self, fields: list[str] | None = None, *, user_last_name: bool = False
    ) -> Callable[[Record], dict[str, Any]]:
        """`render` for many records with the same fields: the per-field work is decided once
        (COQL pages of 2,000 rows, record lists), and timestamps are formatted once per second.
        ``user_last_name``: user lookups show the last name only, as COQL does (v7+)."""
        names = list(self.fields) if fields is None else ["id", *[f for f in fields if f != "id"]]
        times: dict[int, str | None] = {}
        users: dict[str, dict[str, str]] = {}

        def fmt(ts: float | None) -> str | None:
            if ts is None:
                return None
            key = int(ts)
            text = times.get(key)
            if text is None:
                if len(times) > 10_000:
                    times.clear()
                text = times[key] = self.fmt(ts)
            return text

        def user(user_id: str) -> dict[str, str]:
            ref = users.get(user_id)
            if ref is None:
                ref = users[user_id] = self.user_ref(user_id)
                if user_last_name:
                    ref["name"] = ref["name"].split()[-1] if ref["name"].split() else ""
            return dict(ref)

        def plain(name: str) -> Callable[[Record], Any]:
            if name in Record.SLOT_FIELDS:
                return operator.attrgetter(name)

            def extra(record: Record) -> Any:
                value = record.extra.get(name) if record.extra is not None else None
                return dict(value) if isinstance(value, dict) else value

            return extra

        def nested(head: str, key: str) -> Callable[[Record], Any]:
            def get(record: Record) -> Any:
                value = record.extra.get(head) if record.extra is not None else None
                return value.get(key) if isinstance(value, dict) else None

            return get

        getters: list[tuple[str, Callable[[Record], Any]]] = []
        for name in names:
            if name == "id":
                getters.append((name, lambda r: str(r.id)))
            elif name == "Modified_Time":
                getters.append((name, lambda r: fmt(r.modified)))
            elif name == "Created_Time":
                getters.append((name, lambda r: fmt(r.created)))
            elif name == "Modified_By":
                getters.append((name, lambda r: user(r.modified_by)))
            elif name == "Created_By":
                getters.append((name, lambda r: user(r.created_by)))
            elif "." in name and name.partition(".")[0] not in Record.SLOT_FIELDS:
                getters.append((name, nested(*name.split(".", 1))))
            elif "." in name:
                getters.append((name, operator.methodcaller("get_path", name)))
            else:
                getters.append((name, plain(name)))

        def render(record: Record) -> dict[str, Any]:
            return {name: get(record) for name, get in getters}

        return render

    def apply_changes(
        self,
        module: str,
        record: Record,
        changes: dict[str, Any],
        *,
        user_id: str,
        source: str,
        request_id: str | None = None,
        applied: bool = True,
        ignored: list[str] | None = None,
    ) -> dict[str, Any]:
        """Write ``changes`` (already validated) to ``record``, log the write, schedule workflow resets."""
        with self.lock:
            now = self.now()
            if applied:
                for name, value in changes.items():
                    if name == "Data_Processing_Basis_Details" and isinstance(value, dict):
                        current = record.get(name)
                        if isinstance(current, dict) and (
                            value.get("id") or self.config.consent_without_id == "merge"
                        ):
                            merged = dict(current)  # the record's own consent record, updated
                        else:
                            merged = {"id": self.next_misc_id()}  # a new consent record, as Zoho makes
                            self.consent_records[merged["id"]] = record.id
                        merged.update({k: v for k, v in value.items() if k != "id"})
                        record.set(name, merged)
                    else:
                        if name == "Email":
                            self.modules[module].email_changed(record.id, record.Email, value)
                        record.set(name, value)
                record.modified = now
                record.modified_by = user_id
            entry = {
                "seq": next(self._write_seq),
                "time": self.fmt(now),
                "ts": now,
                "module": module,
                "record_id": str(record.id),
                "fields": changes,
                "user": self.user_ref(user_id),
                "source": source,
                "request_id": request_id,
                "applied": applied,
                "ignored_fields": ignored or [],
            }
            self.writes.append(entry)
            if applied:
                self.notifier.changed(module, str(record.id), _touched(changes))
            if source == "api" and applied:
                self.faults.schedule_workflow_resets(module, record, changes, now)
            return entry

    # ----- lazy time-driven effects

    def tick(self) -> None:
        """Apply everything that has become due (workflow resets). Called on every request."""
        if not self.pending_resets:
            return
        with self.lock:
            now = self.now()
            due = [p for p in self.pending_resets if p["due"] <= now]
            if not due:
                return
            self.pending_resets = [p for p in self.pending_resets if p["due"] > now]
            for item in sorted(due, key=lambda p: p["due"]):
                record = self.find(item["module"], item["record_id"])
                if record is None:
                    continue
                path: str = item["field"]
                record.set_path(path, item["value"], self.next_misc_id())
                record.modified = max(item["due"], record.modified)
                record.modified_by = self.workflow_user_id
                self.writes.append(
                    {
                        "seq": next(self._write_seq),
                        "time": self.fmt(item["due"]),
                        "ts": item["due"],
                        "module": item["module"],
                        "record_id": str(record.id),
                        "fields": {path: item["value"]},
                        "user": self.user_ref(self.workflow_user_id),
                        "source": "workflow",
                        "request_id": None,
                        "applied": True,
                        "ignored_fields": [],
                    }
                )
                self.notifier.changed(item["module"], str(record.id), [path.partition(".")[0]])

    # ----- tokens

    def new_token_value(self) -> str:
        return f"1000.zohosim{next(self._token_counter):06d}.{int(self.now() * 1000):x}"

    def expire_tokens(self) -> int:
        with self.lock:
            n = len(self.tokens)
            self.tokens.clear()
            self.tokens_by_refresh.clear()
            return n

    # ----- logs

    def log_call(self, entry: dict[str, Any]) -> None:
        with self.lock:
            entry["seq"] = next(self._call_seq)
            self.calls.append(entry)
            if len(self.calls) > self.config.max_calls_logged:
                del self.calls[: len(self.calls) // 10]

    # ----- convenience for Python callers

    def set_fault(self, name: str, **params: Any) -> dict[str, Any]:
        return self.faults.set(name, params)

    def clear_faults(self, name: str | None = None) -> None:
        self.faults.clear(name)

    def writes_for(self, record_id: str | None = None, source: str | None = "api") -> list[dict[str, Any]]:
        with self.lock:
            return [
                w
                for w in self.writes
                if (record_id is None or w["record_id"] == str(record_id))
                and (source is None or w["source"] == source)
            ]
