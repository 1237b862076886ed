"""Webhook endpoints as JSON: the same routes for a user's own endpoints (/api/user/webhooks), a team's
(/api/teams/<slug>/webhooks, owners and admins) and the site's (/api/admin/webhooks, admins). A personal API key
cannot manage webhooks (it could otherwise read a new signing secret)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from webapp.auth.guards import admin_token_required, session_token_required
from webapp.services import webhooks

user_bp = Blueprint("webhooks_user_api", __name__, url_prefix="/api/user/webhooks")
team_bp = Blueprint("webhooks_team_api", __name__, url_prefix="/api/teams/<slug>/webhooks")
admin_bp = Blueprint("webhooks_admin_api", __name__, url_prefix="/api/admin/webhooks")
BLUEPRINTS = (user_bp, team_bp, admin_bp)
SECRET_WARNING = "Copy the signing secret now: it is shown only once (rotate it to get a new one)."  # noqa: S105


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _created(endpoint: Any, secret: str, status: int) -> Any:
    resp = jsonify({"webhook": webhooks.endpoint_dict(endpoint), "secret": secret, "warning": SECRET_WARNING})
    resp.headers["Cache-Control"] = "no-store"
    return resp, status


def _routes(bp: Blueprint, guard: Callable[[Any], Any], scope_of: Callable[[dict[str, Any]], webhooks.Scope]) -> None:
    """The endpoint routes on one blueprint; `scope_of` reads the scope from the URL's values (the team slug)."""

    def view(name: str, rule: str, method: str) -> Callable[[Callable[..., Any]], Any]:
        def decorate(fn: Callable[..., Any]) -> Any:
            def wrapped(**values: Any) -> Any:
                endpoint_id = values.pop("endpoint_id", None)
                scope = scope_of(values)
                return fn(scope, endpoint_id) if endpoint_id is not None else fn(scope)

            wrapped.__name__ = name
            bp.add_url_rule(rule, name, guard(wrapped), methods=[method])
            return fn
        return decorate

    @view("list", "", "GET")
    def list_(scope: webhooks.Scope) -> Any:
        return jsonify({"webhooks": [webhooks.endpoint_dict(e) for e in webhooks.listing(_svc().db, g.claims, scope)],
                        "event_types": webhooks.EVENT_TYPES})

    @view("create", "", "POST")
    def create(scope: webhooks.Scope) -> Any:
        svc = _svc()
        endpoint, secret = webhooks.create(svc.db, svc.settings, svc.keyring, g.claims, scope,
                                           request.get_json(silent=True))
        return _created(endpoint, secret, 201)

    @view("get", "/<uuid:endpoint_id>", "GET")
    def get(scope: webhooks.Scope, endpoint_id: Any) -> Any:
        return jsonify({"webhook": webhooks.endpoint_dict(webhooks.get(_svc().db, g.claims, scope, endpoint_id))})

    @view("update", "/<uuid:endpoint_id>", "PATCH")
    def update(scope: webhooks.Scope, endpoint_id: Any) -> Any:
        svc = _svc()
        endpoint = webhooks.update(svc.db, svc.settings, g.claims, scope, endpoint_id, request.get_json(silent=True))
        return jsonify({"webhook": webhooks.endpoint_dict(endpoint)})

    @view("delete", "/<uuid:endpoint_id>", "DELETE")
    def delete(scope: webhooks.Scope, endpoint_id: Any) -> Any:
        webhooks.delete(_svc().db, g.claims, scope, endpoint_id)
        return "", 204

    @view("rotate", "/<uuid:endpoint_id>/rotate-secret", "POST")
    def rotate(scope: webhooks.Scope, endpoint_id: Any) -> Any:
        svc = _svc()
        endpoint, secret = webhooks.rotate(svc.db, svc.keyring, g.claims, scope, endpoint_id)
        return _created(endpoint, secret, 200)

    @view("test", "/<uuid:endpoint_id>/test", "POST")
    def test(scope: webhooks.Scope, endpoint_id: Any) -> Any:
        delivery = webhooks.send_test(_svc().db, g.claims, scope, endpoint_id)
        return jsonify({"delivery": webhooks.delivery_dict(delivery)}), 202

    @view("deliveries", "/<uuid:endpoint_id>/deliveries", "GET")
    def deliveries(scope: webhooks.Scope, endpoint_id: Any) -> Any:
        limit = webhooks.parse_limit(request.args.get("limit"))
        found = webhooks.deliveries(_svc().db, g.claims, scope, endpoint_id, limit)
        return jsonify({"deliveries": [webhooks.delivery_dict(d) for d in found]})


_routes(user_bp, session_token_required, lambda _: webhooks.Scope("user"))
_routes(team_bp, session_token_required, lambda v: webhooks.Scope("team", str(v.get("slug", ""))))
_routes(admin_bp, admin_token_required, lambda _: webhooks.Scope("site"))
