"""The admin JSON API (bearer token of a user whose app_metadata.role is admin). Errors are JSON
{"error": {"code", "message", ...}}; validation failures are 422 with details in error.fields."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from webapp.auth.guards import admin_token_required
from webapp.services import admin, admin_reports, admin_users

bp = Blueprint("admin_api", __name__, url_prefix="/api/admin")


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _body() -> Any:
    return request.get_json(silent=True)


# -- providers ----------------------------------------------------------------------------------------------------

@bp.get("/llm/providers")
@admin_token_required
def list_providers() -> Any:
    views = admin.providers(_svc().db, _svc().settings, g.claims)
    return jsonify({"providers": [admin.provider_dict(v, with_keys=True) for v in views]})


@bp.put("/llm/providers/<uuid:provider_id>")
@admin_token_required
def update_provider(provider_id: Any) -> Any:
    view = admin.update_provider(_svc().db, _svc().settings, g.claims, str(provider_id), _body())
    return jsonify({"provider": admin.provider_dict(view, with_keys=True)})


@bp.post("/llm/providers/<uuid:provider_id>/keys")
@admin_token_required
def add_key(provider_id: Any) -> Any:
    svc = _svc()
    saved = admin.add_key(svc.db, svc.settings, svc.keyring, g.claims, str(provider_id), _body())
    return jsonify({"key": admin.key_dict(saved.key), "superseded": saved.superseded,
                    "check": {"status": saved.check.status, "message": saved.check.message},
                    "provider": admin.provider_dict(saved.view, with_keys=True)}), 201


@bp.delete("/llm/providers/<uuid:provider_id>/keys/<uuid:key_id>")
@admin_token_required
def revoke_key(provider_id: Any, key_id: Any) -> Any:
    view = admin.revoke_key(_svc().db, _svc().settings, g.claims, str(provider_id), str(key_id))
    return jsonify({"provider": admin.provider_dict(view, with_keys=True)})


# -- the settings view of providers: enable, multiplier, key status -----------------------------------------------

@bp.get("/settings/providers")
@admin_token_required
def settings_providers() -> Any:
    views = admin.providers(_svc().db, _svc().settings, g.claims)
    return jsonify({"providers": [admin.provider_dict(v, with_keys=True) for v in views],
                    "multiplier_bounds": {"min": _svc().settings.multiplier_min,
                                          "max": _svc().settings.multiplier_max}})


@bp.put("/settings/providers/<uuid:provider_id>/enable")
@admin_token_required
def enable_provider(provider_id: Any) -> Any:
    body = _body()
    value = body.get("enabled") if isinstance(body, dict) else None
    view = admin.set_enabled(_svc().db, _svc().settings, g.claims, str(provider_id), value)
    return jsonify({"provider": admin.provider_dict(view, with_keys=True)})


@bp.put("/settings/providers/<uuid:provider_id>/multiplier")
@admin_token_required
def provider_multiplier(provider_id: Any) -> Any:
    body = _body()
    value = body.get("multiplier") if isinstance(body, dict) else None
    view = admin.set_multiplier(_svc().db, _svc().settings, g.claims, str(provider_id), value)
    return jsonify({"provider": admin.provider_dict(view, with_keys=True)})


# -- users and credits --------------------------------------------------------------------------------------------

@bp.get("/users")
@admin_token_required
def search_users() -> Any:
    query, users = admin_users.search(_svc().db, g.claims, request.args.get("q", ""))
    return jsonify({"q": query, "users": [admin_users.user_dict(u) for u in users]})


@bp.get("/users/<uuid:user_id>")
@admin_token_required
def user_detail(user_id: Any) -> Any:
    return jsonify(admin_users.detail_dict(admin_users.detail(_svc().db, g.claims, str(user_id))))


@bp.post("/users/<uuid:user_id>/credits")
@admin_token_required
def adjust_credits(user_id: Any) -> Any:
    detail = admin_users.adjust(_svc().db, g.claims, str(user_id), _body())
    return jsonify(admin_users.detail_dict(detail))


# -- logs, usage, audit -------------------------------------------------------------------------------------------

@bp.get("/logs")
@admin_token_required
def logs() -> Any:
    return jsonify(admin_reports.logs_dict(admin_reports.logs(_svc().db, g.claims, request.args)))


@bp.get("/logs/<uuid:request_id>")
@admin_token_required
def receipt(request_id: Any) -> Any:
    return jsonify({"log": admin_reports.log_dict(admin_reports.receipt(_svc().db, g.claims, str(request_id)))})


@bp.get("/usage")
@admin_token_required
def usage() -> Any:
    return jsonify(admin_reports.analytics_dict(admin_reports.analytics(_svc().db, g.claims, request.args)))


@bp.get("/audit")
@admin_token_required
def audit() -> Any:
    return jsonify(admin_reports.audit_dict(admin_reports.audit(_svc().db, g.claims, request.args)))
