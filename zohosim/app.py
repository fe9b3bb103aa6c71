"""The Flask application: one base URL for Accounts, CRM, Bulk Read, Campaigns and the /_sim control API."""

from __future__ import annotations

import time
import uuid

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from zohosim import auth, bulk, campaigns, control, coql, crm
from zohosim.config import SimConfig
from zohosim.errors import error_body
from zohosim.state import SimState


class ApiVersionConverter(BaseConverter):
    """CRM API versions v2, v2.1, v3 ... v8."""

    regex = r"v[2-8](?:\.[0-9])?"


def create_app(state: SimState | None = None, config: SimConfig | dict | None = None) -> Flask:
    """Build the simulator app around ``state`` (a fresh SimState when None)."""
    if isinstance(config, dict):
        config = SimConfig.from_dict(config)
    if state is None:
        state = SimState(config)
    elif config is not None:
        state.config = config
    app = Flask("zohosim")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.url_map.converters["zver"] = ApiVersionConverter
    app.url_map.strict_slashes = False
    app.extensions["zohosim"] = state
    for blueprint in (auth.bp, crm.bp, coql.bp, bulk.bp, campaigns.bp, control.bp):
        app.register_blueprint(blueprint)

    @app.before_request
    def _begin() -> None:
        g.started = time.perf_counter()
        g.request_id = uuid.uuid4().hex[:16]
        g.op = None
        g.code = None
        g.charged = 0
        state.tick()

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers["X-ZOHOSIM-REQUEST-ID"] = g.get("request_id", "")
        if request.path.startswith("/_sim"):
            return resp
        coql = request.get_json(force=True, silent=True) if g.get("op") == "crm.coql" else None
        state.log_call(
            {
                "time": state.fmt(state.now()),
                "method": request.method,
                "path": request.path,
                "query": request.query_string.decode(errors="replace"),
                "op": g.get("op"),
                "status": resp.status_code,
                "code": g.get("code"),
                "entry_codes": g.get("entry_codes"),
                "credits": g.get("charged", 0),
                "request_id": g.get("request_id"),
                "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2),
                # What a COQL call asked (tests count the same question asked twice)
                **({"select_query": coql.get("select_query")} if isinstance(coql, dict) else {}),
            }
        )
        return resp

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response | HTTPException:
        if request.path.startswith("/_sim"):
            resp = jsonify({"error": exc.name, "description": exc.description})
            resp.status_code = exc.code or 500
            return resp
        if request.path.startswith("/api/"):
            g.code = "1004"
            return jsonify(
                {
                    "code": "1004",
                    "status": "error",
                    "message": "Invalid URL. Please check the URL.",
                    "uri": request.path,
                }
            )
        if request.path.startswith("/oauth"):
            return exc
        g.code = "INVALID_URL_PATTERN"
        code = "INVALID_URL_PATTERN" if exc.code == 404 else "INVALID_REQUEST_METHOD"
        message = (
            "Please check if the URL trying to access is a correct one"
            if exc.code == 404
            else "The http request method type is not a valid one"
        )
        resp = jsonify(error_body(code, message))
        resp.status_code = 404 if exc.code == 404 else 405
        return resp

    return app
