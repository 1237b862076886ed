"""Sign-up, sign-in, sign-out, CSRF and session expiry with the local auth backend (real Postgres)."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp import create_app
from webapp.config import Settings


def csrf_token(client: FlaskClient, path: str = "/auth/sign-in") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str) -> object:
    token = csrf_token(client)
    return client.post("/auth/sign-in", data={"email": email, "password": password, "csrf_token": token})


def test_sign_in_page_renders(client: FlaskClient) -> None:
    resp = client.get("/auth/sign-in")
    assert resp.status_code == 200
    assert 'id="sign-in"' in resp.get_data(as_text=True)


def test_settings_requires_sign_in(client: FlaskClient) -> None:
    resp = client.get("/settings")
    assert resp.status_code == 302
    assert "/auth/sign-in" in resp.headers["Location"]


def test_sign_up_then_sign_in_and_out(client: FlaskClient) -> None:
    email = f"new-{uuid.uuid4().hex[:8]}@example.test"
    token = csrf_token(client, "/auth/sign-up")
    resp = client.post("/auth/sign-up", data={"email": email, "password": "a long password", "csrf_token": token})
    # The local backend never signs in at sign-up: a taken email must look the same (tests/api/test_access_*).
    assert resp.status_code == 200 and 'id="sign-in"' in resp.get_data(as_text=True)
    assert client.get("/settings").status_code == 302
    assert sign_in(client, email, "a long password").status_code == 302
    page = client.get("/settings")
    assert page.status_code == 200 and email in page.get_data(as_text=True)
    out = client.post("/auth/sign-out", data={"csrf_token": csrf_token(client, "/settings")})
    assert out.status_code == 302
    assert client.get("/settings").status_code == 302
    resp = sign_in(client, email, "a long password")
    assert resp.status_code == 302
    assert client.get("/settings").status_code == 200


def test_sign_in_wrong_password_rerenders_with_error(client: FlaskClient, make_user) -> None:
    user = make_user()
    resp = sign_in(client, user.email, "wrong password!")
    assert resp.status_code == 401
    assert "Wrong email or password." in resp.get_data(as_text=True)
    assert client.get("/settings").status_code == 302


def test_sign_up_validation_errors_beside_fields(client: FlaskClient) -> None:
    token = csrf_token(client, "/auth/sign-up")
    resp = client.post("/auth/sign-up", data={"email": "not-an-email", "password": "short", "csrf_token": token})
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'id="email-error"' in html and 'id="password-error"' in html


def test_sign_up_duplicate_email_changes_nothing_and_says_nothing(client: FlaskClient, make_user) -> None:
    user = make_user()
    token = csrf_token(client, "/auth/sign-up")
    resp = client.post("/auth/sign-up", data={"email": user.email, "password": "another long one",
                                              "csrf_token": token})
    assert resp.status_code == 200
    assert "already exists" not in resp.get_data(as_text=True)
    assert sign_in(client, user.email, "another long one").status_code == 401  # the password did not change
    assert sign_in(client, user.email, user.password).status_code == 302


def test_post_without_csrf_token_is_refused(client: FlaskClient, make_user) -> None:
    user = make_user()
    resp = client.post("/auth/sign-in", data={"email": user.email, "password": user.password})
    assert resp.status_code == 400
    assert "form expired" in resp.get_data(as_text=True)
    assert client.get("/settings").status_code == 302


def test_sign_out_without_csrf_is_refused(client: FlaskClient, make_user) -> None:
    user = make_user()
    assert sign_in(client, user.email, user.password).status_code == 302
    assert client.post("/auth/sign-out").status_code == 400
    assert client.get("/settings").status_code == 200


def test_open_redirect_after_sign_in_is_ignored(client: FlaskClient, make_user) -> None:
    user = make_user()
    token = csrf_token(client)
    resp = client.post("/auth/sign-in?next=//evil.example/x",
                       data={"email": user.email, "password": user.password, "csrf_token": token})
    assert resp.headers["Location"].endswith("/settings")


def test_session_expires_after_configured_hours(settings: Settings, make_user) -> None:
    app: Flask = create_app(settings.with_overrides(session_hours=1))
    client = app.test_client()
    user = make_user()
    assert sign_in(client, user.email, user.password).status_code == 302
    assert client.get("/settings").status_code == 200
    with client.session_transaction() as sess:
        sess["signed_in_at"] = int(time.time()) - 3601
    assert client.get("/settings").status_code == 302
    app.extensions["switchboard"].db.close()


def test_access_token_is_refreshed_before_expiry(client: FlaskClient, make_user) -> None:
    user = make_user()
    assert sign_in(client, user.email, user.password).status_code == 302
    with client.session_transaction() as sess:
        sess["sb"] = {**sess["sb"], "expires_at": int(time.time()) + 10}
    assert client.get("/settings").status_code == 200
    with client.session_transaction() as sess:
        assert sess["sb"]["expires_at"] > time.time() + 600


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200


def test_cookies_are_httponly_and_lax(client: FlaskClient) -> None:
    resp = client.get("/auth/sign-in")
    cookie = resp.headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
