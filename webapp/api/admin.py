"""The admin JSON API (bearer token of a user whose app_metadata.role is admin). Errors are JSON
{"error": {"code", "message", ...}}; validation failures are 422 with details in error.fields."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from webapp.auth.guards import admin_token_required
from webapp.services import admin, admin_reports, admin_users, csv_export, date_ranges, usage_export

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


@bp.post("/llm/providers")
@admin_token_required
def create_provider() -> Any:
    from webapp.services import provider_admin

    view = provider_admin.create_provider(_svc().db, _svc().settings, g.claims, _body())
    return jsonify({"provider": admin.provider_dict(view, with_keys=True)}), 201


@bp.patch("/llm/providers/<uuid:provider_id>")
@admin_token_required
def patch_provider(provider_id: Any) -> Any:
    view = admin.update_provider(_svc().db, _svc().settings, g.claims, str(provider_id), _body())
    return jsonify({"provider": admin.provider_dict(view, with_keys=True)})


@bp.delete("/llm/providers/<uuid:provider_id>")
@admin_token_required
def retire_provider(provider_id: Any) -> Any:
    from webapp.services import provider_admin

    done = provider_admin.retire_provider(_svc().db, _svc().settings, g.claims, str(provider_id))
    return jsonify({"retired": {"slug": done.slug, "name": done.name, "archived": done.archived,
                                "users_notified": done.users_notified}})


@bp.post("/llm/providers/<uuid:provider_id>/models/fetch")
@admin_token_required
def fetch_models(provider_id: Any) -> Any:
    from webapp.services import provider_admin

    svc = _svc()
    got = provider_admin.fetch_models(svc.db, svc.settings, svc.keyring, g.claims, str(provider_id))
    return jsonify({"models": [{"id": m, "offered": m in got.offered} for m in got.models],
                    "skipped": got.skipped})


@bp.post("/llm/providers/<uuid:provider_id>/models")
@admin_token_required
def add_models(provider_id: Any) -> Any:
    from webapp.services import provider_admin

    view = provider_admin.add_models(_svc().db, _svc().settings, g.claims, str(provider_id), _body())
    return jsonify({"provider": admin.provider_dict(view, with_keys=True)})


@bp.patch("/llm/providers/<uuid:provider_id>/models")
@admin_token_required
def bulk_edit_models(provider_id: Any) -> Any:
    from webapp.services import provider_admin

    view = provider_admin.bulk_edit(_svc().db, _svc().settings, g.claims, str(provider_id), _body())
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


@bp.post("/users/<uuid:user_id>/password-reset")
@admin_token_required
def password_reset_link(user_id: Any) -> Any:
    """A one-time link (1 hour, single use) that lets the user choose a new password; the only copy is this answer.
    Local sign-in backend only (409 reset_links_local_only with Supabase). Audited."""
    from flask import url_for

    from webapp.services import account_security

    svc = _svc()
    link = account_security.create_reset_link_by_admin(svc.db, svc.settings, g.claims, str(user_id))
    resp = jsonify({"user_id": link.user_id, "email": link.email, "expires_at": link.expires_at.isoformat(),
                    "url": url_for("account.reset_password", token=link.token, _external=True)})
    resp.headers["Cache-Control"] = "no-store"
    return resp, 201


# -- logs, usage, audit -------------------------------------------------------------------------------------------

@bp.get("/logs")
@admin_token_required
def logs() -> Any:
    if csv_export.wants_csv(request.args):  # every row the filters match, streamed (paging ignored)
        return csv_export.response(usage_export.admin_log_rows(_svc().db, g.claims, request.args),
                                   csv_export.filename("logs"))
    return jsonify(admin_reports.logs_dict(admin_reports.logs(_svc().db, g.claims, request.args)))


@bp.get("/logs/<uuid:request_id>")
@admin_token_required
def receipt(request_id: Any) -> Any:
    return jsonify({"log": admin_reports.log_dict(admin_reports.receipt(_svc().db, g.claims, str(request_id)))})


@bp.get("/usage")
@admin_token_required
def usage() -> Any:
    r = date_ranges.parse(request.args)  # range=7d|30d|this_month|last_month|year|custom, from/to (UTC days)
    as_csv = csv_export.wants_csv(request.args)
    data = admin_reports.analytics_dict(admin_reports.analytics(_svc().db, g.claims, r.report_args()))
    if as_csv:
        return csv_export.response(usage_export.analytics_rows(data), csv_export.filename("analytics", r))
    return jsonify({**data, "range": r.preset})


@bp.get("/audit")
@admin_token_required
def audit() -> Any:
    return jsonify(admin_reports.audit_dict(admin_reports.audit(_svc().db, g.claims, request.args)))


# -- personal API keys --------------------------------------------------------------------------------------------

@bp.get("/users/<uuid:user_id>/api-keys")
@admin_token_required
def user_api_keys(user_id: Any) -> Any:
    from webapp.services import api_keys

    keys = api_keys.admin_listing(_svc().db, g.claims, str(user_id))
    return jsonify({"api_keys": [api_keys.key_dict(k) for k in keys]})


@bp.delete("/api-keys/<uuid:key_id>")
@admin_token_required
def revoke_api_key(key_id: Any) -> Any:
    from webapp.services import api_keys

    return jsonify({"api_key": api_keys.key_dict(api_keys.admin_revoke(_svc().db, g.claims, str(key_id)))})


# -- site settings: credits at sign-up, a credit's display value, the low-balance threshold -----------------------

@bp.get("/settings/credits")
@admin_token_required
def credit_settings() -> Any:
    from webapp.services import site_settings

    return jsonify({"settings": site_settings.settings_dict(site_settings.for_admin(_svc().db, g.claims))})


@bp.put("/settings/credits")
@admin_token_required
def update_credit_settings() -> Any:
    from webapp.services import site_settings

    saved, changed = site_settings.update(_svc().db, g.claims, _body())
    return jsonify({"settings": site_settings.settings_dict(saved), "changed": changed})
