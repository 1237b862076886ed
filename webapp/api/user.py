"""The signed-in user's JSON API (bearer token)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from webapp.auth.guards import token_required
from webapp.services import keys as keys_service
from webapp.services import quote as quote_service
from webapp.services import usage as usage_service
from webapp.services import user_account, user_settings

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
    prefs = user_settings.update(_svc().db, g.claims, request.get_json(silent=True), _catalog())
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
    start, end = usage_service.parse_range(request.args.get("from"), request.args.get("to"))
    group_by = [g_ for g_ in request.args.get("group_by", "").split(",") if g_]
    return jsonify(usage_service.summary(_svc().db, g.claims, start, end, group_by))


@bp.get("/credits")
@token_required
def credits() -> Any:
    return jsonify(user_account.credits_summary(_svc().db, g.claims))


@bp.post("/llm/quote")
@token_required
def quote() -> Any:
    gateway = _svc().gateway
    ctx, catalog = gateway.context(g.claims)
    return jsonify(quote_service.quote(request.get_json(silent=True), ctx, catalog,
                                       lambda p: gateway.member_ready(p, catalog)))
