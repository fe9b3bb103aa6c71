"""Zoho CRM: records (update, read, search), COQL, field metadata, the API user."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.cache import BaseCache

from sync.zoho.crm_results import CrmUpdate, record_results
from sync.zoho.errors import ZohoPermanentError
from sync.zoho.transport import Request, ZohoTransport

if TYPE_CHECKING:
    from sync.zoho.bulk import BulkRead

MAX_RECORDS_PER_CALL = 100
COQL_MAX_ROWS = 2000
SEARCH_PER_PAGE = 200
# The API user's id changes only when someone re-authorises the client as another user.
API_USER_CACHE_S = 3600
# Updates of more than this many records are "complex" calls (Zoho's sub-concurrency).
COMPLEX_UPDATE_RECORDS = 10
COQL_MAX_IN = 50
CONSENTS_MODULE = "Consents"
WATCH_TOKEN_MAX = 50
_RECORD_ID = re.compile(r"^\d{1,30}$")
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.$]*$")


def coql_credits(limit: int) -> int:
    """Credits charged for a COQL call by its LIMIT (1-200: 1, 201-1000: 2, 1001-2000: 3)."""
    if limit <= 200:
        return 1
    return 2 if limit <= 1000 else 3


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """What the API user may do with one field of a module.

    Zoho's metadata is for the user who asks: ``read_only`` is read-only *for this user*
    (its profile may not edit it), ``field_read_only`` is read-only for everyone (a system
    field). ``api_editable`` is False for either, when ``operation_type.api_update`` is
    false, when the field is not ``visible``, or when the API user's profile (``profile_id``
    given to `CrmClient.fields`) has anything but ``read_write`` on it.
    """

    api_name: str
    data_type: str
    label: str
    read_only: bool
    api_editable: bool
    custom: bool
    # Profile id -> permission_type ("read_write", "read_only", "hidden").
    profile_permissions: Mapping[str, str] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    field_read_only: bool = False
    visible: bool = True
    # The picklist's actual values, in Zoho's order (empty for other types).
    picklist: tuple[str, ...] = ()

    @property
    def why_not_editable(self) -> str:
        """In words, why the API user may not edit the field ("" when it may)."""
        if self.api_editable:
            return ""
        if self.field_read_only:
            return "the field is read-only for everyone (a system field)"
        if not self.visible:
            return "the field is hidden from the API user"
        if self.read_only:
            return "the API user's profile may not edit it (read-only for this user)"
        return "Zoho does not allow updating it through the API (operation_type.api_update is false)"

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, profile_id: str | None = None) -> FieldInfo:
        read_only = bool(data.get("read_only"))
        field_read_only = bool(data.get("field_read_only"))
        visible = data.get("visible") is not False
        operation = data.get("operation_type")
        api_update = operation.get("api_update") if isinstance(operation, dict) else None
        permissions = {
            str(p.get("id")): str(p.get("permission_type", ""))
            for p in data.get("profiles") or []
            if isinstance(p, dict) and p.get("id") is not None
        }
        editable = not read_only and not field_read_only and visible and api_update is not False
        if profile_id is not None and profile_id in permissions:
            editable = editable and permissions[profile_id] == "read_write"
        picklist = tuple(
            str(v.get("actual_value"))
            for v in data.get("pick_list_values") or []
            if isinstance(v, dict) and v.get("actual_value") is not None
        )
        return cls(
            api_name=str(data.get("api_name", "")),
            data_type=str(data.get("data_type", "")),
            label=str(data.get("field_label") or data.get("display_label") or data.get("api_name", "")),
            read_only=read_only,
            api_editable=editable,
            custom=bool(data.get("custom_field")),
            profile_permissions=permissions,
            raw=data,
            field_read_only=field_read_only,
            visible=visible,
            picklist=picklist,
        )


@dataclass(frozen=True, slots=True)
class CrmUser:
    id: str
    email: str
    full_name: str
    status: str
    profile_id: str | None
    profile_name: str | None
    role_name: str | None
    raw: Mapping[str, Any] = field(repr=False)


def _user(user: Mapping[str, Any]) -> CrmUser:
    profile = user.get("profile") or {}
    role = user.get("role") or {}
    return CrmUser(
        id=str(user.get("id", "")),
        email=str(user.get("email", "")),
        full_name=str(user.get("full_name") or user.get("name") or ""),
        status=str(user.get("status", "")),
        profile_id=str(profile["id"]) if profile.get("id") else None,
        profile_name=profile.get("name"),
        role_name=role.get("name"),
        raw=user,
    )


def _check_ids(ids: Sequence[str]) -> list[str]:
    out = [str(i) for i in ids]
    for rid in out:
        if not _RECORD_ID.match(rid):
            raise ZohoPermanentError(f"{rid!r} is not a Zoho record id", code="INVALID_DATA")
    return out


def _check_fields(fields: Iterable[str]) -> list[str]:
    out = list(fields)
    for name in out:
        if not _FIELD_NAME.match(name):
            raise ZohoPermanentError(f"{name!r} is not a field API name", code="INVALID_DATA")
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# An org's users read at most this many pages of 200 (10,000 users).
MAX_USER_PAGES = 50


class CrmClient:
    """``cache``: where the API user's id is kept for every process (the token's cache)."""

    def __init__(self, transport: ZohoTransport, cache: BaseCache) -> None:
        self.transport = transport
        self.cache = cache
        self.version = transport.config.crm_api_version

    def _path(self, rest: str) -> str:
        return f"/crm/{self.version}/{rest}"

    # Writes ------------------------------------------------------------------

    def update(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        module: str = "Contacts",
        trigger: Sequence[str] | None = None,
    ) -> CrmUpdate:
        """Update up to 100 records (each with its ``id``) in one call.

        Returns one `RecordResult` per input record, in input order, and the
        call's id in the call log. Per-record failures are results, not
        exceptions; a failure of the whole call raises.
        ``trigger``: Zoho's list (``["workflow", "approval", "blueprint"]``); None
        leaves it out, so Zoho runs all three as it does by default; ``[]`` runs none.
        """
        if not records:
            return CrmUpdate([], None)
        if len(records) > MAX_RECORDS_PER_CALL:
            raise ZohoPermanentError(
                f"Zoho takes at most {MAX_RECORDS_PER_CALL} records per update, not {len(records)}",
                code="LIMIT_EXCEEDED",
                details={"limit": MAX_RECORDS_PER_CALL},
            )
        body: dict[str, Any] = {"data": [dict(r) for r in records]}
        if trigger is not None:
            body["trigger"] = list(trigger)
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.update",
                method="PUT",
                host="api",
                path=self._path(module),
                json=body,
                records=len(records),
                credits=1,
                per_record=True,
                complex=len(records) > COMPLEX_UPDATE_RECORDS,
            )
        )
        sent_ids = [str(r.get("id")) if r.get("id") is not None else None for r in records]
        return record_results(response, sent_ids)

    # Reads -------------------------------------------------------------------

    def get(self, record_id: str, *, module: str = "Contacts") -> dict[str, Any] | None:
        """One record with all its fields, or None when Zoho has no such record (204)."""
        (rid,) = _check_ids([record_id])
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.get",
                method="GET",
                host="api",
                path=self._path(f"{module}/{rid}"),
                records=1,
                credits=1,
            )
        )
        data = response.body.get("data") if isinstance(response.body, dict) else None
        return data[0] if data else None

    def get_many(
        self, ids: Sequence[str], fields: Sequence[str], *, module: str = "Contacts"
    ) -> list[dict[str, Any]]:
        """Up to 100 records by id with the chosen fields (Zoho omits ids it does not have)."""
        checked = _check_ids(ids)
        if not checked:
            return []
        if len(checked) > MAX_RECORDS_PER_CALL:
            raise ZohoPermanentError(
                f"Zoho reads at most {MAX_RECORDS_PER_CALL} ids per call, not {len(checked)}",
                code="LIMIT_EXCEEDED",
                details={"limit": MAX_RECORDS_PER_CALL, "param_name": "ids"},
            )
        wanted = _check_fields(["id", *[f for f in fields if f != "id"]])
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.get",
                method="GET",
                host="api",
                path=self._path(module),
                params={
                    "ids": ",".join(checked),
                    "fields": ",".join(wanted),
                    "per_page": MAX_RECORDS_PER_CALL,
                },
                records=len(checked),
                credits=1,
            )
        )
        data = response.body.get("data") if isinstance(response.body, dict) else None
        return list(data or [])

    def lead_conversion(self, lead_id: str) -> str | None:
        """The Contact a converted Lead became (``$converted_detail.contact``), or None when the
        Lead was not converted (deleted, or never there). A converted Lead leaves the Leads
        module; Zoho shows it by id only when asked with ``converted=true``."""
        (rid,) = _check_ids([lead_id])
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.get",
                method="GET",
                host="api",
                path=self._path(f"Leads/{rid}"),
                params={"converted": "true"},
                records=1,
                credits=1,
            )
        )
        data = response.body.get("data") if isinstance(response.body, dict) else None
        row = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
        detail = row.get("$converted_detail")
        if not row.get("$converted") or not isinstance(detail, dict):
            return None
        contact = detail.get("contact")
        contact_id = contact.get("id") if isinstance(contact, dict) else contact
        return str(contact_id) if contact_id else None

    def search_by_email(
        self, email: str, *, module: str = "Contacts", fields: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Records whose email is ``email`` (several when the CRM holds duplicates); [] on 204."""
        params: dict[str, Any] = {"email": email, "per_page": SEARCH_PER_PAGE}
        if fields:
            params["fields"] = ",".join(_check_fields(fields))
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.search",
                method="GET",
                host="api",
                path=self._path(f"{module}/search"),
                params=params,
                credits=1,
                complex=True,  # Zoho counts search among the sub-concurrency calls
            )
        )
        data = response.body.get("data") if isinstance(response.body, dict) else None
        return list(data or [])

    def coql(self, query: str) -> tuple[list[dict[str, Any]], bool]:
        """One COQL query: (rows, more_records). Its LIMIT must be at most 2,000."""
        match = re.search(r"\blimit\s+(\d+)", query, re.IGNORECASE)
        limit = int(match.group(1)) if match else 200
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.coql",
                method="POST",
                host="api",
                path=self._path("coql"),
                json={"select_query": query},
                credits=coql_credits(limit),
                complex=True,
            )
        )
        body = response.body if isinstance(response.body, dict) else {}
        rows = list(body.get("data") or [])
        info = body.get("info") or {}
        if "more_records" in info:
            return rows, bool(info["more_records"])
        return rows, len(rows) >= limit  # no info: a full page may have more

    def coql_iter(
        self,
        fields: Sequence[str],
        *,
        module: str = "Contacts",
        where: str | None = None,
        page_size: int = COQL_MAX_ROWS,
    ) -> Iterator[dict[str, Any]]:
        """Every row matching ``where``, in id order, paging by keyset
        (``id > last order by id``) so the 100,000-row OFFSET ceiling never applies.
        ``where`` is COQL criteria written by us (never from user input)."""
        if not 1 <= page_size <= COQL_MAX_ROWS:
            raise ValueError(f"page_size must be between 1 and {COQL_MAX_ROWS}")
        selected = _check_fields(["id", *[f for f in fields if f != "id"]])
        last = "0"
        while True:
            criteria = f"id > {_quote(last)}"
            if where:
                criteria = f"({where}) and {criteria}"
            # COQL built from API names we checked and our own criteria, not user input.
            select = ", ".join(selected)
            query = f"select {select} from {module} where {criteria} order by id asc limit {page_size}"  # noqa: S608
            rows, more = self.coql(query)
            yield from rows
            if not rows or not more:
                return
            last = str(rows[-1]["id"])

    def coql_where(
        self,
        fields: Sequence[str],
        *,
        any_of: Mapping[str, Sequence[str]],
        module: str = "Contacts",
        page_size: int = 200,
    ) -> list[dict[str, Any]]:
        """Every record where one of the ``any_of`` fields holds one of its values (at most
        50 values a field: COQL's ``in`` limit), with ``fields``. One call per ``page_size``
        rows (200: one credit a call; 50 values rarely match more records)."""
        clauses = []
        for name, values in any_of.items():
            if len(values) > COQL_MAX_IN:
                raise ZohoPermanentError(
                    f"COQL takes at most {COQL_MAX_IN} values in one in (...), not {len(values)}",
                    code="LIMIT_EXCEEDED",
                )
            if values:
                (checked,) = _check_fields([name])
                clauses.append(f"{checked} in ({', '.join(_quote(str(v)) for v in values)})")
        if not clauses:
            return []
        where = clauses[0] if len(clauses) == 1 else "(" + " or ".join(clauses) + ")"
        return list(self.coql_iter(fields, module=module, where=where, page_size=page_size))

    # Metadata ----------------------------------------------------------------

    def fields(self, module: str = "Contacts", *, profile_id: str | None = None) -> dict[str, FieldInfo]:
        """Field metadata of a module, by API name. With ``profile_id`` (the API user's,
        from `current_user`), ``api_editable`` also reflects that profile's permission."""
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.fields",
                method="GET",
                host="api",
                path=self._path("settings/fields"),
                params={"module": module},
                credits=1,
            )
        )
        body = response.body if isinstance(response.body, dict) else {}
        infos = (
            FieldInfo.from_json(f, profile_id=profile_id)
            for f in body.get("fields") or []
            if isinstance(f, dict)
        )
        return {info.api_name: info for info in infos}

    def consent_fields(self, *, profile_id: str | None = None) -> dict[str, FieldInfo]:
        """The consent object's keys (``Data_Processing_Basis_Details.<key>``), each with its
        own metadata (module ``Consents``): permissions and the org's picklist values."""
        return self.fields(CONSENTS_MODULE, profile_id=profile_id)

    def _users_page(self, operation: str, params: dict[str, Any]) -> tuple[list[Any], bool, int]:
        """One answer of ``GET /users``: its users (an empty list on 204), ``info.more_records``
        and the HTTP status."""
        response = self.transport.call(
            Request(
                service="crm",
                operation=operation,
                method="GET",
                host="api",
                path=self._path("users"),
                params=params,
                credits=1,
            )
        )
        body = response.body if isinstance(response.body, dict) else {}
        info = body.get("info")
        more = isinstance(info, dict) and info.get("more_records") is True
        return list(body.get("users") or []), more, response.status_code

    def users(self) -> list[CrmUser]:
        """Every user of the org (pages of 200, while ``info.more_records``): names and profiles by id."""
        found: list[CrmUser] = []
        for page in range(1, MAX_USER_PAGES + 1):
            users, more, _ = self._users_page(
                "crm.users", {"type": "AllUsers", "page": page, "per_page": 200}
            )
            found += [_user(u) for u in users if isinstance(u, dict)]
            if not users or not more:
                break
        return found

    def current_user(self) -> CrmUser:
        """The user the API acts as, with its profile (what decides field permissions)."""
        users, _, status = self._users_page("crm.current_user", {"type": "CurrentUser"})
        if not users or not isinstance(users[0], dict):
            raise ZohoPermanentError("Zoho returned no current user", http_status=status)
        return _user(users[0])

    def api_user_id(self) -> str:
        """Our API user's id, as ``Modified_By`` shows it on our own writes.

        ``ZohoConfig.api_user_id`` (ZOHO_API_USER_ID) when set; else `current_user`,
        kept in the shared cache for an hour so that one call serves every process.
        """
        if self.transport.config.api_user_id:
            return self.transport.config.api_user_id
        key = f"{self.transport.config.cache_prefix}:crm-api-user-id"
        cached = self.cache.get(key)
        if cached:
            return str(cached)
        user_id = self.current_user().id
        self.cache.set(key, user_id, timeout=API_USER_CACHE_S)
        return user_id

    # Notifications (watch) -------------------------------------------------------

    def watch(
        self,
        *,
        channel_id: str,
        events: Sequence[str],
        notify_url: str,
        token: str,
        expires_at: datetime,
        renew: bool = False,
    ) -> dict[str, Any]:
        """Enable a notification channel (``POST``), or renew one Zoho holds (``renew``: ``PUT``,
        which replaces it; zoho-api.md section 6). Zoho caps ``channel_expiry`` at a week
        (longer, or none: one hour) and ``token`` at 50 characters."""
        if len(token) > WATCH_TOKEN_MAX:
            raise ZohoPermanentError(
                f"a watch token has at most {WATCH_TOKEN_MAX} characters", code="INVALID_DATA"
            )
        body = {
            "watch": [
                {
                    "channel_id": channel_id,
                    "events": list(events),
                    "channel_expiry": expires_at.isoformat(timespec="seconds"),
                    "token": token,
                    "notify_url": notify_url,
                }
            ]
        }
        response = self.transport.call(
            Request(
                service="crm",
                operation="crm.watch",
                method="PUT" if renew else "POST",
                host="api",
                path=self._path("actions/watch"),
                json=body,
                credits=1,
            )
        )
        answers = response.body.get("watch") if isinstance(response.body, dict) else None
        entry = answers[0] if isinstance(answers, list) and answers and isinstance(answers[0], dict) else {}
        if entry.get("code") != "SUCCESS":
            raise ZohoPermanentError(
                f"Zoho did not enable the channel: {entry.get('code')} {entry.get('message')}",
                code=str(entry.get("code") or ""),
                details=entry.get("details"),
            )
        return dict(entry)

    # Bulk read ---------------------------------------------------------------

    @property
    def bulk(self) -> BulkRead:
        from sync.zoho.bulk import BulkRead

        return BulkRead(self.transport)
