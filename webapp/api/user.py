"""The signed-in user's JSON API (bearer token)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from webapp.api.v1 import team_header  # the /v1 routes' rule for X-Switchboard-Team
from webapp.auth.guards import session_token_required, token_required
from webapp.services import api_keys, csv_export, date_ranges, usage_export, user_account, user_requests, user_settings
from webapp.services import keys as keys_service
from webapp.services import quote as quote_service
from webapp.services import usage as usage_service
from webapp.services.gateway_parts import team_refused

bp = Blueprint("user_api", __name__, url_prefix="/api/user")


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _catalog() -> Any:
    # Version-checked against the database (once per request), so an admin change made through another worker
    # is seen here too.
    if "catalog" not in g:
        g.catalog = _svc().gateway.context(g.claims)[1]
    return g.catalog


@bp.get("/settings")
@token_required
def get_settings() -> Any:
    return jsonify({"settings": user_settings.to_dict(user_settings.get(_svc().db, g.claims))})


@bp.put("/settings")
@token_required
def put_settings() -> Any:
    svc = _svc()
    ctx, g.catalog = svc.gateway.context(g.claims)  # overrides are checked against what this user is offered
    prefs = user_settings.update(svc.db, g.claims, request.get_json(silent=True), g.catalog, (ctx, svc.settings))
    return jsonify({"settings": user_settings.to_dict(prefs)})


@bp.get("/llm/keys")
@token_required
def list_keys() -> Any:
    return jsonify({"keys": keys_service.listing(_svc().db, _catalog(), g.claims)})


@bp.put("/llm/keys/<provider>")
@token_required
def put_key(provider: str) -> Any:
    svc = _svc()
    info, check = keys_service.put(svc.db, svc.settings, svc.keyring, _catalog(), g.claims, provider,
                                   request.get_json(silent=True))
    return jsonify({"key": keys_service.key_dict(info, _catalog()),
                    "check": {"status": check.status, "message": check.message}})


@bp.delete("/llm/keys/<provider>")
@token_required
def delete_key(provider: str) -> Any:
    keys_service.delete(_svc().db, _catalog(), g.claims, provider)
    return "", 204


@bp.get("/llm/usage")
@token_required
def usage() -> Any:
    r = date_ranges.parse(request.args)  # range=7d|30d|this_month|last_month|year|custom, from/to (UTC days)
    as_csv = csv_export.wants_csv(request.args)
    group_by = [g_ for g_ in request.args.get("group_by", "").split(",") if g_]
    api_key = usage_service.parse_api_key(request.args.get("api_key"))
    data = usage_service.summary(_svc().db, g.claims, r.start, r.end, group_by, api_key)
    if as_csv:
        return csv_export.response(usage_export.usage_rows(data), csv_export.filename("usage", r))
    return jsonify({**data, "range": r.preset})


@bp.get("/llm/requests")
@token_required
def requests_page() -> Any:
    """Every one of your requests in a range, a keyset page at a time; `format=csv` streams all of them."""
    r = date_ranges.parse(request.args)
    if csv_export.wants_csv(request.args):
        api_key = user_requests.parse_paging(request.args)[3]  # every row: limit and cursors checked, not used
        return csv_export.response(user_requests.export_rows(_svc().db, g.claims, r, api_key),
                                   csv_export.filename("requests", r))
    return jsonify(user_requests.page_dict(user_requests.page(_svc().db, g.claims, r, request.args)))


@bp.get("/credits")
@token_required
def credits() -> Any:
    return jsonify(user_account.credits_summary(_svc().db, g.claims))


@bp.get("/credits/ledger")
@token_required
def credits_ledger() -> Any:
    limit, before = user_account.parse_page(request.args.get("limit"), request.args.get("before"))
    return jsonify(user_account.ledger_dict(user_account.ledger_page(_svc().db, g.claims, limit, before)))


@bp.get("/llm/receipts/<request_id>")
@token_required
def receipt(request_id: str) -> Any:
    return jsonify({"receipt": user_account.receipt_dict(user_account.receipt(_svc().db, g.claims, request_id))})


@bp.post("/llm/quote")
@token_required
def quote() -> Any:
    gateway = _svc().gateway
    # Planned as the gateway would bill this very request: the named team, else the key's team or the default
    # team (while still a member), else your own wallet -- with that team's routing and keys.
    ctx, catalog = gateway.context(g.claims, None, team_header(), billing=True)
    if ctx.team_refusal:
        raise team_refused(ctx.team_refusal)
    return jsonify(quote_service.quote(request.get_json(silent=True), ctx, catalog,
                                       lambda p: gateway.member_ready(p, catalog), gateway.planner(ctx, catalog)))


# -- personal API keys (a key cannot manage keys: session_token_required) ----------------------------------------

@bp.get("/api-keys")
@session_token_required
def list_api_keys() -> Any:
    return jsonify({"api_keys": [api_keys.key_dict(k) for k in api_keys.listing(_svc().db, g.claims)]})


@bp.post("/api-keys")
@session_token_required
def create_api_key() -> Any:
    svc = _svc()
    key, secret = api_keys.create(svc.db, svc.settings, _catalog(), g.claims, request.get_json(silent=True))
    resp = jsonify({"api_key": api_keys.key_dict(key), "secret": secret,
                    "warning": "Copy the key now: Switchboard keeps only a keyed hash and cannot show it again."})
    resp.headers["Cache-Control"] = "no-store"
    return resp, 201


@bp.patch("/api-keys/<uuid:key_id>")
@session_token_required
def update_api_key(key_id: Any) -> Any:
    key = api_keys.update(_svc().db, _catalog(), g.claims, str(key_id), request.get_json(silent=True))
    return jsonify({"api_key": api_keys.key_dict(key)})


@bp.delete("/api-keys/<uuid:key_id>")
@session_token_required
def revoke_api_key(key_id: Any) -> Any:
    return jsonify({"api_key": api_keys.key_dict(api_keys.revoke(_svc().db, g.claims, str(key_id)))})
