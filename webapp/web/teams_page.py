"""The Teams pages and their htmx fragments: my teams and creating one; per team: members and roles, invitations,
joining by link, the wallet and its ledger, caps, team keys, default routing and usage per member.

Every rule lives in webapp.services.teams (the database functions it calls refuse what a role may not do, and an
outsider gets 404); this module reads the form, calls it and renders. One template per page owns its fragments as
named blocks: an htmx request gets the block, any other request the whole page; a validation failure answers 422
with the errors beside the fields."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_url
from jinja2_fragments.flask import render_block

from webapp.errors import AppError, NotFound, ValidationError
from webapp.services import charts, usage, user_account
from webapp.services import teams as teams_service
from webapp.web.settings_page import BLANK, FormState, _svc

bp = Blueprint("teams_page", __name__)
INDEX = "teams/index.html"
TEMPLATE = "teams/team.html"
JOIN = "teams/join.html"


@bp.before_request
def _signed_in() -> Any:
    if current_user.is_authenticated:
        return None
    # After sign-in the user comes back to the page asked for (an invitation link included); a POST is not a page.
    here = request.full_path.rstrip("?") if request.method == "GET" else url_for("teams_page.index")
    target = login_url("auth.sign_in", next_url=here)
    if request.headers.get("HX-Request"):
        return Response("", status=401, headers={"HX-Redirect": target})
    return redirect(target)


def _claims() -> dict[str, Any]:
    return current_user.claims  # type: ignore[no-any-return]


def _catalog() -> Any:
    return _svc().gateway.context(str(_claims()["sub"]))[1]


def _page(template: str, block: str, status: int = 200, **ctx: Any) -> Response:
    html = render_block(template, block, **ctx) if request.headers.get("HX-Request") else render_template(
        template, **ctx)
    return make_response(html, status)


def _field_errors(exc: AppError) -> dict[str, str] | None:
    """A refusal that belongs beside a field (422, or a 409 naming its field such as a taken slug)."""
    if isinstance(exc, ValidationError):
        return dict(exc.errors)
    return {exc.field: exc.message} if exc.field else None


# -- my teams -----------------------------------------------------------------------------------------------------

def _index(block: str, state: FormState = BLANK, status: int = 200, **extra: Any) -> Response:
    teams = teams_service.my_teams(_svc().db, _claims())
    extra.setdefault("default_team", teams_service.default_team(_svc().db, _claims()))
    return _page(INDEX, block, status, teams=teams, state=state, **extra)


@bp.get("/teams")
def index() -> Response:
    return _index("content")


@bp.get("/teams/list")
def list_fragment() -> Response:
    return _index("teams_list")


@bp.post("/teams")
def create() -> Response:
    form = {"name": request.form.get("name", "").strip(), "slug": request.form.get("slug", "").strip()}
    try:
        team = teams_service.create_team(_svc().db, _claims(), form)
    except AppError as exc:
        errors = _field_errors(exc)
        if errors is None:
            raise
        return _index("create", FormState("create", errors, form), 422)
    resp = _index("create", FormState("create"), created=team)
    resp.headers["HX-Trigger"] = "teams-changed"  # the list above redraws with the new team
    return resp


@bp.get("/teams/default")
def default_team_fragment() -> Response:
    """The "bill my requests to" choice alone: the Teams page redraws it, the settings page loads it."""
    return _index("default_team")


@bp.post("/teams/default")
def set_default_team() -> Response:
    slug = request.form.get("team", "")[:64]
    try:
        chosen = teams_service.set_default_team(_svc().db, _claims(), slug or None)
    except (ValidationError, NotFound) as exc:  # not a team of mine (any more): beside the field
        message = "Choose one of your teams." if isinstance(exc, NotFound) else " ".join(exc.errors.values())
        return _index("default_team", FormState("default_team", {"team": message}, {"team": slug}), 422)
    message = f"Your requests are now billed to the team {chosen}." if chosen else "Your requests are now personal."
    return _index("default_team", FormState("default_team", message=message))


# -- one team -----------------------------------------------------------------------------------------------------

def _routing(team: Any) -> dict[str, Any]:
    r = team.routing or {}
    return {"provider_priorities": list(r.get("provider_priorities") or []),
            "fallbacks_enabled": r.get("fallbacks_enabled", True) is not False,
            "task_overrides": dict(r.get("task_overrides") or {})}


def _overrides_text(routing: dict[str, Any]) -> str:
    return "\n".join(f"{task} = {rule.get('provider', '')}/{rule.get('model', '')}"
                     for task, rule in sorted(routing["task_overrides"].items()))


def _usage(slug: str, member: str | None) -> dict[str, Any]:
    """Per member totals and the same SVG charts as the user's usage, of everyone I may see or of one member."""
    start, end = usage.parse_range(None, None)
    rows = teams_service.usage_by_member(_svc().db, _claims(), slug, start, end)
    if member and not any(r.user_id == member for r in rows):
        member = None if member not in _member_ids(slug) else member  # anything but a member id: everyone
    if member:
        rows = [r for r in rows if r.user_id == member]
    buckets = teams_service.usage_buckets(_svc().db, _claims(), slug, start, end, member)
    return {"start": start, "end": end, "per_member": rows, "member": member,
            "charts": charts.usage_charts(buckets, start, end)}


def _member_ids(slug: str) -> set[str]:
    return {m.user_id for m in teams_service.members(_svc().db, _claims(), slug)}


def _pending(invites: list[Any]) -> list[Any]:
    now = datetime.now(UTC)
    return [i for i in invites if i.used_at is None and i.revoked_at is None and i.expires_at > now]


def _render(slug: str, block: str, state: FormState = BLANK, status: int = 200, **extra: Any) -> Response:
    svc, claims = _svc(), _claims()
    team = teams_service.get_team(svc.db, claims, slug)
    manage = team.role in ("owner", "admin")
    catalog = _catalog()
    providers_all = sorted((p for p in catalog.providers.values() if p.enabled and p.archived_at is None),
                           key=lambda p: p.sort_order)
    members = teams_service.members(svc.db, claims, team.slug)
    routing = _routing(team)
    ctx: dict[str, Any] = {
        "t": team, "manage": manage, "owner": team.role == "owner", "me": str(claims["sub"]), "state": state,
        "members": members, "emails": {m.user_id: m.email or "" for m in members},
        "invites": _pending(teams_service.invitations(svc.db, claims, team.slug)) if manage else [],
        "keys": {k.provider_id: k for k in teams_service.keys(svc.db, claims, team.slug)},
        "providers": [p for p in providers_all if p.byok_allowed], "providers_all": providers_all,
        "routing": routing, "overrides_text": _overrides_text(routing), **extra}
    if "page" not in ctx:
        ctx["page"] = teams_service.ledger_page(svc.db, claims, team.slug, user_account.PAGE, None)
    if "usage" not in ctx:
        ctx["usage"] = _usage(team.slug, None)
    return _page(TEMPLATE, block, status, **ctx)


@bp.get("/teams/<slug>")
def team(slug: str) -> Response:
    return _render(slug[:64], "content")


def _member_action(slug: str, change: Callable[[], Any], message: str, values: dict[str, Any]) -> Response:
    """Run a change to the roster; a refusal that names a field comes back beside that member's row (422)."""
    try:
        change()
    except AppError as exc:
        errors = _field_errors(exc)
        if errors is None:
            raise  # a role refusal (403), the owner rule (409): the error handler's flash
        return _render(slug, "members", FormState("members", errors, values), 422)
    return _render(slug, "members", FormState("members", message=message))


@bp.post("/teams/<slug>/members/<uuid:user_id>/role")
def set_role(slug: str, user_id: Any) -> Response:
    uid, role = str(user_id), request.form.get("role", "")[:20]
    return _member_action(slug, lambda: teams_service.set_role(_svc().db, _claims(), slug, uid, {"role": role}),
                          f"Role set to {role}.", {"user_id": uid, "role": role})


@bp.post("/teams/<slug>/members/<uuid:user_id>/cap")
def set_cap(slug: str, user_id: Any) -> Response:
    uid, raw = str(user_id), request.form.get("monthly_credit_cap", "").strip()[:40]
    payload = {"monthly_credit_cap": raw or None}
    return _member_action(slug, lambda: teams_service.set_cap(_svc().db, _claims(), slug, uid, payload),
                          "Cap saved." if raw else "Cap removed.", {"user_id": uid, "monthly_credit_cap": raw})


@bp.post("/teams/<slug>/members/<uuid:user_id>/remove")
def remove_member(slug: str, user_id: Any) -> Response:
    uid = str(user_id)
    return _member_action(slug, lambda: teams_service.remove_member(_svc().db, _claims(), slug, uid),
                          "Member removed: their next request can no longer use the team.", {"user_id": uid})


@bp.post("/teams/<slug>/transfer")
def transfer(slug: str) -> Response:
    uid = request.form.get("user_id", "")[:64]
    return _member_action(slug, lambda: teams_service.transfer(_svc().db, _claims(), slug, {"user_id": uid}),
                          "Ownership handed over: you are now an admin.", {"user_id": uid})


@bp.post("/teams/<slug>/leave")
def leave(slug: str) -> Response:
    teams_service.leave(_svc().db, _claims(), slug)
    target = url_for("teams_page.index")
    if request.headers.get("HX-Request"):  # the team's page is no longer mine: the browser goes to my teams
        return Response("", status=200, headers={"HX-Redirect": target})
    return redirect(target, 303)


# -- invitations --------------------------------------------------------------------------------------------------

@bp.post("/teams/<slug>/invites")
def create_invite(slug: str) -> Response:
    svc = _svc()
    invite, token = teams_service.create_invitation(svc.db, svc.settings, _claims(), slug, {})
    url = url_for("teams_page.join", token=token, _external=True)
    resp = _render(slug, "invites", FormState("invites"), invite_url=url, invite_expires=invite.expires_at)
    resp.headers["Cache-Control"] = "no-store"  # the link's only copy: no cache may keep it
    return resp


@bp.post("/teams/<slug>/invites/<uuid:invite_id>/revoke")
def revoke_invite(slug: str, invite_id: Any) -> Response:
    teams_service.revoke_invitation(_svc().db, _claims(), slug, str(invite_id))
    return _render(slug, "invites", FormState("invites", message="Invitation revoked: its link no longer works."))


def _join_page(token: str, status: int, error: str = "", offer: tuple[str, str, str] | None = None) -> Response:
    resp = make_response(render_template(JOIN, token=token, error=error, valid=status == 200, offer=offer), status)
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"  # the link is a secret: never sent on to another site
    return resp


def _plausible(token: str) -> bool:
    return token.startswith(teams_service.TOKEN_PREFIX) and 20 <= len(token) <= 100 and token.isascii()


@bp.get("/teams/join/<token>")
def join_page(token: str) -> Response:
    """The page an invitation link opens: it names the team and the role offered and asks to confirm; nothing
    happens until the button is pressed. A link that does not work (used, revoked, expired) says so at once."""
    svc = _svc()
    offer = teams_service.invitation_preview(svc.db, svc.settings, _claims(), token) if _plausible(token) else None
    return _join_page(token, 200, offer=offer) if offer else _join_page("", 404)


@bp.post("/teams/join/<token>")
def join(token: str) -> Response:
    svc = _svc()
    try:
        team = teams_service.join(svc.db, svc.settings, _claims(), {"token": token[:200]})
    except AppError as exc:
        if exc.code == "already_a_member":
            return _join_page("", 409, exc.message)
        if exc.code != "invitation_invalid":
            raise
        return _join_page("", 404, exc.message)
    return redirect(url_for("teams_page.team", slug=team.slug), 303)


# -- wallet -------------------------------------------------------------------------------------------------------

@bp.get("/teams/<slug>/wallet")
def wallet(slug: str) -> Response:
    return _render(slug, "wallet")


@bp.get("/teams/<slug>/ledger")
def ledger_rows(slug: str) -> Response:
    """The next (older) page of the ledger: rows for htmx to append; without htmx, the page shows from there."""
    try:
        limit, before = user_account.parse_page(None, request.args.get("before"))
    except ValidationError:
        limit, before = user_account.PAGE, None
    page = teams_service.ledger_page(_svc().db, _claims(), slug, limit, before)
    if not request.headers.get("HX-Request"):
        return _render(slug, "content", page=page)
    members = teams_service.members(_svc().db, _claims(), slug)
    team = teams_service.get_team(_svc().db, _claims(), slug)
    return make_response(render_block(TEMPLATE, "ledger_rows", page=page, t=team,
                                      emails={m.user_id: m.email or "" for m in members}))


# -- keys ---------------------------------------------------------------------------------------------------------

def _key_card(slug: str, provider: str, state: FormState, status: int = 200) -> Response:
    catalog = _catalog()
    if provider not in catalog.providers:
        raise NotFound("No such provider.", code="provider_not_found")
    return _render(slug, "key_card", state, status, p=catalog.providers[provider])


@bp.post("/teams/<slug>/keys/<provider>")
def save_key(slug: str, provider: str) -> Response:
    svc, block, provider = _svc(), f"key-{provider[:64]}", provider[:64]
    payload = {"api_key": request.form.get("api_key", "")}
    try:
        teams_service.put_key(svc.db, svc.settings, svc.keyring, _catalog(), _claims(), slug, provider, payload)
    except ValidationError as exc:
        return _key_card(slug, provider, FormState(block, exc.errors), 422)  # the key is never sent back
    return _key_card(slug, provider, FormState(block, message="Key saved. Members' requests use it; nobody sees it."))


@bp.post("/teams/<slug>/keys/<provider>/delete")
def delete_key(slug: str, provider: str) -> Response:
    provider = provider[:64]
    teams_service.delete_key(_svc().db, _catalog(), _claims(), slug, provider)
    return _key_card(slug, provider, FormState(f"key-{provider}", message="Key removed."))


# -- routing and usage --------------------------------------------------------------------------------------------

def _routing_payload() -> tuple[dict[str, Any], dict[str, str]]:
    """The routing form as the service's payload, and an error for a line of overrides the form cannot parse."""
    order = [s.strip() for s in request.form.get("provider_priorities", "").split(",") if s.strip()]
    overrides: dict[str, dict[str, str]] = {}
    errors: dict[str, str] = {}
    for n, line in enumerate(request.form.get("task_overrides", "").splitlines(), 1):
        if not line.strip():
            continue
        task, eq, target = line.partition("=")
        provider, slash, model = target.strip().partition("/")
        if not (eq and slash and task.strip() and provider.strip() and model.strip()):
            errors["task_overrides"] = f"Line {n}: write it as “task = provider/model”."
            break
        overrides[task.strip()] = {"provider": provider.strip(), "model": model.strip()}
    payload = {"provider_priorities": order, "fallbacks_enabled": request.form.get("fallbacks_enabled") in (
        "true", "on"), "task_overrides": overrides}
    return payload, errors


@bp.post("/teams/<slug>/routing")
def save_routing(slug: str) -> Response:
    values = {k: request.form.get(k, "")[:5000] for k in ("provider_priorities", "task_overrides")}
    values["fallbacks_enabled"] = request.form.get("fallbacks_enabled") in ("true", "on")
    payload, errors = _routing_payload()
    if not errors:
        try:
            teams_service.set_routing(_svc().db, _catalog(), _claims(), slug, payload)
        except ValidationError as exc:
            errors = exc.errors
    if errors:
        return _render(slug, "routing", FormState("routing", errors, values), 422)
    return _render(slug, "routing", FormState("routing", message="Routing saved: the team's next request uses it."))


@bp.get("/teams/<slug>/usage")
def usage_fragment(slug: str) -> Response:
    member = request.args.get("member", "")[:64] or None
    return _render(slug, "usage", usage=_usage(slug, member))
