"""The admin panel: server-rendered pages whose htmx fragments are named blocks of the page template.

A GET renders the whole page, or only the block when htmx asks (HX-Request). A POST answers 200 with the block it
changed (plus an out-of-band flash), or 422 with the block re-rendered and the errors beside the fields. Every view
is guarded by admin_page_required; tests/api/test_admin_guard.py proves it for every /admin rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from jinja2_fragments.flask import render_block

from webapp import local_engine
from webapp.auth.guards import admin_page_required
from webapp.errors import ValidationError
from webapp.services import admin, admin_reports, admin_users, csv_export, date_ranges, usage_export
from webapp.services.credits import format_credits
from webapp.services.provider_fields import headers_text, per_million, rate_units

bp = Blueprint("admin", __name__)


def _svc() -> Any:
    return current_app.extensions["switchboard"]


@bp.context_processor
def _helpers() -> dict[str, Any]:
    def page_link(endpoint: str, filters: dict[str, str], page: int) -> str:
        values: dict[str, Any] = {k: v for k, v in filters.items() if v}
        return url_for(endpoint, **values, page=page)

    settings = _svc().settings
    return {"credits": format_credits, "page_link": page_link, "errors": {}, "form": {},
            "rate_units": rate_units, "per_million": per_million, "headers_text": headers_text,
            "local_auth": settings.auth_backend == "local",
            "engine_state": _svc().gateway.engines.state,  # keyless local engines: up or down (cached probe)
            # the engine `make run` supervises: building, starting, ready, failed (with the reason), stopped
            "local_engine_state": local_engine.read_state, "local_engine_slug": local_engine.SLUG,
            "bounds": {"min": f"{settings.multiplier_min:g}", "max": f"{settings.multiplier_max:g}"}}


def _render(template: str, block: str, status: int = 200, notice: str | None = None, **ctx: Any) -> Any:
    """A GET renders the page unless htmx asked for the block; a POST always answers with its block. A notice
    rides along as an out-of-band swap of #flash."""
    if request.method == "GET" and not request.headers.get("HX-Request"):
        return render_template(template, **ctx), status
    html = render_block(template, block, **ctx)
    if notice:
        html += render_block("admin/layout.html", "notice", notice=notice)
    return html, status


def _submit(template: str, block: str, name: str, change: Callable[[], Any], reload: Callable[[], Any],
            notice: Callable[[Any], str], **ctx: Any) -> Any:
    """Run a change; on a validation failure, re-render its block from fresh data with the errors and the form."""
    try:
        value = change()
    except ValidationError as exc:
        return _render(template, block, 422, **{name: reload()}, errors=exc.errors, form=request.form, **ctx)
    return _render(template, block, 200, notice(value), **{name: value}, **ctx)


# -- providers ----------------------------------------------------------------------------------------------------

@bp.get("/admin")
@admin_page_required
def index() -> Any:
    return redirect(url_for("admin.providers"))


@bp.get("/admin/providers")
@admin_page_required
def providers() -> Any:
    views = admin.providers(_svc().db, _svc().settings, g.claims)
    return _render("admin/providers.html", "providers", providers=views)


def _provider_submit(provider_id: Any, change: Callable[[], admin.ProviderView], what: str, **ctx: Any) -> Any:
    svc, pid = _svc(), str(provider_id)
    return _submit("admin/providers.html", "provider", "p", change,
                   lambda: admin.provider(svc.db, svc.settings, g.claims, pid),
                   lambda v: f"{v.provider.name}: {what}", **ctx)


@bp.post("/admin/providers/<uuid:provider_id>/enabled")
@admin_page_required
def provider_enabled(provider_id: Any) -> Any:
    svc = _svc()
    return _provider_submit(provider_id, lambda: admin.set_enabled(
        svc.db, svc.settings, g.claims, str(provider_id), request.form.get("enabled")),
        "enabled" if request.form.get("enabled") == "true" else "disabled")


@bp.post("/admin/providers/<uuid:provider_id>/multiplier")
@admin_page_required
def provider_multiplier(provider_id: Any) -> Any:
    svc = _svc()
    return _provider_submit(provider_id, lambda: admin.set_multiplier(
        svc.db, svc.settings, g.claims, str(provider_id), request.form.get("multiplier")), "multiplier saved")


@bp.post("/admin/providers/<uuid:provider_id>/settings")
@admin_page_required
def provider_settings(provider_id: Any) -> Any:
    svc = _svc()
    fields = {k: v for k, v in request.form.items() if k != "csrf_token"}
    if fields.get("default_model") == "":  # a new provider has none until its first model: left as it is
        del fields["default_model"]
    return _provider_submit(provider_id, lambda: admin.update_provider(
        svc.db, svc.settings, g.claims, str(provider_id), fields, form=True), "settings saved", open=True)


@bp.post("/admin/providers/<uuid:provider_id>/rates")
@admin_page_required
def provider_rate(provider_id: Any) -> Any:
    svc = _svc()
    fields = {**request.form.to_dict(), "enabled": request.form.get("enabled", "false")}  # unchecked box: off
    return _provider_submit(provider_id, lambda: admin.put_rate(
        svc.db, svc.settings, g.claims, str(provider_id), fields), "model rate saved", open=True)


# -- provider lifecycle: add, retire, fetch models, add models, bulk edit ------------------------------------------

def _area(status: int = 200, notice: str | None = None, **ctx: Any) -> Any:
    views = admin.providers(_svc().db, _svc().settings, g.claims)
    return _render("admin/providers.html", "providers_area", status, notice, providers=views, **ctx)


@bp.post("/admin/providers")
@admin_page_required
def provider_create() -> Any:
    from webapp.services import provider_admin

    fields = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        view = provider_admin.create_provider(_svc().db, _svc().settings, g.claims, fields, form=True)
    except ValidationError as exc:
        return _area(422, create_errors=exc.errors, create_form=request.form)
    return _area(notice=f"{view.provider.name}: provider added. Add a key, then fetch its models.",
                 open_id=view.id)


@bp.post("/admin/providers/<uuid:provider_id>/retire")
@admin_page_required
def provider_retire(provider_id: Any) -> Any:
    from webapp.services import provider_admin

    done = provider_admin.retire_provider(_svc().db, _svc().settings, g.claims, str(provider_id))
    what = "archived (it has history: logs keep its name)" if done.archived else "deleted (it had no history)"
    told = f"; {done.users_notified} user(s) notified" if done.users_notified else ""
    return _area(notice=f"{done.name}: retired, {what}{told}.")


@bp.post("/admin/providers/<uuid:provider_id>/models/fetch")
@admin_page_required
def provider_fetch_models(provider_id: Any) -> Any:
    from webapp.errors import AppError
    from webapp.services import provider_admin

    svc = _svc()
    try:
        got = provider_admin.fetch_models(svc.db, svc.settings, svc.keyring, g.claims, str(provider_id))
    except (ValidationError, AppError) as exc:
        message = next(iter(exc.errors.values())) if isinstance(exc, ValidationError) else exc.message
        view = provider_admin.admin_view(svc.db, svc.settings, g.claims, str(provider_id))
        return _render("admin/providers.html", "fetched", exc.status, p=view, fetch_error=message)
    return _render("admin/providers.html", "fetched", p=got.view, fetched=got)


@bp.post("/admin/providers/<uuid:provider_id>/models/add")
@admin_page_required
def provider_add_models(provider_id: Any) -> Any:
    from webapp.services import provider_admin

    svc, pid = _svc(), str(provider_id)
    payload = {**request.form.to_dict(), "models": request.form.getlist("models")}
    return _provider_submit(provider_id, lambda: provider_admin.add_models(svc.db, svc.settings, g.claims, pid,
                                                                           payload),
                            f"{len(payload['models'])} model(s) added", open=True)


@bp.post("/admin/providers/<uuid:provider_id>/models/bulk")
@admin_page_required
def provider_bulk_models(provider_id: Any) -> Any:
    from webapp.services import provider_admin

    svc, pid = _svc(), str(provider_id)
    payload = {**request.form.to_dict(), "rate_ids": request.form.getlist("rate_ids")}
    return _provider_submit(provider_id, lambda: provider_admin.bulk_edit(svc.db, svc.settings, g.claims, pid,
                                                                          payload),
                            "selected models updated", open=True)


@bp.post("/admin/providers/<uuid:provider_id>/rates/<uuid:rate_id>/delete")
@admin_page_required
def provider_rate_delete(provider_id: Any, rate_id: Any) -> Any:
    svc = _svc()
    view = admin.delete_rate(svc.db, svc.settings, g.claims, str(provider_id), str(rate_id))
    return _render("admin/providers.html", "provider", notice=f"{view.provider.name}: model removed", p=view,
                   open=True)


# -- admin keys ---------------------------------------------------------------------------------------------------

@bp.get("/admin/keys")
@admin_page_required
def keys() -> Any:
    views = admin.providers(_svc().db, _svc().settings, g.claims)
    return _render("admin/keys.html", "keys", providers=[v for v in views if v.provider.archived_at is None])


@bp.post("/admin/providers/<uuid:provider_id>/keys")
@admin_page_required
def add_key(provider_id: Any) -> Any:
    svc, pid = _svc(), str(provider_id)
    try:
        saved = admin.add_key(svc.db, svc.settings, svc.keyring, g.claims, pid, request.form)
    except ValidationError as exc:
        view = admin.provider(svc.db, svc.settings, g.claims, pid)
        return _render("admin/keys.html", "provider_keys", 422, p=view, errors=exc.errors, form=request.form)
    return _render("admin/keys.html", "provider_keys", notice=f"{saved.view.provider.name}: key ····"
                   f"{saved.key.last4} saved", p=saved.view, check=saved.check, saved=saved.key)


@bp.post("/admin/providers/<uuid:provider_id>/keys/<uuid:key_id>/revoke")
@admin_page_required
def revoke_key(provider_id: Any, key_id: Any) -> Any:
    svc = _svc()
    view = admin.revoke_key(svc.db, svc.settings, g.claims, str(provider_id), str(key_id))
    return _render("admin/keys.html", "provider_keys", notice=f"{view.provider.name}: key revoked", p=view)


# -- users and credits --------------------------------------------------------------------------------------------

@bp.get("/admin/users")
@admin_page_required
def users() -> Any:
    query, rows = admin_users.search(_svc().db, g.claims, request.args.get("q", ""))
    return _render("admin/users.html", "user_results", q=query, users=rows)


@bp.get("/admin/users/<uuid:user_id>")
@admin_page_required
def user(user_id: Any) -> Any:
    detail = admin_users.detail(_svc().db, g.claims, str(user_id))
    return _render("admin/user.html", "credits", d=detail, user_keys=_user_keys(str(user_id)))


def _user_keys(user_id: str) -> list[dict[str, Any]]:
    from webapp.services import api_keys

    return [api_keys.key_dict(k) for k in api_keys.admin_listing(_svc().db, g.claims, user_id)]


@bp.post("/admin/users/<uuid:user_id>/api-keys/<uuid:key_id>/revoke")
@admin_page_required
def revoke_user_api_key(user_id: Any, key_id: Any) -> Any:
    from webapp.services import api_keys

    key = api_keys.admin_revoke(_svc().db, g.claims, str(key_id), owner=str(user_id))
    detail = admin_users.detail(_svc().db, g.claims, str(user_id))
    return _render("admin/user.html", "user_api_keys", notice=f"API key “{key.name}” revoked", d=detail,
                   user_keys=_user_keys(str(user_id)))


@bp.post("/admin/users/<uuid:user_id>/credits")
@admin_page_required
def adjust_credits(user_id: Any) -> Any:
    db, uid = _svc().db, str(user_id)
    return _submit("admin/user.html", "credits", "d", lambda: admin_users.adjust(db, g.claims, uid, request.form),
                   lambda: admin_users.detail(db, g.claims, uid),
                   lambda d: f"{d.user.email}: balance now {format_credits(d.user.balance)} credits")


@bp.post("/admin/users/<uuid:user_id>/password-reset")
@admin_page_required
def password_reset_link(user_id: Any) -> Any:
    """A one-time reset link for the user, shown once in the answer (never stored, never logged); audited."""
    from webapp.services import account_security

    svc = _svc()
    link = account_security.create_reset_link_by_admin(svc.db, svc.settings, g.claims, str(user_id))
    url = url_for("account.reset_password", token=link.token, _external=True)
    html, status = _render("admin/user.html", "password_reset", notice=f"{link.email}: reset link created",
                           link=link, reset_url=url, d=admin_users.detail(svc.db, g.claims, str(user_id)))
    return html, status, {"Cache-Control": "no-store"}  # the link's only copy: no cache may keep it


# -- logs, analytics, audit ---------------------------------------------------------------------------------------

@bp.get("/admin/logs")
@admin_page_required
def logs() -> Any:
    page = admin_reports.logs(_svc().db, g.claims, request.args, strict=False)
    return _render("admin/logs.html", "logs", 422 if page.errors else 200, lp=page, errors=page.errors)


@bp.get("/admin/logs/<uuid:request_id>")
@admin_page_required
def receipt(request_id: Any) -> Any:
    entry = admin_reports.receipt(_svc().db, g.claims, str(request_id))
    return _render("admin/receipt.html", "receipt", e=entry)


@bp.get("/admin/analytics")
@admin_page_required
def analytics() -> Any:
    # The period: a preset (range=7d, 30d, this_month, last_month, year) or custom from/to (UTC days).
    period = date_ranges.parse(request.args, strict=False)
    data = admin_reports.analytics(_svc().db, g.claims, period.report_args(), strict=False)
    errors = {**data.errors, **period.errors}
    return _render("admin/analytics.html", "analytics", 422 if errors else 200, a=data, errors=errors,
                   form=request.args, period=period, range_values=date_ranges.form_values(request.args, period),
                   presets=date_ranges.PRESETS)


@bp.get("/admin/analytics.csv")
@admin_page_required
def analytics_csv() -> Any:
    """The analytics' days as CSV (a bad range: the 422 error page)."""
    period = date_ranges.parse(request.args)
    data = admin_reports.analytics_dict(admin_reports.analytics(_svc().db, g.claims, period.report_args()))
    return csv_export.response(usage_export.analytics_rows(data), csv_export.filename("analytics", period))


@bp.get("/admin/logs.csv")
@admin_page_required
def logs_csv() -> Any:
    """Every log row the page's filters match, streamed (a bad filter: the 422 error page)."""
    return csv_export.response(usage_export.admin_log_rows(_svc().db, g.claims, request.args),
                               csv_export.filename("logs"))


@bp.get("/admin/audit")
@admin_page_required
def audit() -> Any:
    page = admin_reports.audit(_svc().db, g.claims, request.args)
    return _render("admin/audit.html", "audit", ap=page, diff=admin_reports.diff)


# -- site settings (credits) --------------------------------------------------------------------------------------

@bp.get("/admin/settings")
@admin_page_required
def site_settings_page() -> Any:
    from webapp.services import site_settings

    s = site_settings.for_admin(_svc().db, g.claims)
    return _render("admin/settings.html", "site_settings", s=s, value_label=site_settings.value_label(s))


@bp.post("/admin/settings")
@admin_page_required
def save_site_settings() -> Any:
    from webapp.services import site_settings

    db = _svc().db
    fields = {k: request.form.get(k, "") for k in site_settings.FIELDS}
    try:
        saved, changed = site_settings.update(db, g.claims, fields)
    except ValidationError as exc:
        s = site_settings.for_admin(db, g.claims)
        return _render("admin/settings.html", "site_settings", 422, s=s, value_label=site_settings.value_label(s),
                       errors=exc.errors, form=request.form)
    notice = "Settings saved; they apply from the next sign-up and page view." if changed else "Nothing changed."
    return _render("admin/settings.html", "site_settings", notice=notice, s=saved, changed=changed,
                   value_label=site_settings.value_label(saved))
