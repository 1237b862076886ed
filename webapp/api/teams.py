"""Teams JSON API: /api/teams/... for members, team admins and owners, /api/admin/teams/... for site admins.

Reads take a bearer token (or a personal API key: read-only); every change needs a Supabase token or the session
(a personal API key cannot manage teams). Who may do what is decided in the database (RLS and the team_* SQL
functions); errors are {"error": {"code", "message", ...}} with stable codes."""

from __future__ import annotations

import re
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request

from webapp.auth.guards import admin_token_required, session_token_required, token_required
from webapp.errors import ValidationError, unknown_field
from webapp.services import teams
from webapp.services import usage as usage_service
from webapp.services.user_account import parse_page

bp = Blueprint("teams_api", __name__, url_prefix="/api/teams")
admin_bp = Blueprint("admin_teams_api", __name__, url_prefix="/api/admin")
_DIGITS = re.compile(r"[0-9]{1,9}")


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _body(*fields: str) -> Any:
    """The JSON body; an object naming a field the route does not take is a 422, as on the other JSON routes."""
    body = request.get_json(silent=True)
    if isinstance(body, dict) and (unknown := unknown_field(body, fields)):
        raise ValidationError({"body": unknown})
    return body


def _catalog() -> Any:
    return _svc().gateway.context(g.claims)[1]


def _team(slug: str) -> Any:
    return jsonify({"team": teams.team_dict(teams.get_team(_svc().db, g.claims, slug))})


# -- teams ----------------------------------------------------------------------------------------------------------

@bp.get("")
@token_required
def list_mine() -> Any:
    return jsonify({"teams": [teams.team_dict(t) for t in teams.my_teams(_svc().db, g.claims)],
                    "default_team": teams.default_team(_svc().db, g.claims)})


@bp.post("")
@session_token_required
def create() -> Any:
    team = teams.create_team(_svc().db, g.claims, _body("name", "slug"))
    return jsonify({"team": teams.team_dict(team)}), 201


@bp.post("/join")
@session_token_required
def join() -> Any:
    team = teams.join(_svc().db, _svc().settings, g.claims, _body("token"))
    return jsonify({"team": teams.team_dict(team)})


@bp.put("/default")
@session_token_required
def set_default() -> Any:
    body = _body("team")
    if not isinstance(body, dict) or "team" not in body or not (body["team"] is None or isinstance(body["team"], str)):
        raise ValidationError({"team": "A team slug, or null for personal billing."})
    return jsonify({"default_team": teams.set_default_team(_svc().db, g.claims, body["team"])})


@bp.get("/<slug>")
@token_required
def get(slug: str) -> Any:
    return _team(slug)


@bp.patch("/<slug>")
@session_token_required
def rename(slug: str) -> Any:
    return jsonify({"team": teams.team_dict(teams.rename(_svc().db, g.claims, slug, _body("name")))})


# -- members --------------------------------------------------------------------------------------------------------

@bp.get("/<slug>/members")
@token_required
def members(slug: str) -> Any:
    return jsonify({"members": [teams.member_dict(m) for m in teams.members(_svc().db, g.claims, slug)]})


@bp.put("/<slug>/members/<user_id>/role")
@session_token_required
def set_role(slug: str, user_id: str) -> Any:
    teams.set_role(_svc().db, g.claims, slug, user_id, _body("role"))
    return members(slug)


@bp.put("/<slug>/members/<user_id>/cap")
@session_token_required
def set_cap(slug: str, user_id: str) -> Any:
    teams.set_cap(_svc().db, g.claims, slug, user_id, _body("monthly_credit_cap"))
    return members(slug)


@bp.delete("/<slug>/members/<user_id>")
@session_token_required
def remove(slug: str, user_id: str) -> Any:
    teams.remove_member(_svc().db, g.claims, slug, user_id)
    return "", 204


@bp.post("/<slug>/leave")
@session_token_required
def leave(slug: str) -> Any:
    teams.leave(_svc().db, g.claims, slug)
    return "", 204


@bp.post("/<slug>/transfer")
@session_token_required
def transfer(slug: str) -> Any:
    teams.transfer(_svc().db, g.claims, slug, _body("user_id"))
    return members(slug)


# -- invitations ----------------------------------------------------------------------------------------------------

@bp.get("/<slug>/invitations")
@token_required
def invitations(slug: str) -> Any:
    rows = teams.invitations(_svc().db, g.claims, slug)
    return jsonify({"invitations": [teams.invitation_dict(i) for i in rows]})


@bp.post("/<slug>/invitations")
@session_token_required
def invite(slug: str) -> Any:
    body = _body("expires_in_days", "role")
    inv, token = teams.create_invitation(_svc().db, _svc().settings, g.claims, slug, body)
    resp = jsonify({"invitation": teams.invitation_dict(inv), "token": token,
                    "warning": "Share the token now: Switchboard keeps only a keyed hash and cannot show it again."})
    resp.headers["Cache-Control"] = "no-store"
    return resp, 201


@bp.delete("/<slug>/invitations/<invitation_id>")
@session_token_required
def revoke_invitation(slug: str, invitation_id: str) -> Any:
    teams.revoke_invitation(_svc().db, g.claims, slug, invitation_id)
    return "", 204


# -- wallet, caps, keys, routing, usage -----------------------------------------------------------------------------

@bp.get("/<slug>/wallet")
@token_required
def wallet(slug: str) -> Any:
    limit, before = parse_page(request.args.get("limit"), request.args.get("before"))
    team = teams.get_team(_svc().db, g.claims, slug)
    page = teams.ledger_page(_svc().db, g.claims, slug, limit, before)
    return jsonify({"balance": teams.team_dict(team)["balance"], "balance_micro": team.balance,
                    **teams.ledger_dict(page)})


@bp.get("/<slug>/keys")
@token_required
def list_keys(slug: str) -> Any:
    catalog = _catalog()
    return jsonify({"keys": [teams.key_dict(k, catalog) for k in teams.keys(_svc().db, g.claims, slug)]})


@bp.put("/<slug>/keys/<provider>")
@session_token_required
def put_key(slug: str, provider: str) -> Any:
    svc = _svc()
    catalog = _catalog()
    body = _body("api_key", "base_url")
    key = teams.put_key(svc.db, svc.settings, svc.keyring, catalog, g.claims, slug, provider, body)
    return jsonify({"key": teams.key_dict(key, catalog)})


@bp.delete("/<slug>/keys/<provider>")
@session_token_required
def delete_key(slug: str, provider: str) -> Any:
    teams.delete_key(_svc().db, _catalog(), g.claims, slug, provider)
    return "", 204


@bp.get("/<slug>/routing")
@token_required
def get_routing(slug: str) -> Any:
    return jsonify({"routing": teams.get_team(_svc().db, g.claims, slug).routing})


@bp.put("/<slug>/routing")
@session_token_required
def put_routing(slug: str) -> Any:
    body = _body("allow_dearer_fallbacks", "default_provider", "fallbacks_enabled", "provider_priorities",
                 "task_overrides")
    team = teams.set_routing(_svc().db, _catalog(), g.claims, slug, body)
    return jsonify({"routing": team.routing})


@bp.put("/<slug>/api-keys/<key_id>")
@session_token_required
def bind_api_key(slug: str, key_id: str) -> Any:
    teams.bind_api_key(_svc().db, g.claims, key_id, slug)
    return "", 204


@bp.delete("/<slug>/api-keys/<key_id>")
@session_token_required
def unbind_api_key(slug: str, key_id: str) -> Any:
    # No membership needed: an ex-member whose key still names the team (and is refused) unbinds it here.
    teams.bind_api_key(_svc().db, g.claims, key_id, None)
    return "", 204


@bp.get("/<slug>/usage")
@token_required
def usage(slug: str) -> Any:
    start, end = usage_service.parse_range(request.args.get("from"), request.args.get("to"))
    rows = teams.usage_by_member(_svc().db, g.claims, slug, start, end)
    return jsonify({"from": start.isoformat(), "to": end.isoformat(),
                    "members": [teams.usage_dict(u) for u in rows]})


# -- site admins ----------------------------------------------------------------------------------------------------

def _int_arg(name: str, default: int, maximum: int, minimum: int = 0) -> int:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    if not _DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise ValidationError({name: f"A whole number from {minimum} to {maximum}."})
    return int(raw)


@admin_bp.get("/teams")
@admin_token_required
def admin_list() -> Any:
    limit = _int_arg("limit", 50, 200, minimum=1)
    offset = _int_arg("offset", 0, 1_000_000)
    rows, total = teams.admin_list(_svc().db, g.claims, request.args.get("q"), limit, offset)
    return jsonify({"teams": [teams.team_dict(t) for t in rows], "total": total})


@admin_bp.get("/teams/<slug>")
@admin_token_required
def admin_detail(slug: str) -> Any:
    team, rows = teams.admin_detail(_svc().db, g.claims, slug)
    return jsonify({"team": teams.team_dict(team), "members": [teams.member_dict(m) for m in rows]})


@admin_bp.post("/teams/<slug>/credits")
@admin_token_required
def admin_grant(slug: str) -> Any:
    balance = teams.admin_grant(_svc().db, g.claims, slug, _body("amount", "reason"))
    return jsonify({"balance": teams.format_credits(balance), "balance_micro": balance})


@admin_bp.get("/analytics/teams")
@admin_token_required
def admin_usage() -> Any:
    start, end = usage_service.parse_range(request.args.get("from"), request.args.get("to"))
    rows = teams.admin_usage(_svc().db, g.claims, start, end)
    return jsonify({"from": start.isoformat(), "to": end.isoformat(),
                    "teams": [teams.team_usage_dict(r) for r in rows]})
