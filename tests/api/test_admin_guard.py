"""Every admin route refuses anyone who is not an admin. The parameters are read from the app's own URL map, so a
route added later under /admin or /api/admin without the guard fails here without anyone editing this file.

Expected refusals:
    /api/admin/...  anonymous (no token) 401 · non-admin bearer token 403 · non-admin session cookie, no token 401
    /admin...       anonymous 302 to the sign-in page · non-admin session 403 · non-admin bearer token, no session 302
Path parameters are filled with a random UUID; a guard must refuse before the view looks anything up."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.admin import HX, csrf_token, web_sign_in
from webapp import create_app
from webapp.api import register_api
from webapp.config import Settings
from webapp.web import register_web

ADMIN_PREFIXES = ("/admin", "/api/admin")


def admin_routes(app: Flask) -> list[tuple[str, str]]:
    """(method, rule) for every rule under /admin or /api/admin (HEAD and OPTIONS are Flask's own)."""
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules()
                  if rule.rule == "/admin" or rule.rule.startswith(tuple(p + "/" for p in ADMIN_PREFIXES))
                  for method in rule.methods or () if method not in ("HEAD", "OPTIONS"))


def _routes_from_blueprints() -> list[tuple[str, str]]:
    # Collection happens before any database exists: register the app's blueprints on a bare Flask app, with the
    # same functions create_app uses. test_parameters_cover_the_whole_url_map checks this against the real app.
    bare = Flask("admin-guard-collection")
    register_web(bare)
    register_api(bare)
    return admin_routes(bare)


ROUTES = _routes_from_blueprints()


def fill(rule: str) -> str:
    return re.sub(r"<[^>]+>", lambda _: str(uuid.uuid4()), rule)


@pytest.fixture(scope="module")
def guard_app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    yield app
    app.extensions["switchboard"].db.close()


@pytest.fixture(scope="module")
def actors(guard_app: Flask, make_user: Any) -> dict[str, Any]:
    """Clients for each kind of visitor, each holding a CSRF token valid for its own session (so a refusal is
    the guard's, not the CSRF check's)."""
    anonymous = guard_app.test_client()
    member = make_user()
    session = guard_app.test_client()
    return {
        "anonymous": (anonymous, csrf_token(anonymous)),
        "member_session": (session, web_sign_in(session, member)),
        "member_bearer": member.headers,
        "admin_user": make_user(admin=True),
    }


def _call(client: FlaskClient, method: str, path: str, token: str | None, headers: dict[str, str] | None = None
          ) -> Any:
    headers = {**(headers or {}), **({"X-CSRFToken": token} if token else {})}
    if path.startswith("/api/"):
        return client.open(path, method=method, json={}, headers=headers)
    return client.open(path, method=method, data={"csrf_token": token or ""}, headers=headers)


def test_parameters_cover_the_whole_url_map(guard_app: Flask) -> None:
    assert admin_routes(guard_app) == ROUTES
    assert len(ROUTES) >= 30


@pytest.mark.parametrize(("method", "rule"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_admin_route_refuses_anonymous_and_non_admin(guard_app: Flask, actors: dict[str, Any], method: str,
                                                     rule: str) -> None:
    path = fill(rule)
    endpoint, _ = guard_app.url_map.bind("localhost").match(path, method=method)
    assert getattr(guard_app.view_functions[endpoint], "auth_guard", None) in ("admin", "admin_page"), \
        f"{endpoint} has no admin guard"
    anon_client, anon_token = actors["anonymous"]
    member_client, member_token = actors["member_session"]
    fresh = guard_app.test_client()

    anonymous = _call(anon_client, method, path, anon_token)
    as_member = _call(member_client, method, path, member_token)
    if rule.startswith("/api/"):
        assert anonymous.status_code == 401 and anonymous.get_json()["error"]["code"] == "missing_token"
        bearer = _call(fresh, method, path, None, actors["member_bearer"])
        assert bearer.status_code == 403 and bearer.get_json()["error"]["code"] == "admin_required"
        assert as_member.status_code == 401, "a session cookie alone never opens the admin API"
    else:
        assert anonymous.status_code == 302 and "/auth/sign-in" in anonymous.headers["Location"]
        assert as_member.status_code == 403 and "Admins only." in as_member.get_data(as_text=True)
        bearer = _call(anon_client, method, path, anon_token, actors["member_bearer"])
        assert bearer.status_code == 302, "a bearer token is not a page session"


@pytest.mark.parametrize(("method", "rule"), [r for r in ROUTES if r[0] == "POST" and r[1].startswith("/admin/")],
                         ids=lambda v: str(v))
def test_admin_forms_refuse_a_post_without_csrf_token(guard_app: Flask, actors: dict[str, Any], method: str,
                                                      rule: str) -> None:
    client = guard_app.test_client()
    web_sign_in(client, actors["admin_user"])
    resp = client.post(fill(rule), data={}, headers=HX)
    assert resp.status_code == 400 and "form expired" in resp.get_data(as_text=True)


def test_anonymous_htmx_request_is_sent_to_sign_in_not_swapped(guard_app: Flask) -> None:
    resp = guard_app.test_client().get("/admin/providers", headers=HX)
    assert resp.status_code == 401
    assert resp.headers["HX-Redirect"].startswith("/auth/sign-in?next=")


def test_anonymous_page_visit_returns_there_after_sign_in(guard_app: Flask, actors: dict[str, Any]) -> None:
    client = guard_app.test_client()
    resp = client.get("/admin/logs?mode=byok")
    assert resp.status_code == 302 and "next=%2Fadmin%2Flogs%3Fmode%3Dbyok" in resp.headers["Location"]
    admin = actors["admin_user"]
    signed = client.post(resp.headers["Location"], data={"email": admin.email, "password": admin.password,
                                                         "csrf_token": csrf_token(client)})
    assert signed.status_code == 302 and signed.headers["Location"] == "/admin/logs?mode=byok"


def test_admin_link_shown_to_admins_only(guard_app: Flask, actors: dict[str, Any]) -> None:
    member_client, _ = actors["member_session"]
    admin_client = guard_app.test_client()
    web_sign_in(admin_client, actors["admin_user"])
    refused = member_client.get("/admin/providers").get_data(as_text=True)
    assert "Sign out" in refused and 'id="nav-admin"' not in refused
    assert 'id="nav-admin"' in admin_client.get("/admin/providers").get_data(as_text=True)
