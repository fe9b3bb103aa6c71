"""Bulk Read: create a job, poll it (ADDED -> IN PROGRESS -> COMPLETED), download a zipped CSV."""

from __future__ import annotations

import base64
import csv
import io
import operator
import threading
import zipfile
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.errors import ZohoError
from zohosim.fields import parse_time
from zohosim.guard import crm_api, sim_state, too_many_requests
from zohosim.state import MODULES, Record, SimState

bp = Blueprint("bulk", __name__, url_prefix="/crm/bulk/<zver:version>")

COMPARATORS = {
    "equal", "not_equal", "in", "not_in", "greater_than", "greater_equal", "less_than", "less_equal",
    "starts_with", "ends_with", "contains", "not_contains", "between",
}  # fmt: skip


# What a criteria group and each of its conditions may hold (v8 OAS bulk_read.json: both objects
# with additionalProperties false; a group needs group_operator and group, a condition needs
# field, comparator and value, its field an object with api_name).
GROUP_KEYS = {"group_operator", "group"}
CONDITION_KEYS = {"field", "comparator", "value", "type"}


def _criteria_fn(state: SimState, criteria: Any) -> Any:
    """The predicate of a Bulk Read job's `criteria`: always a group (group_operator "and" or "or"
    over a list of conditions), even for one condition, as v8 requires; ValueError otherwise."""
    if not isinstance(criteria, dict) or set(criteria) != GROUP_KEYS:
        raise ValueError("criteria must be a group_operator and a group")
    operator_ = criteria["group_operator"]
    conditions = criteria["group"]
    if operator_ not in ("and", "or") or not isinstance(conditions, list) or not conditions:
        raise ValueError("invalid criteria group")
    parts = [_criterion_fn(state, condition) for condition in conditions]
    if operator_ == "or":
        return lambda r: any(p(r) for p in parts)
    return lambda r: all(p(r) for p in parts)


def _criterion_fn(state: SimState, crit: Any) -> Any:
    if not isinstance(crit, dict) or not {"field", "comparator", "value"} <= set(crit) <= CONDITION_KEYS:
        raise ValueError("invalid criteria condition")
    fld = crit["field"]
    name = fld.get("api_name") if isinstance(fld, dict) and set(fld) == {"api_name"} else None
    comparator = crit.get("comparator")
    if not name or (name != "id" and name.split(".")[0] not in state.fields) or comparator not in COMPARATORS:
        raise ValueError("invalid criteria")
    value: Any = crit.get("value")

    def get(r: Record) -> Any:
        if name == "id":
            return r.id
        if name in ("Modified_Time", "Created_Time"):
            return r.modified if name == "Modified_Time" else r.created
        v = r.get_path(name)
        return v.lower() if isinstance(v, str) else v

    def norm(v: Any) -> Any:
        if name == "id":
            return int(v)
        if name in ("Modified_Time", "Created_Time"):
            return parse_time(str(v))
        return v.lower() if isinstance(v, str) else v

    if comparator in ("in", "not_in"):
        values = {norm(v) for v in (value or [])}
        return (lambda r: get(r) in values) if comparator == "in" else (lambda r: get(r) not in values)
    if comparator == "between":
        low, high = norm(value[0]), norm(value[1])
        return lambda r: get(r) is not None and low <= get(r) <= high
    target = norm(value)
    ops: dict[str, Any] = {
        "equal": lambda a: a == target,
        "not_equal": lambda a: a != target,
        "greater_than": lambda a: a is not None and a > target,
        "greater_equal": lambda a: a is not None and a >= target,
        "less_than": lambda a: a is not None and a < target,
        "less_equal": lambda a: a is not None and a <= target,
        "starts_with": lambda a: isinstance(a, str) and a.startswith(target),
        "ends_with": lambda a: isinstance(a, str) and a.endswith(target),
        "contains": lambda a: isinstance(a, str) and target in a,
        "not_contains": lambda a: not (isinstance(a, str) and target in a),
    }
    fn = ops[comparator]
    return lambda r: fn(get(r))


def _page_token(module: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"bulk|{module}|{offset}".encode()).decode().rstrip("=")


def _start_row(state: SimState, module: str, query: dict[str, Any]) -> int:
    """The first row of the job's page: from ``page_token``, or ``page`` within the first 200,000."""
    token = query.get("page_token")
    if token:
        try:
            raw = base64.urlsafe_b64decode(str(token) + "=" * (-len(str(token)) % 4)).decode()
            kind, token_module, offset = raw.split("|")
            if kind != "bulk" or token_module != module:
                raise ValueError(raw)
            return int(offset)
        except (ValueError, UnicodeDecodeError):
            raise ZohoError(
                "INVALID_DATA", "invalid data", {"api_name": "page_token", "json_path": "$.query.page_token"}
            ) from None
    try:
        page = int(query.get("page", 1))
    except (TypeError, ValueError):
        page = 0
    if page < 1:
        raise ZohoError("INVALID_DATA", "invalid data", {"api_name": "page", "json_path": "$.query.page"})
    start = (page - 1) * state.config.bulk_read_per_page
    if start >= state.config.bulk_read_page_limit_rows:
        raise ZohoError(
            "PAGE_RANGE_EXCEEDED",
            "page range exceeded: use page_token for records beyond the first 200,000",
            {
                "api_name": "page",
                "json_path": "$.query.page",
                "limit": state.config.bulk_read_page_limit_rows,
            },
        )
    return start


def _job_view(state: SimState, job: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job["id"],
        "operation": "read",
        "state": job["state"],
        "query": job["query"],
        "created_by": state.user_ref(state.api_user_id),
        "created_time": state.fmt(job["created"]),
        "file_type": "csv",
    }
    if job["state"] == "COMPLETED":
        view["result"] = {
            "page": job["page"],
            "count": job["count"],
            "download_url": f"/crm/bulk/{job['version']}/read/{job['id']}/result",
            "per_page": state.config.bulk_read_per_page,
            "more_records": job["more"],
            "next_page_token": _page_token(job["module"], job["end"]) if job["more"] else None,
        }
    return view


@bp.post("/read")
@crm_api("bulk.read.create", heavy=True)
def create_job(version: str) -> Response:
    state = sim_state()
    g.cost = state.config.bulk_read_credits
    raw = request.get_json(force=True, silent=True)
    body: dict[str, Any] = raw if isinstance(raw, dict) else {}
    query = body.get("query")
    if not isinstance(query, dict):
        raise ZohoError(
            "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "query", "json_path": "$.query"}
        )
    module = (
        (query.get("module") or {}).get("api_name")
        if isinstance(query.get("module"), dict)
        else query.get("module")
    )
    if module not in MODULES:
        raise ZohoError("INVALID_DATA", "invalid data", {"api_name": "module", "json_path": "$.query.module"})
    fields = query.get("fields") or [f for f in state.fields if f != "id"]
    bad = [f for f in fields if f != "id" and f.split(".")[0] not in state.fields]
    if bad:
        raise ZohoError("INVALID_DATA", "invalid data", {"api_name": bad[0], "json_path": "$.query.fields"})
    if body.get("file_type", "csv") != "csv":
        raise ZohoError("INVALID_DATA", "invalid data", {"api_name": "file_type", "json_path": "$.file_type"})
    start = _start_row(state, module, query)
    criteria = query.get("criteria")
    try:
        if criteria is not None:
            _criteria_fn(state, criteria)
    except (ValueError, TypeError, IndexError):
        raise ZohoError(
            "INVALID_DATA", "invalid criteria", {"api_name": "criteria", "json_path": "$.query.criteria"}
        ) from None
    with state.lock:
        job_id = state.next_misc_id()
        job = {
            "id": job_id,
            "version": version,
            "module": module,
            "fields": ["id", *[f for f in fields if f != "id"]],
            "criteria": criteria,
            "page": int(query.get("page", 1)) if not query.get("page_token") else 1,
            "start": start,
            "end": start,
            "query": query,
            "state": "ADDED",
            "created": state.now(),
            "polls": 0,
            "count": 0,
            "more": False,
            "file": None,
            "error": None,
            "built": threading.Event(),
        }
        state.bulk_jobs[job_id] = job
    # Like Zoho, the server builds the file once the job is added; status and download wait for it.
    threading.Thread(target=_build, args=(state, job), name=f"zohosim-bulk-{job_id}", daemon=True).start()
    g.code = "ADDED_SUCCESSFULLY"
    resp = jsonify(
        {
            "data": [
                {
                    "status": "success",
                    "code": "ADDED_SUCCESSFULLY",
                    "message": "Added successfully.",
                    "details": {
                        "id": job_id,
                        "operation": "read",
                        "state": "ADDED",
                        "created_by": state.user_ref(state.api_user_id),
                        "created_time": state.fmt(job["created"]),
                    },
                }
            ],
            "info": {},
        }
    )
    resp.status_code = 201
    return resp


# Records rendered per hold of the state lock while a file is built, so other calls interleave.
BUILD_BATCH = 10_000


def _build(state: SimState, job: dict[str, Any]) -> None:
    """Select the job's page of records and write its zipped CSV (in a thread of its own)."""
    try:
        with state.lock:
            store = state.modules[job["module"]]
            pred = _criteria_fn(state, job["criteria"]) if job["criteria"] is not None else None
            matched = store.ids if pred is None else [i for i in store.ids if pred(store.records[i])]
            per_page = state.config.bulk_read_per_page
            start = job["start"]
            ids = matched[start : start + per_page]
            more = len(matched) > start + per_page
            job["end"] = start + len(ids)
            records = store.records
            row = _csv_row(state, job["fields"])
        # The CSV is written straight into the zip (no whole-file string); compression level 1,
        # as the level is not part of what a client can rely on.
        buf = io.BytesIO()
        count = 0
        with (
            zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
            zf.open(f"{job['id']}.csv", "w") as raw,
        ):
            text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(job["fields"])
            for offset in range(0, len(ids), BUILD_BATCH):
                with state.lock:
                    found = [r for r in map(records.get, ids[offset : offset + BUILD_BATCH]) if r is not None]
                    writer.writerows(map(row, found))
                count += len(found)
            text.flush()
            text.detach()
        job.update(count=count, more=more, file=buf.getvalue())
    except Exception as exc:  # the job fails, as a Zoho job can
        job["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        job["built"].set()


def _due(state: SimState, job: dict[str, Any]) -> bool:
    """Count a status poll; whether the job is to be COMPLETED (or FAILURE) by now."""
    cfg = state.config
    job["polls"] += 1
    if cfg.bulk_read_complete_after_s is not None:
        return bool(state.now() - job["created"] >= cfg.bulk_read_complete_after_s)
    return bool(job["polls"] >= cfg.bulk_read_polls_to_complete)


def _job(state: SimState, job_id: str) -> dict[str, Any]:
    job = state.bulk_jobs.get(job_id)
    if job is None:
        raise ZohoError("RESOURCE_NOT_FOUND", "the requested resource doesn't exist", {"id": job_id})
    return job


@bp.get("/read/<job_id>")
@crm_api("bulk.read.status")
def job_status(version: str, job_id: str) -> Response:
    state = sim_state()
    g.cost = 0
    with state.lock:
        job = _job(state, job_id)
        due = job["state"] not in ("COMPLETED", "FAILURE") and _due(state, job)
    if due:
        job["built"].wait()  # outside the lock: the build takes it batch by batch
    with state.lock:
        if due:
            job["state"] = "FAILURE" if job["error"] else "COMPLETED"
        elif job["state"] == "ADDED":
            job["state"] = "IN PROGRESS"
        view = _job_view(state, job)
    g.code = job["state"]
    return jsonify({"data": [view]})


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, dict):
        return str(value.get("id", ""))
    return str(value)


def _csv_row(state: SimState, fields: list[str]) -> Callable[[Record], list[str]]:
    """A function from a record to its CSV cells: ids and users as ids, booleans as true/false,
    lookups as their id, empty for no value. What to do per field is decided once, not per cell;
    the cells that come from a record's rarely-set fields are computed once per distinct value."""
    times: dict[int, str] = {}

    def fmt(ts: float) -> str:
        key = int(ts)
        text = times.get(key)
        if text is None:
            if len(times) > 10_000:
                times.clear()
            text = times[key] = state.fmt(ts) or ""
        return text

    own: list[tuple[int, Callable[[Record], str]]] = []
    extra: list[tuple[int, str, str]] = []  # (position, field, nested key)
    for i, name in enumerate(fields):
        head, _, key = name.partition(".")
        if name == "id":
            own.append((i, lambda r: str(r.id)))
        elif name in ("Modified_Time", "Created_Time"):
            attr = operator.attrgetter("modified" if name == "Modified_Time" else "created")
            own.append((i, lambda r, attr=attr: fmt(attr(r))))  # type: ignore[misc]
        elif name in ("Modified_By", "Created_By"):
            own.append((i, operator.attrgetter("modified_by" if name == "Modified_By" else "created_by")))
        elif head in Record.SLOT_FIELDS:
            own.append((i, lambda r, name=name: _csv_cell(r.get_path(name))))  # type: ignore[misc]
        else:
            extra.append((i, head, key))
    # Cells from `extra`, by the identity of the dict: the lock is held for the whole download, so
    # no record's `extra` changes meanwhile. Records without one share the entry for None.
    by_extra: dict[int, list[tuple[int, str]]] = {}
    width = len(fields)

    def row(record: Record) -> list[str]:
        cells = [""] * width
        for i, get in own:
            cells[i] = get(record)
        if extra:
            found = by_extra.get(id(record.extra))
            if found is None:
                found = []
                for i, head, key in extra:
                    value = record.extra.get(head) if record.extra is not None else None
                    if key:
                        value = value.get(key) if isinstance(value, dict) else None
                    found.append((i, _csv_cell(value)))
                by_extra[id(record.extra)] = found
            for i, cell in found:
                cells[i] = cell
        return cells

    return row


@bp.get("/read/<job_id>/result")
@crm_api("bulk.read.download", heavy=True)
def job_result(version: str, job_id: str) -> Response:
    state = sim_state()
    g.cost = 0
    with state.lock:
        job = _job(state, job_id)
        if job["state"] != "COMPLETED":
            raise ZohoError(
                "RESOURCE_NOT_FOUND",
                "the job is not completed yet",
                {"id": job_id, "state": job["state"]},
            )
        now = state.now()
        while state.bulk_downloads and state.bulk_downloads[0] <= now - 60:
            state.bulk_downloads.popleft()
        if len(state.bulk_downloads) >= state.config.bulk_download_limit:
            raise too_many_requests("bulk_download")
        state.bulk_downloads.append(now)
        content = job["file"]
    g.code = "SUCCESS"
    resp = Response(content, mimetype="application/zip")
    resp.headers["Content-Disposition"] = f'attachment; filename="{job_id}.zip"'
    return resp
