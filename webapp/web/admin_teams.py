"""The admin panel's Teams pages: the list (search, paged), one team (members, wallet, ledger) and granting it
credits (audited by the service). Same pattern as webapp/web/admin.py: a GET renders the page or, for htmx, its
block; a POST answers its block (200 with an out-of-band notice, or 422 with the errors beside the fields). Every
view is guarded by admin_page_required (tests/api/test_admin_guard.py checks every /admin rule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, g, request

from webapp.auth.guards import admin_page_required
from webapp.errors import ValidationError
from webapp.services import teams as teams_service
from webapp.services import user_account
from webapp.services.credits import format_credits
from webapp.web.admin import _helpers, _render, _svc

bp = Blueprint("admin_teams", __name__)
bp.context_processor(_helpers)
PER_PAGE = 50


@dataclass(frozen=True)
class TeamsPage:
    teams: list[Any]
    page: int
    has_next: bool


@dataclass(frozen=True)
class Detail:
    team: Any
    members: list[Any]
    ledger: Any  # teams_service.LedgerPage
    emails: dict[str, str]


def _page_number(raw: str | None) -> int:
    """A page number from the query string; anything else is page 1 (a hostile number never reaches SQL)."""
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) < 6 and int(raw) > 0 else 1


def _detail(slug: str) -> Detail:
    db = _svc().db
    team, members = teams_service.admin_detail(db, g.claims, slug)
    ledger = teams_service.ledger_page(db, g.claims, team.slug, user_account.PAGE, None)
    return Detail(team, members, ledger, {m.user_id: m.email or "" for m in members})


@bp.get("/admin/teams")
@admin_page_required
def teams() -> Any:
    query = request.args.get("q", "")[:100].strip()
    page = _page_number(request.args.get("page"))
    rows, total = teams_service.admin_list(_svc().db, g.claims, query, PER_PAGE, (page - 1) * PER_PAGE)
    return _render("admin/teams.html", "team_results", q=query,
                   tp=TeamsPage(rows, page, page * PER_PAGE < total))


@bp.get("/admin/teams/<slug>")
@admin_page_required
def team(slug: str) -> Any:
    return _render("admin/team.html", "wallet", d=_detail(slug[:64]))


@bp.post("/admin/teams/<slug>/credits")
@admin_page_required
def grant(slug: str) -> Any:
    slug = slug[:64]
    form = {"amount": request.form.get("amount", "").strip(), "reason": request.form.get("reason", "")}
    try:
        balance = teams_service.admin_grant(_svc().db, g.claims, slug, form)
    except ValidationError as exc:
        return _render("admin/team.html", "wallet", 422, d=_detail(slug), errors=exc.errors, form=request.form)
    detail = _detail(slug)
    return _render("admin/team.html", "wallet", 200,
                   f"{detail.team.name}: {form['amount']} credits granted, balance now {format_credits(balance)}",
                   d=detail)
