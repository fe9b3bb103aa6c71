"""Zoho Accounts: the token endpoint, revocation, and access-token checks for API calls."""

from __future__ import annotations

from collections import deque
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from zohosim.state import AccessToken, SimState

bp = Blueprint("accounts", __name__)

SCOPE = "ZohoCRM.modules.ALL ZohoCRM.settings.ALL ZohoCRM.users.READ ZohoCRM.org.READ ZohoCRM.bulk.ALL ZohoCRM.coql.READ ZohoCampaigns.contact.ALL ZohoCampaigns.campaign.ALL"


def _state() -> SimState:
    from zohosim.guard import sim_state

    return sim_state()


def _token_reply(body: dict[str, Any]) -> Response:
    g.code = body.get("error", "SUCCESS")
    return jsonify(body)  # always HTTP 200, even for errors [zoho-api.md section 1]


def api_domain(state: SimState) -> str:
    return state.config.api_domain or request.host_url.rstrip("/")


@bp.post("/oauth/v2/token")
def token() -> Response:
    state = _state()
    g.op = "token"
    args = request.values
    cfg = state.config
    if state.faults.pick("wrong_dc", "token") is not None:
        return _token_reply({"error": "invalid_client"})
    if args.get("client_id") != cfg.client_id or args.get("client_secret") != cfg.client_secret:
        return _token_reply({"error": "invalid_client"})
    grant = args.get("grant_type")
    if grant != "refresh_token":
        return _token_reply({"error": "unsupported_grant_type" if grant else "invalid_code"})
    refresh = args.get("refresh_token", "")
    with state.lock:
        if refresh not in cfg.refresh_tokens or refresh in state.revoked_refresh:
            return _token_reply({"error": "invalid_code"})
        now = state.now()
        mints = state.mints.setdefault(refresh, deque())
        while mints and mints[0] <= now - cfg.token_mint_window_s:
            mints.popleft()
        if len(mints) >= cfg.token_mint_limit:
            return _token_reply(dict(cfg.token_throttle_body))
        mints.append(now)
        value = state.new_token_value()
        state.tokens[value] = AccessToken(value, refresh, now, now + cfg.token_ttl_s)
        active = state.tokens_by_refresh.setdefault(refresh, deque())
        active.append(value)
        while len(active) > cfg.max_active_tokens:
            state.tokens.pop(active.popleft(), None)
    return _token_reply(
        {
            "access_token": value,
            "scope": SCOPE,
            "api_domain": api_domain(state),
            "token_type": "Bearer",
            "expires_in": cfg.token_ttl_s,
        }
    )


@bp.post("/oauth/v2/token/revoke")
def revoke() -> Response:
    state = _state()
    g.op = "token.revoke"
    value = request.values.get("token", "")
    with state.lock:
        if value in state.config.refresh_tokens:
            state.revoked_refresh.add(value)
            for access in state.tokens_by_refresh.pop(value, deque()):
                state.tokens.pop(access, None)
        else:
            state.tokens.pop(value, None)
    return _token_reply({"status": "success"})


def token_from_header(header: str | None) -> str | None:
    """The access token in an ``Authorization`` header, or None when there is no usable one.

    No header, or a scheme other than ``Zoho-oauthtoken`` (``Bearer`` included), gives None; whether the
    token is valid is for ``check_token``.
    """
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme != "Zoho-oauthtoken" or not value:
        return None
    return value


def check_token(state: SimState, value: str) -> bool:
    with state.lock:
        tok = state.tokens.get(value)
        if tok is None:
            return False
        if tok.expires_at <= state.now():
            state.tokens.pop(value, None)
            return False
        return True
