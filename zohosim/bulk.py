"""Bulk Read: create a job, poll it (ADDED -> IN PROGRESS -> COMPLETED), download a zipped CSV."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.fields import parse_time
from zohosim.guard import crm_api, crm_error, sim_state, too_many_requests
from zohosim.state import MODULES, Record, SimState

bp = Blueprint("bulk", __name__, url_prefix="/crm/bulk/<zver:version>")

COMPARATORS = {
    "equal", "not_equal", "in", "not_in", "greater_than", "greater_equal", "less_than", "less_equal",
    "starts_with", "ends_with", "contains", "not_contains", "between",
}  # fmt: skip


def _criterion_fn(state: SimState, crit: dict[str, Any]) -> Any:
    if "group" in crit:
        parts = [_criterion_fn(state, c) for c in crit["group"]]
        if str(crit.get("group_operator", "and")).lower() == "or":
            return lambda r: any(p(r) for p in parts)
        return lambda r: all(p(r) for p in parts)
    fld = crit.get("field")
    name = fld.get("api_name") if isinstance(fld, dict) else crit.get("api_name")
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
            "count": len(job["ids"]),
            "download_url": f"/crm/bulk/{job['version']}/read/{job['id']}/result",
            "per_page": state.config.bulk_read_per_page,
            "more_records": job["more"],
            "next_page_token": None,
        }
    return view


@bp.post("/read")
@crm_api("bulk.read.create", heavy=True)
def create_job(version: str) -> Response:
    state = sim_state()
    g.cost = state.config.bulk_read_credits
    raw = request.get_json(silent=True)
    body: dict[str, Any] = raw if isinstance(raw, dict) else {}
    query = body.get("query")
    if not isinstance(query, dict):
        return crm_error(
            "MANDATORY_NOT_FOUND", "required field not found", {"api_name": "query", "json_path": "$.query"}
        )
    module = (
        (query.get("module") or {}).get("api_name")
        if isinstance(query.get("module"), dict)
        else query.get("module")
    )
    if module not in MODULES:
        return crm_error(
            "INVALID_DATA", "invalid data", {"api_name": "module", "json_path": "$.query.module"}
        )
    fields = query.get("fields") or [f for f in state.fields if f != "id"]
    bad = [f for f in fields if f != "id" and f.split(".")[0] not in state.fields]
    if bad:
        return crm_error("INVALID_DATA", "invalid data", {"api_name": bad[0], "json_path": "$.query.fields"})
    if body.get("file_type", "csv") != "csv":
        return crm_error(
            "INVALID_DATA", "invalid data", {"api_name": "file_type", "json_path": "$.file_type"}
        )
    criteria = query.get("criteria")
    try:
        if criteria:
            _criterion_fn(state, criteria)
    except (ValueError, TypeError, IndexError):
        return crm_error(
            "INVALID_DATA", "invalid criteria", {"api_name": "criteria", "json_path": "$.query.criteria"}, 400
        )
    with state.lock:
        job_id = state.next_misc_id()
        job = {
            "id": job_id,
            "version": version,
            "module": module,
            "fields": ["id", *[f for f in fields if f != "id"]],
            "criteria": criteria,
            "page": int(query.get("page", 1)),
            "query": query,
            "state": "ADDED",
            "created": state.now(),
            "polls": 0,
            "ids": [],
            "more": False,
        }
        state.bulk_jobs[job_id] = job
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


def _advance(state: SimState, job: dict[str, Any]) -> None:
    if job["state"] == "COMPLETED":
        return
    cfg = state.config
    job["polls"] += 1
    if cfg.bulk_read_complete_after_s is not None:
        done = state.now() - job["created"] >= cfg.bulk_read_complete_after_s
    else:
        done = job["polls"] >= cfg.bulk_read_polls_to_complete
    if not done:
        job["state"] = "IN PROGRESS"
        return
    store = state.modules[job["module"]]
    pred = _criterion_fn(state, job["criteria"]) if job["criteria"] else None
    matched = [i for i in store.ids if pred is None or pred(store.records[i])]
    per_page = cfg.bulk_read_per_page
    start = (job["page"] - 1) * per_page
    job["ids"] = matched[start : start + per_page]
    job["more"] = len(matched) > start + per_page
    job["state"] = "COMPLETED"


@bp.get("/read/<job_id>")
@crm_api("bulk.read.status")
def job_status(version: str, job_id: str) -> Response:
    state = sim_state()
    g.cost = 0
    with state.lock:
        job = state.bulk_jobs.get(job_id)
        if job is None:
            return crm_error(
                "RESOURCE_NOT_FOUND", "the requested resource doesn't exist", {"id": job_id}, 404
            )
        _advance(state, job)
        view = _job_view(state, job)
    g.code = job["state"]
    return jsonify({"data": [view]})


def _csv_value(state: SimState, record: Record, name: str) -> str:
    if name == "id":
        return str(record.id)
    if name in ("Modified_Time", "Created_Time"):
        return state.fmt(record.modified if name == "Modified_Time" else record.created) or ""
    if name in ("Modified_By", "Created_By"):
        return record.modified_by if name == "Modified_By" else record.created_by
    value = record.get_path(name)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return str(value.get("id", ""))
    return str(value)


@bp.get("/read/<job_id>/result")
@crm_api("bulk.read.download", heavy=True)
def job_result(version: str, job_id: str) -> Response:
    state = sim_state()
    g.cost = 0
    with state.lock:
        job = state.bulk_jobs.get(job_id)
        if job is None:
            return crm_error(
                "RESOURCE_NOT_FOUND", "the requested resource doesn't exist", {"id": job_id}, 404
            )
        if job["state"] != "COMPLETED":
            return crm_error(
                "RESOURCE_NOT_FOUND",
                "the job is not completed yet",
                {"id": job_id, "state": job["state"]},
                404,
            )
        now = state.now()
        while state.bulk_downloads and state.bulk_downloads[0] <= now - 60:
            state.bulk_downloads.popleft()
        if len(state.bulk_downloads) >= state.config.bulk_download_limit:
            return too_many_requests("bulk_download")
        state.bulk_downloads.append(now)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(job["fields"])
        store = state.modules[job["module"]]
        for rid in job["ids"]:
            record = store.records.get(rid)
            if record is not None:
                writer.writerow([_csv_value(state, record, f) for f in job["fields"]])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{job_id}.csv", text.getvalue())
    g.code = "SUCCESS"
    resp = Response(buf.getvalue(), mimetype="application/zip")
    resp.headers["Content-Disposition"] = f"attachment; filename={job_id}.zip"
    return resp
