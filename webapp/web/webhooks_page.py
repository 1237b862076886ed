"""Webhook endpoints on the pages: the user's (/settings/webhooks, also loaded as a section of the settings page), a
team's (/teams/<slug>/webhooks, owners and admins) and the site's (/admin/webhooks, admins).

One template (webhooks/_body.html) owns the fragments as named blocks: `webhooks` (the form and the list) and
`endpoints` (the list with each endpoint's last attempts, polled while a delivery is pending). An htmx request gets
the block; any other request the whole page. A validation failure answers 422 with the errors beside the fields.
The signing secret is shown once, in the answer that created or rotated it (never cached)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, make_response, redirect, render_template, request, url_for
from flask_login import current_user, login_url
from jinja2_fragments.flask import render_block

from webapp.auth.guards import admin_page_required
from webapp.errors import AppError, ValidationError
from webapp.services import webhooks

bp = Blueprint("webhooks_page", __name__)
BODY = "webhooks/_body.html"
PAGES = {"user": "webhooks/page.html", "team": "webhooks/page.html", "site": "webhooks/admin.html"}
BASES = {"user": "/settings/webhooks", "team": "/teams/<slug>/webhooks", "site": "/admin/webhooks"}


@dataclass(frozen=True)
class State:
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    level: str = "ok"
    secret: str | None = None
    secret_for: str | None = None
    edit_for: str | None = None  # the endpoint whose change form the errors and values belong to


def _svc() -> Any:
    return current_app.extensions["switchboard"]


def _signed_in(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_user.is_authenticated:
            return view(*args, **kwargs)
        here = request.full_path.rstrip("?") if request.method == "GET" else url_for("settings_page.index")
        target = login_url("auth.sign_in", next_url=here)
        if request.headers.get("HX-Request"):
            return Response("", status=401, headers={"HX-Redirect": target})
        return redirect(target)

    return wrapper


def _scope(kind: str, values: dict[str, Any]) -> webhooks.Scope:
    return webhooks.Scope(kind, str(values.get("slug", "")) if kind == "team" else None)


def _url_maker(scope: webhooks.Scope) -> Callable[..., str]:
    def make(action: str, endpoint_id: str | None = None) -> str:
        values: dict[str, Any] = {"slug": scope.team_slug} if scope.kind == "team" else {}
        if endpoint_id is not None:
            values["endpoint_id"] = endpoint_id
        return url_for(f"webhooks_page.{scope.kind}_{action}", **values)

    return make


def _render(scope: webhooks.Scope, block: str, state: State | None = None, status: int = 200) -> Response:
    ctx = {"scope": scope, "views": webhooks.overview(_svc().db, current_user.claims, scope),
           "event_types": webhooks.EVENT_TYPES, "state": state or State(), "wh_url": _url_maker(scope),
           "max_endpoints": webhooks.MAX_ENDPOINTS}
    if request.headers.get("HX-Request"):
        html = render_block(BODY, block, **ctx)
    else:
        html = render_template(PAGES[scope.kind], **ctx)
    resp = make_response(html, status)
    if state is not None and state.secret:
        resp.headers["Cache-Control"] = "no-store"  # the answer holding the secret is never cached
    return resp


def _form_payload() -> dict[str, Any]:
    return {"url": request.form.get("url", ""), "description": request.form.get("description", ""),
            "event_types": request.form.getlist("event_types")}


# -- views (registered below for each scope) --------------------------------------------------------------------------

def page(scope: webhooks.Scope) -> Response:
    return _render(scope, "webhooks")


def section(scope: webhooks.Scope) -> Response:
    return _render(scope, "webhooks")


def endpoints(scope: webhooks.Scope) -> Response:
    return _render(scope, "endpoints")


def create(scope: webhooks.Scope) -> Response:
    payload = _form_payload()
    svc = _svc()
    try:
        endpoint, secret = webhooks.create(svc.db, svc.settings, svc.keyring, current_user.claims, scope, payload)
    except ValidationError as exc:
        return _render(scope, "webhooks", State(exc.errors, payload), 422)
    return _render(scope, "webhooks", State(message=f"Endpoint {endpoint.url} added.", secret=secret,
                                            secret_for=endpoint.id))


def update(scope: webhooks.Scope, endpoint_id: Any) -> Response:
    payload = _form_payload()
    svc = _svc()
    try:
        endpoint = webhooks.update(svc.db, svc.settings, current_user.claims, scope, endpoint_id, payload)
    except ValidationError as exc:
        return _render(scope, "webhooks", State(exc.errors, payload, edit_for=endpoint_id), 422)
    return _render(scope, "webhooks", State(message=f"Endpoint {endpoint.url} saved."))


def _act(scope: webhooks.Scope, change: Callable[[], str]) -> Response:
    """Run one action on an endpoint and answer the list with its outcome (a refusal is said there too)."""
    try:
        message, level = change(), "ok"
    except AppError as exc:
        if exc.status == 404 or exc.status == 403:
            raise
        message, level = exc.message, "err"
    return _render(scope, "webhooks", State(message=message, level=level))


def send_test(scope: webhooks.Scope, endpoint_id: Any) -> Response:
    def change() -> str:
        webhooks.send_test(_svc().db, current_user.claims, scope, endpoint_id)
        return "Test event queued: it appears below once sent."

    return _act(scope, change)


def rotate(scope: webhooks.Scope, endpoint_id: Any) -> Response:
    endpoint, secret = webhooks.rotate(_svc().db, _svc().keyring, current_user.claims, scope, endpoint_id)
    return _render(scope, "webhooks", State(message="New signing secret made; the old one also signs for a day.",
                                            secret=secret, secret_for=endpoint.id))


def _set_enabled(scope: webhooks.Scope, endpoint_id: Any, enabled: bool) -> Response:
    def change() -> str:
        webhooks.update(_svc().db, _svc().settings, current_user.claims, scope, endpoint_id, {"enabled": enabled})
        return "Endpoint enabled." if enabled else "Endpoint disabled: nothing is sent to it until you enable it."

    return _act(scope, change)


def enable(scope: webhooks.Scope, endpoint_id: Any) -> Response:
    return _set_enabled(scope, endpoint_id, True)


def disable(scope: webhooks.Scope, endpoint_id: Any) -> Response:
    return _set_enabled(scope, endpoint_id, False)


def delete(scope: webhooks.Scope, endpoint_id: Any) -> Response:
    webhooks.delete(_svc().db, current_user.claims, scope, endpoint_id)
    return _render(scope, "webhooks", State(message="Endpoint deleted."))


ROUTES: tuple[tuple[str, str, str, Callable[..., Response]], ...] = (
    ("index", "", "GET", page),
    ("section", "/section", "GET", section),
    ("endpoints", "/endpoints", "GET", endpoints),
    ("create", "/endpoints", "POST", create),
    ("update", "/<uuid:endpoint_id>", "POST", update),
    ("test", "/<uuid:endpoint_id>/test", "POST", send_test),
    ("rotate", "/<uuid:endpoint_id>/rotate", "POST", rotate),
    ("enable", "/<uuid:endpoint_id>/enable", "POST", enable),
    ("disable", "/<uuid:endpoint_id>/disable", "POST", disable),
    ("delete", "/<uuid:endpoint_id>/delete", "POST", delete),
)


def _register() -> None:
    for kind, base in BASES.items():
        guard = admin_page_required if kind == "site" else _signed_in
        for action, rule, method, fn in ROUTES:
            if kind != "user" and action == "section":
                continue

            def view(fn: Callable[..., Response] = fn, kind: str = kind, **values: Any) -> Response:
                endpoint_id = values.pop("endpoint_id", None)
                scope = _scope(kind, values)
                return fn(scope) if endpoint_id is None else fn(scope, str(endpoint_id))

            view.__name__ = f"{kind}_{action}"
            bp.add_url_rule(base + rule, f"{kind}_{action}", guard(view), methods=[method])


_register()
