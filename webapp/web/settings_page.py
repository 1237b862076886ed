"""The user's settings page and its htmx fragments: profile, notifications, mode, keys, routing, usage, quote.

One template owns every fragment as a named block. An htmx request gets the block it targets; any other request
gets the whole page, so every form also works without JavaScript. A validation failure answers 422 with the
fragment re-rendered and the errors beside the fields; a success answers 200 with the fragment, never a redirect."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_url
from jinja2_fragments.flask import render_block

from webapp.errors import ValidationError
from webapp.repos.providers import Provider
from webapp.services import (
    account_security,
    api_keys,
    charts,
    date_ranges,
    overview,
    usage,
    user_account,
    user_settings,
)
from webapp.services import keys as keys_service
from webapp.services import notices as notices_service
from webapp.services import quote as quote_service

bp = Blueprint("settings_page", __name__)
TEMPLATE = "settings/index.html"
MODE_SWITCHED = {
    "member": "Switched to Member: your next request is served on Switchboard's keys and paid in credits.",
    "byok": "Switched to bring-your-own-key: your next request uses your own keys and spends no credits.",
}


@dataclass(frozen=True)
class FormState:
    """What one form just did: the block it belongs to, field errors, the values sent, a message and its level."""

    block: str = ""
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    level: str = "ok"

    def of(self, block: str) -> FormState:
        return self if block == self.block else BLANK

    def value(self, name: str, default: Any) -> Any:
        return self.values.get(name, default)


BLANK = FormState()


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _context() -> tuple[Any, Any]:
    """The user's gateway context and a catalog checked against the database's catalog version, once per request
    (the worker's cached catalog may predate an admin's change made through another worker)."""
    if "settings_context" not in g:
        g.settings_context = _svc().gateway.context(str(current_user.claims["sub"]))
    return g.settings_context  # type: ignore[no-any-return]


def _catalog() -> Any:
    return _context()[1]


def _ordered(o: overview.Overview) -> list[Provider]:
    """Enabled providers in the order the router tries them: default provider, then priorities, then presets."""
    prefs = o.preferences
    prio = list(prefs.provider_priorities)

    def rank(p: Provider) -> tuple[int, int, int]:
        return (0 if p.slug == prefs.default_provider else 1, prio.index(p.slug) if p.slug in prio else len(prio),
                p.sort_order)

    return sorted(o.providers, key=rank)


def _routing_warnings(o: overview.Overview) -> list[tuple[str, str]]:
    """Overrides, default provider and priorities that no longer resolve (an admin disabled or retired them)."""
    ctx, catalog = _context()
    return user_settings.warnings(o.preferences, ctx, catalog, _svc().settings)


def _offered(o: overview.Overview) -> user_settings.Offered:
    """What the user can route to in their mode (as just saved), shown beside the task overrides."""
    ctx, catalog = _context()
    return user_settings.offered(o.preferences.llm_mode, ctx, catalog, _svc().settings)


def _usage() -> dict[str, Any]:
    # The period (range=preset or custom from/to, UTC days): a bad one shows the default with the error beside
    # its field (usage_fragment answers 422).
    period = date_ranges.parse(request.args, strict=False)
    start, end = period.start, period.end
    try:  # the API-key filter; anything but one of the user's key ids shows everything
        api_key = usage.parse_api_key(request.args.get("api_key", "")[:64] or None)
    except ValidationError:
        api_key = None
    data = usage.summary(_svc().db, current_user.claims, start, end, ["day", "provider"], api_key)
    return {"charts": charts.usage_charts(data["buckets"], start, end), "recent": data["recent"],
            "totals": data["totals"],
            "api_key": api_key, "api_keys": api_keys.listing(_svc().db, current_user.claims),
            "range": period, "range_values": date_ranges.form_values(request.args, period),
            "presets": date_ranges.PRESETS}


def _render(block: str, state: FormState = BLANK, status: int = 200, **extra: Any) -> Response:
    """The block alone for htmx; otherwise the whole page, carrying this block's state."""
    o = overview.for_user(_svc().db, current_user.claims)
    ctx = {"o": o, "ordered": _ordered(o), "catalog": _catalog(), "email": current_user.email, "state": state,
           "routing_warnings": _routing_warnings(o), "offered": _offered(o), **extra}
    # Asked only where the page shows it (the notice at the top, the Security section): one service statement.
    ctx.setdefault("must_change_password", functools.partial(account_security.must_change_password, _svc().db,
                                                             current_user.get_id()))
    # What an admin change did to the user's routing (a retired provider): read only by the block that shows it.
    ctx.setdefault("user_notices", functools.cache(functools.partial(notices_service.for_user, _svc().db,
                                                                     current_user.claims)))
    # The credits area (balance, ledger, requests in flight): read only by the blocks that show it.
    ctx.setdefault("credits_view", functools.cache(functools.partial(user_account.credits_view, _svc().db,
                                                                     current_user.claims)))
    ctx.setdefault("email_delivery", _svc().settings.smtp is not None)  # issue 16: said beside the email switch
    if request.headers.get("HX-Request"):
        html = render_block(TEMPLATE, block, **ctx)
    else:
        ctx.setdefault("usage", _usage())
        ctx.setdefault("api_keys", [api_keys.key_dict(k) for k in ctx["usage"]["api_keys"]])
        html = render_template(TEMPLATE, **ctx)
    return make_response(html, status)


def _save(block: str, payload: dict[str, Any], message: str = "Saved.", values: dict[str, Any] | None = None
          ) -> Response:
    """Validate and store `payload` through the settings service, then answer with the block."""
    try:
        user_settings.update(_svc().db, current_user.claims, payload, _catalog(), (_context()[0], _svc().settings))
    except ValidationError as exc:
        return _render(block, FormState(block, exc.errors, payload if values is None else values), 422)
    return _render(block, FormState(block, message=message))


def _checkbox(name: str) -> Any:
    """Absent is off and the value the page sends is "true"; anything else goes to validation as sent."""
    raw = request.form.get(name)
    return False if raw is None else True if raw in ("true", "on") else raw


def _moved(order: list[str], move: str) -> list[str]:
    """`order` with the provider named in `move` ("slug:up" or "slug:down") swapped with its neighbour."""
    slug, _, direction = move.rpartition(":")
    if slug in order and direction in ("up", "down"):
        i = order.index(slug)
        j = i - 1 if direction == "up" else i + 1
        if 0 <= j < len(order):
            order[i], order[j] = order[j], order[i]
    return order


def _override_rows() -> tuple[list[dict[str, str]], dict[str, str]]:
    """The task override table as sent (blank and removed rows dropped) and an error per row, checked row by
    row with the same rules the JSON API applies to the whole object."""
    form = request.form
    removed = set(form.getlist("remove"))
    rows = [{"task": t.strip(), "provider": p, "model": m.strip()}
            for i, (t, p, m) in enumerate(zip(form.getlist("task"), form.getlist("provider"), form.getlist("model"),
                                              strict=False))
            if str(i) not in removed and (t.strip() or m.strip())]
    errors, seen = {}, set()
    ctx, catalog = _context()
    offer = user_settings.offered(ctx.preferences.llm_mode, ctx, catalog, _svc().settings)
    for i, row in enumerate(rows):
        try:
            user_settings.validate({"task_overrides": {row["task"]: row}}, catalog, offer)
        except ValidationError as exc:
            errors[f"row-{i}"] = exc.errors["task_overrides"]
        if row["task"] in seen:
            errors[f"row-{i}"] = f"The task {row['task']!r} is listed twice."
        seen.add(row["task"])
    return rows, errors


@bp.before_request
def _signed_in() -> Any:
    if current_user.is_authenticated:
        return None
    target = login_url("auth.sign_in", next_url=url_for("settings_page.index"))
    if request.headers.get("HX-Request"):
        # A fragment request must not swap the sign-in page into a section: send the browser there instead.
        return Response("", status=401, headers={"HX-Redirect": target})
    return redirect(target)


@bp.app_template_filter("micro_credits")
def _micro_credits(micro: int | None) -> str:
    return charts.credits_label(micro)


@bp.app_template_filter("credits_exact")
def _credits_exact(micro: int | None) -> str:
    """Credits to the micro-credit: a 1-micro-credit charge shows."""
    from webapp.services.credits import credits_label

    return "" if micro is None else credits_label(int(micro))


@bp.app_template_filter("utc_minute")
def _utc_minute(value: datetime | str | None) -> str:
    if not value:
        return ""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.get("/settings")
def index() -> Response:
    return _render("content")


@bp.post("/settings/notices/<notice_id>/dismiss")
def dismiss_notice(notice_id: str) -> Response:
    """Hide one notice; the block comes back without it (another user's or an unknown id: 404)."""
    notices_service.dismiss(_svc().db, current_user.claims, notice_id[:64])
    return _render("notices")


@bp.post("/settings/profile")
def profile() -> Response:
    return _save("profile", {k: request.form.get(k, "") for k in ("username", "first_name", "last_name")})


@bp.post("/settings/notifications")
def notifications() -> Response:
    return _save("notifications", {k: _checkbox(k) for k in ("email_notifications", "marketing_emails")})


@bp.get("/settings/mode")
def mode_fragment() -> Response:
    return _render("mode")


@bp.post("/settings/mode")
def mode() -> Response:
    llm_mode = request.form.get("llm_mode", "")
    resp = _save("mode", {"llm_mode": llm_mode}, MODE_SWITCHED.get(llm_mode, ""))
    if resp.status_code == 200:  # what is offered changed: the overrides redraw the offer and their warnings
        resp.headers["HX-Trigger"] = "mode-changed"
    return resp


@bp.post("/settings/keys/<provider>")
def save_key(provider: str) -> Response:
    svc, block = _svc(), f"key-{provider}"
    payload = {"api_key": request.form.get("api_key", ""), "base_url": request.form.get("base_url", "")}
    try:
        _, check = keys_service.put(svc.db, svc.settings, svc.keyring, _catalog(), current_user.claims, provider,
                                    payload)
    except ValidationError as exc:
        # The key itself is never sent back, not even to re-fill the field.
        return _render("key_card", FormState(block, exc.errors, {"base_url": payload["base_url"]}), 422,
                       p=_catalog().providers[provider])
    resp = _render("key_card", FormState(block, message=f"Key saved. {check.message}", level=check.status),
                   p=_catalog().providers[provider])
    resp.headers["HX-Trigger"] = "keys-changed"
    return resp


@bp.post("/settings/keys/<provider>/delete")
def delete_key(provider: str) -> Response:
    keys_service.delete(_svc().db, _catalog(), current_user.claims, provider)
    resp = _render("key_card", FormState(f"key-{provider}", message="Key removed."), p=_catalog().providers[provider])
    resp.headers["HX-Trigger"] = "keys-changed"
    return resp


@bp.get("/settings/routing/order")
def order_fragment() -> Response:
    return _render("order")


@bp.post("/settings/routing/order")
def order() -> Response:
    slugs = _moved(request.form.getlist("order"), request.form.get("move", ""))
    # The list on the page is the whole order: a default provider set through the API would silently outrank it.
    return _save("order", {"provider_priorities": slugs, "default_provider": None}, "Order saved.")


@bp.post("/settings/routing")
def routing() -> Response:
    return _save("routing_options", {"fallbacks_enabled": _checkbox("fallbacks_enabled"),
                                     "allow_dearer_fallbacks": _checkbox("allow_dearer_fallbacks"),
                                     "never_spend_credits": _checkbox("never_spend_credits"),
                                     "monthly_credit_cap": request.form.get("monthly_credit_cap", "").strip()})


@bp.get("/settings/overrides")
def overrides_fragment() -> Response:
    return _render("overrides")


@bp.post("/settings/overrides")
def overrides() -> Response:
    rows, errors = _override_rows()
    if errors:
        return _render("overrides", FormState("overrides", errors, {"rows": rows}), 422)
    payload = {"task_overrides": {r["task"]: {"provider": r["provider"], "model": r["model"]} for r in rows}}
    return _save("overrides", payload, values={"rows": rows})


@bp.get("/settings/usage")
def usage_fragment() -> Response:
    data = _usage()
    return _render("usage", status=422 if data["range"].errors else 200, usage=data)


@bp.get("/settings/credits")
def credits_fragment() -> Response:
    return _render("credits")


@bp.get("/settings/credits/ledger")
def ledger_rows() -> Response:
    """The next (older) page of the ledger: rows for htmx to append; without htmx, the page shows from there."""
    try:
        limit, before = user_account.parse_page(None, request.args.get("before"))
    except ValidationError:
        limit, before = user_account.PAGE, None
    page = user_account.ledger_page(_svc().db, current_user.claims, limit, before)
    if request.headers.get("HX-Request"):
        return make_response(render_block(TEMPLATE, "ledger_rows", page=page))
    return _render("content", ledger=page)


@bp.get("/settings/receipts/<request_id>")
def receipt(request_id: str) -> Response:
    from webapp.errors import NotFound

    try:
        found = user_account.receipt(_svc().db, current_user.claims, request_id)
    except NotFound:
        return make_response(render_template("settings/receipt.html", r=None), 404)
    return make_response(render_template("settings/receipt.html", r=user_account.receipt_dict(found)))


@bp.post("/settings/quote")
def quote() -> Response:
    raw = request.form.get("max_tokens", "").strip()
    payload: dict[str, Any] = {"prompt": request.form.get("prompt", "")}
    if raw:
        # Anything but a plain number goes to the service as sent, so it answers with its own message.
        payload["max_tokens"] = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else raw
    ctx, catalog = _context()
    try:
        result = quote_service.quote(payload, ctx, catalog, lambda p: _svc().gateway.member_ready(p, catalog))
    except ValidationError as exc:
        return _render("quote", FormState("quote", exc.errors, payload), 422)
    return _render("quote", FormState("quote", values=payload), quote=result)


# The "API keys" section, and the Requests page with the CSV downloads, register their routes on bp.
from webapp.web import settings_api_keys, settings_requests  # noqa: E402, F401
