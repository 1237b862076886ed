"""The local backend's Supabase Auth API (/auth/v1): each endpoint's JSON shapes, statuses and GoTrue error codes
in both error formats, refresh-token rotation and reuse detection, the apikey gateway check, CORS for supabase-js,
and hostile input answered with a 4xx, never a 500. The official clients' journeys are in tests/e2e."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import statistics
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp import create_app
from webapp.auth.backends import AuthSession
from webapp.auth.throttle import DEFAULT as LIMITS
from webapp.config import load_settings

V2024 = {"X-Supabase-Api-Version": "2024-01-01"}
PASSWORD = "correct horse battery"  # make_user's
ANON_KEY = "anon-key-for-tests-" + "a" * 40
ORIGIN = "https://app.example"


def _address() -> str:
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


@pytest.fixture()
def api(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = _address()  # a fresh per-address throttle count for every test
    return client


def post(client: FlaskClient, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
         legacy: bool = False) -> Any:
    sent = {} if legacy else dict(V2024)
    sent.update(headers or {})
    return client.post("/auth/v1" + path, json=body, headers=sent)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    resp = post(client, "/token?grant_type=password", {"email": email, "password": password})
    assert resp.status_code == 200, resp.get_json()
    return dict(resp.get_json())


def refresh(client: FlaskClient, token: str) -> Any:
    return post(client, "/token?grant_type=refresh_token", {"refresh_token": token})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **V2024}


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """The 2024-01-01 format: {"code": "<error_code>", "message"}, the version echoed, x-sb-error-code set."""
    body = resp.get_json()
    assert resp.status_code == status, body
    assert body["code"] == code and isinstance(body["message"], str) and body["message"], body
    assert resp.headers["X-Supabase-Api-Version"] == "2024-01-01"
    assert resp.headers["x-sb-error-code"] == code
    return dict(body)


def claims_of(token: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "==")))


def new_email() -> str:
    return f"gt-{uuid.uuid4().hex[:10]}@example.test"


# -- settings and sign-up ------------------------------------------------------------------------------------------

def test_settings_offer_email_only_and_sign_up_without_autoconfirm(api: FlaskClient) -> None:
    body = api.get("/auth/v1/settings").get_json()
    assert body["external"]["email"] is True
    assert not any(v for k, v in body["external"].items() if k != "email")
    assert (body["disable_signup"], body["mailer_autoconfirm"], body["phone_autoconfirm"]) == (False, False, False)
    assert api.get("/auth/v1/.well-known/jwks.json").get_json() == {"keys": []}


def test_sign_up_answers_a_user_and_no_session_then_the_password_signs_in(api: FlaskClient) -> None:
    email = new_email()
    resp = post(api, "/signup", {"email": email.upper(), "password": "a brand new passphrase",
                                 "data": {"name": "Ada"}, "gotrue_meta_security": {"captcha_token": None},
                                 "code_challenge": None, "code_challenge_method": None})
    assert resp.status_code == 200
    user = resp.get_json()
    assert "access_token" not in user and "session" not in user
    assert user["email"] == email and user["aud"] == "authenticated" and user["role"] == "authenticated"
    assert user["user_metadata"] == {"name": "Ada"}
    assert user["app_metadata"] == {"provider": "email", "providers": ["email"]}
    assert uuid.UUID(user["id"])
    session = sign_in(api, email, "a brand new passphrase")
    assert session["user"]["id"] == user["id"] and session["user"]["user_metadata"] == {"name": "Ada"}


def test_sign_up_does_not_reveal_a_taken_email(api: FlaskClient, make_user: Any) -> None:
    owner = make_user()
    taken = post(api, "/signup", {"email": owner.email, "password": "another fine passphrase", "data": {"x": 1}})
    fresh = post(api, "/signup", {"email": new_email(), "password": "another fine passphrase", "data": {"x": 1}})
    assert taken.status_code == fresh.status_code == 200
    a, b = taken.get_json(), fresh.get_json()

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value]
        return type(value).__name__

    assert shape(a) == shape(b)
    assert a["id"] != owner.id and a["email"] == owner.email and a["user_metadata"] == {"x": 1}
    assert taken.headers.get("Set-Cookie") is None
    # The account kept its password and its metadata.
    assert sign_in(api, owner.email)["user"]["user_metadata"] == {}
    assert post(api, "/token?grant_type=password",
                {"email": owner.email, "password": "another fine passphrase"}).status_code == 400


def test_sign_up_takes_about_as_long_for_a_taken_email(api: FlaskClient, make_user: Any) -> None:
    owner = make_user()

    def timed(email: str) -> float:
        started = time.perf_counter()
        assert post(api, "/signup", {"email": email, "password": "another fine passphrase"}).status_code == 200
        return time.perf_counter() - started

    timed(new_email())  # warm up
    pairs = [(timed(owner.email), timed(new_email())) for _ in range(7)]  # interleaved: a busy moment hits both
    taken = statistics.median(t for t, _ in pairs)
    fresh = statistics.median(f for _, f in pairs)
    # Without the password hash on the taken path it would answer in one query's time, a fraction of a hash.
    assert 0.5 < taken / fresh < 2.0, (taken, fresh)


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"email": "x@example.test"}, 400, "validation_failed"),
    ({"email": "x@example.test", "password": "short"}, 422, "weak_password"),
    ({"email": "x@example.test", "password": "password1234"}, 422, "weak_password"),
    ({"email": "x@example.test", "password": "y" * 1025}, 400, "validation_failed"),
    ({"email": "not an email", "password": "a brand new passphrase"}, 400, "validation_failed"),
    ({"email": "a" * 250 + "@example.test", "password": "a brand new passphrase"}, 400, "validation_failed"),
    ({"password": "a brand new passphrase"}, 400, "validation_failed"),
    ({"phone": "+15555550100", "password": "a brand new passphrase"}, 400, "phone_provider_disabled"),
    ({"email": "x@example.test", "password": "a brand new passphrase", "data": [1]}, 400, "bad_json"),
    ({"email": 5, "password": "a brand new passphrase"}, 400, "bad_json"),
    ({"email": "x@example.test", "password": "a brand new passphrase", "data": {"k": "v" * 5000}}, 422,
     "validation_failed"),
])
def test_sign_up_refusals_in_gotrue_codes(api: FlaskClient, body: dict[str, Any], status: int, code: str) -> None:
    body = assert_error(post(api, "/signup", body), status, code)
    if code == "weak_password":
        assert body["weak_password"]["reasons"] in (["length"], ["pwned"])


def test_legacy_error_format_without_the_version_header(api: FlaskClient) -> None:
    resp = post(api, "/signup", {"email": "x@example.test", "password": "short"}, legacy=True)
    body = resp.get_json()
    assert resp.status_code == 422
    assert body["code"] == 422 and body["error_code"] == "weak_password" and body["msg"]
    assert body["weak_password"] == {"reasons": ["length"]}
    assert "X-Supabase-Api-Version" not in resp.headers
    assert resp.headers["x-sb-error-code"] == "weak_password"
    # A malformed version is the initial version too, as GoTrue reads it.
    resp = post(api, "/signup", {"email": "x@example.test"}, headers={"X-Supabase-Api-Version": "2024-1-1"})
    assert resp.get_json()["error_code"] == "validation_failed"


# -- password grant ------------------------------------------------------------------------------------------------

def test_password_grant_issues_a_session_and_a_hashed_refresh_token(api: FlaskClient, make_user: Any,
                                                                   admin_conn: psycopg.Connection) -> None:
    user = make_user()
    session = sign_in(api, user.email.upper())
    assert session["token_type"] == "bearer" and session["expires_in"] == 3600
    assert abs(session["expires_at"] - session["expires_in"] - time.time()) < 30
    assert session["user"]["id"] == user.id and session["user"]["email"] == user.email
    assert session["user"]["identities"][0]["provider"] == "email"
    assert len(session["refresh_token"]) >= 40
    # The access token is the app's: it works on the JSON API and names a live session.
    assert api.get("/api/user/settings", headers=bearer(session["access_token"])).status_code == 200
    row = admin_conn.execute("select token, user_id, revoked, session_id::text from auth.refresh_tokens"
                             " where user_id = %s", [user.id]).fetchone()
    assert row is not None
    assert row[0] == hashlib.sha256(session["refresh_token"].encode()).hexdigest() != session["refresh_token"]
    assert row[2] is False
    payload = claims_of(session["access_token"])
    assert payload["session_id"] == row[3] and payload["sub"] == user.id


def test_wrong_password_and_unknown_email_answer_alike(api: FlaskClient, make_user: Any) -> None:
    user = make_user()
    wrong = post(api, "/token?grant_type=password", {"email": user.email, "password": "not the password!"})
    unknown = post(api, "/token?grant_type=password", {"email": new_email(), "password": "not the password!"})
    assert assert_error(wrong, 400, "invalid_credentials") == assert_error(unknown, 400, "invalid_credentials")
    assert wrong.get_json()["message"] == "Invalid login credentials"


def test_a_nul_in_the_password_is_a_wrong_password_or_signs_in_not_a_500(api: FlaskClient, make_user: Any) -> None:
    # Postgres text cannot hold NUL: the password once went to the bcrypt comparison's parameter and made a 500.
    user = make_user()
    for password in ("\x00", "a\x00", PASSWORD + "\x00"):
        resp = post(api, "/token?grant_type=password", {"email": user.email, "password": password})
        assert_error(resp, 400, "invalid_credentials")
    # A password holding a NUL can be chosen at sign-up (argon2 hashes the bytes): it signs in.
    email, odd = new_email(), "a brand\x00new passphrase"
    assert post(api, "/signup", {"email": email, "password": odd}).status_code == 200
    assert sign_in(api, email, odd)["user"]["email"] == email
    web = api.application.test_client()
    web.environ_base["REMOTE_ADDR"] = _address()
    page = web.get("/auth/sign-in").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = web.post("/auth/sign-in", data={"email": user.email, "password": "a\x00", "csrf_token": csrf})
    assert form.status_code in (200, 400, 401, 422), form.status_code
    assert "Wrong email or password" in form.get_data(as_text=True)


def test_banned_user_cannot_sign_in(api: FlaskClient, make_user: Any, admin_conn: psycopg.Connection) -> None:
    user = make_user()
    admin_conn.execute("update auth.users set banned_until = now() + interval '1 day' where id = %s", [user.id])
    assert_error(post(api, "/token?grant_type=password", {"email": user.email, "password": PASSWORD}), 400,
                 "invalid_credentials")


def test_password_grant_is_throttled_with_the_web_sign_in(app: Flask, make_user: Any) -> None:
    user = make_user()
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = _address()
    for i in range(LIMITS.per_account):
        resp = post(client, "/token?grant_type=password", {"email": user.email, "password": f"wrong guess {i}!"})
        assert_error(resp, 400, "invalid_credentials")
    resp = post(client, "/token?grant_type=password", {"email": user.email, "password": PASSWORD})
    assert_error(resp, 429, "over_request_rate_limit")
    assert 0 < int(resp.headers["Retry-After"]) <= LIMITS.window_seconds
    # The same count as the sign-in page: the web form waits too, from another address.
    web = app.test_client()
    web.environ_base["REMOTE_ADDR"] = _address()
    page = web.get("/auth/sign-in").get_data(as_text=True)
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    form = web.post("/auth/sign-in", data={"email": user.email, "password": PASSWORD, "csrf_token": csrf})
    assert form.status_code == 429


@pytest.mark.parametrize(("query", "body", "code"), [
    ("grant_type=password", {"password": PASSWORD}, "validation_failed"),
    ("grant_type=password", {"email": "a@example.test", "phone": "+1555", "password": "x"}, "validation_failed"),
    ("grant_type=password", {"email": ["a"], "password": "x"}, "bad_json"),
    ("grant_type=pkce", {}, "invalid_credentials"),
    ("", {}, "invalid_credentials"),
])
def test_token_refusals(api: FlaskClient, query: str, body: dict[str, Any], code: str) -> None:
    assert_error(post(api, "/token?" + query, body), 400, code)


# -- refresh: rotation and reuse detection -------------------------------------------------------------------------

def test_refresh_rotates_and_the_child_is_refreshed_in_turn(api: FlaskClient, make_user: Any,
                                                           admin_conn: psycopg.Connection) -> None:
    user = make_user()
    first = sign_in(api, user.email)
    second = refresh(api, first["refresh_token"])
    assert second.status_code == 200
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"] and second["user"]["id"] == user.id
    assert api.get("/auth/v1/user", headers=bearer(second["access_token"])).status_code == 200
    third = refresh(api, second["refresh_token"]).get_json()
    rows = admin_conn.execute("select token, revoked, parent from auth.refresh_tokens where user_id = %s order by id",
                              [user.id]).fetchall()
    digest = [hashlib.sha256(s["refresh_token"].encode()).hexdigest() for s in (first, second, third)]
    assert rows == [(digest[0], True, None), (digest[1], True, digest[0]), (digest[2], False, digest[1])]


def test_reuse_within_the_interval_gets_a_working_answer(api: FlaskClient, make_user: Any) -> None:
    user = make_user()
    first = sign_in(api, user.email)
    a = refresh(api, first["refresh_token"]).get_json()
    b = refresh(api, first["refresh_token"])  # a second tab refreshing with the same token at once
    assert b.status_code == 200
    b = b.get_json()
    assert b["refresh_token"] not in (a["refresh_token"], first["refresh_token"])
    for answer in (a, b):  # both lines go on working
        assert refresh(api, answer["refresh_token"]).status_code == 200


def test_reuse_after_the_interval_ends_the_whole_session(api: FlaskClient, make_user: Any,
                                                         admin_conn: psycopg.Connection) -> None:
    user = make_user()
    first = sign_in(api, user.email)
    current = refresh(api, first["refresh_token"]).get_json()
    other_device = sign_in(api, user.email)  # another session of the same user is not touched
    admin_conn.execute("update auth.refresh_tokens set updated_at = now() - interval '11 seconds'"
                       " where token = %s", [hashlib.sha256(first["refresh_token"].encode()).hexdigest()])
    assert_error(refresh(api, first["refresh_token"]), 400, "refresh_token_already_used")
    session_id = claims_of(current["access_token"])["session_id"]
    assert admin_conn.execute("select count(*) from auth.sessions where id = %s", [session_id]).fetchone() == (0,)
    assert admin_conn.execute("select count(*) from auth.refresh_tokens where session_id = %s",
                              [session_id]).fetchone() == (0,)
    # Every token of the session is dead, and its access tokens are refused on the next request.
    assert_error(refresh(api, current["refresh_token"]), 400, "refresh_token_not_found")
    assert_error(api.get("/auth/v1/user", headers=bearer(current["access_token"])), 403, "session_not_found")
    assert api.get("/api/user/settings", headers=bearer(current["access_token"])).status_code == 401
    assert refresh(api, other_device["refresh_token"]).status_code == 200


def test_refresh_refusals(api: FlaskClient, make_user: Any, admin_conn: psycopg.Connection) -> None:
    resp = refresh(api, "")
    assert resp.status_code == 400
    assert resp.get_json() == {"error": "invalid_request", "error_description": "refresh_token required"}
    assert_error(refresh(api, secrets.token_urlsafe(32)), 400, "refresh_token_not_found")
    assert_error(refresh(api, "x" * 5000), 400, "refresh_token_not_found")
    assert_error(post(api, "/token?grant_type=refresh_token", {"refresh_token": 42}), 400, "bad_json")
    user = make_user()
    session = sign_in(api, user.email)
    admin_conn.execute("update auth.users set banned_until = now() + interval '1 day' where id = %s", [user.id])
    assert_error(refresh(api, session["refresh_token"]), 400, "user_banned")
    admin_conn.execute("update auth.users set banned_until = null where id = %s", [user.id])
    admin_conn.execute("update auth.sessions set not_after = now() - interval '1 second' where user_id = %s",
                       [user.id])
    assert_error(refresh(api, session["refresh_token"]), 400, "session_expired")


def test_web_sign_out_kills_the_sessions_refresh_tokens(app: Flask, api: FlaskClient, make_user: Any) -> None:
    user = make_user()
    session = sign_in(api, user.email)
    claims = app.extensions["switchboard"].verifier.verify(session["access_token"])
    # What the sign-out button does for a session of the local backend (LocalBackend.sign_out).
    app.extensions["switchboard"].auth_backend.sign_out(
        AuthSession(session["access_token"], claims["session_id"], session["expires_at"], user.id, user.email))
    assert_error(refresh(api, session["refresh_token"]), 400, "refresh_token_not_found")


# -- user ----------------------------------------------------------------------------------------------------------

def test_get_user_and_its_refusals(api: FlaskClient, make_user: Any, admin_conn: psycopg.Connection) -> None:
    user = make_user()
    session = sign_in(api, user.email)
    body = api.get("/auth/v1/user", headers=bearer(session["access_token"])).get_json()
    assert body["id"] == user.id and body["email"] == user.email and body["aud"] == "authenticated"
    assert body["email_confirmed_at"] and body["confirmed_at"] == body["email_confirmed_at"]
    assert "encrypted_password" not in json.dumps(body)
    assert_error(api.get("/auth/v1/user", headers=V2024), 401, "no_authorization")
    assert_error(api.get("/auth/v1/user", headers=bearer("not.a.jwt")), 403, "bad_jwt")
    assert_error(api.get("/auth/v1/user", headers={"Authorization": "Basic abc", **V2024}), 401, "no_authorization")
    admin_conn.execute("update auth.users set banned_until = now() + interval '1 day' where id = %s", [user.id])
    assert_error(api.get("/auth/v1/user", headers=bearer(session["access_token"])), 403, "user_banned")
    admin_conn.execute("update auth.users set deleted_at = now() where id = %s", [user.id])
    assert_error(api.get("/auth/v1/user", headers=bearer(session["access_token"])), 403, "user_not_found")


def test_update_user_metadata_merges_and_removes_with_null(api: FlaskClient, make_user: Any) -> None:
    user = make_user()
    token = sign_in(api, user.email)["access_token"]

    def put(body: Any) -> Any:
        return api.put("/auth/v1/user", json=body, headers=bearer(token))

    assert put({"data": {"name": "Ada", "team": "x"}}).get_json()["user_metadata"] == {"name": "Ada", "team": "x"}
    resp = put({"data": {"team": None, "lang": "en"}, "code_challenge": None, "code_challenge_method": None})
    assert resp.status_code == 200 and resp.get_json()["user_metadata"] == {"name": "Ada", "lang": "en"}
    assert put({"email": user.email}).status_code == 200  # the same email is no change
    assert_error(put({"data": {"big": "v" * 5000}}), 422, "validation_failed")
    assert_error(put({"app_metadata": {"role": "admin"}}), 403, "not_admin")
    assert_error(put({"email": new_email()}), 422, "validation_failed")
    assert_error(put({"data": "nope"}), 400, "bad_json")
    assert_error(put({"password": 12345678901234}), 400, "bad_json")
    assert api.get("/auth/v1/user", headers=bearer(token)).get_json()["app_metadata"].get("role") is None


def test_password_change_needs_the_current_password_and_ends_other_sessions(api: FlaskClient,
                                                                            make_user: Any) -> None:
    user = make_user()
    here, there = sign_in(api, user.email), sign_in(api, user.email)

    def put(body: Any) -> Any:
        return api.put("/auth/v1/user", json=body, headers=bearer(here["access_token"]))

    new = "a completely new passphrase"
    assert_error(put({"password": new}), 400, "current_password_required")
    assert_error(put({"password": new, "current_password": "not it at all!"}), 400, "current_password_mismatch")
    assert_error(put({"password": "short", "current_password": PASSWORD}), 422, "weak_password")
    assert_error(put({"password": PASSWORD, "current_password": PASSWORD}), 422, "same_password")
    assert put({"password": new, "current_password": PASSWORD}).status_code == 200
    # The other session is over: refresh token dead, access token refused. This one goes on.
    assert_error(refresh(api, there["refresh_token"]), 400, "refresh_token_not_found")
    assert_error(api.get("/auth/v1/user", headers=bearer(there["access_token"])), 403, "session_not_found")
    assert refresh(api, here["refresh_token"]).status_code == 200
    assert_error(post(api, "/token?grant_type=password", {"email": user.email, "password": PASSWORD}), 400,
                 "invalid_credentials")
    sign_in(api, user.email, new)


# -- logout --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("scope", "this_ends", "other_ends"), [
    ("local", True, False), ("others", False, True), ("global", True, True), ("", True, True)])
def test_logout_scopes(api: FlaskClient, make_user: Any, scope: str, this_ends: bool, other_ends: bool) -> None:
    user = make_user()
    here, there = sign_in(api, user.email), sign_in(api, user.email)
    resp = api.post("/auth/v1/logout" + (f"?scope={scope}" if scope else ""), headers=bearer(here["access_token"]))
    assert resp.status_code == 204 and resp.get_data() == b""
    for session, ends in ((here, this_ends), (there, other_ends)):
        assert (refresh(api, session["refresh_token"]).status_code == 400) is ends
        assert (api.get("/api/user/settings", headers=bearer(session["access_token"])).status_code == 401) is ends


def test_logout_refusals(api: FlaskClient, make_user: Any) -> None:
    user = make_user()
    token = sign_in(api, user.email)["access_token"]
    assert_error(api.post("/auth/v1/logout?scope=everything", headers=bearer(token)), 400, "validation_failed")
    assert_error(api.post("/auth/v1/logout", headers=V2024), 401, "no_authorization")
    assert api.post("/auth/v1/logout?scope=local", headers=bearer(token)).status_code == 204
    # Signed out already: GoTrue's 403 session_not_found, which the clients ignore on sign-out.
    assert_error(api.post("/auth/v1/logout?scope=local", headers=bearer(token)), 403, "session_not_found")


# -- the rest of the surface -----------------------------------------------------------------------------------------

def test_unknown_paths_and_methods_answer_in_gotrue_shape(api: FlaskClient) -> None:
    assert_error(api.post("/auth/v1/otp", json={}, headers=V2024), 404, "not_found")
    assert_error(api.delete("/auth/v1/user", headers=V2024), 405, "method_not_allowed")


HOSTILE = [
    (b"[" * 100_000, "application/json"),
    (b'{"email": NaN, "password": "x"}', "application/json"),
    (b'{"email": "a@b.co", "email": "c@d.co", "password": "x"}', "application/json"),
    (b'\xff\xfe{"email": 1}', "application/json"),
    (b'{"email": "\\ud800@example.test", "password": "a brand new passphrase"}', "application/json"),
    (b'{"refresh_token": "\\ud800"}', "application/json"),
    (b'{"data": {"\\udfff": 1}, "password": "a brand new passphrase", "email": "q@example.test"}', "text/plain"),
    (b'"just a string"', "application/json"),
    (b'{"email": "a@b.co", "password": "' + b"9" * 5000 + b'"}', "application/json"),
    (b"email=a@b.co&password=x", "application/x-www-form-urlencoded"),
    (b"\x00\x01\x02", "application/octet-stream"),
]


@pytest.mark.parametrize("path", ["/signup", "/token?grant_type=password", "/token?grant_type=refresh_token"])
@pytest.mark.parametrize(("data", "content_type"), HOSTILE)
def test_hostile_bodies_are_a_4xx_never_a_500(api: FlaskClient, path: str, data: bytes, content_type: str) -> None:
    resp = api.post("/auth/v1" + path, data=data, headers={"Content-Type": content_type, **V2024})
    assert 400 <= resp.status_code < 500, resp.get_data()[:300]
    body = resp.get_json()
    assert isinstance(body, dict) and ("code" in body or "error" in body)


def test_hostile_bodies_on_update_user(api: FlaskClient, make_user: Any) -> None:
    token = sign_in(api, make_user().email)["access_token"]
    for data, content_type in HOSTILE:
        resp = api.put("/auth/v1/user", data=data, headers={"Content-Type": content_type, **bearer(token)})
        assert 400 <= resp.status_code < 500 or resp.status_code == 200, resp.get_data()[:300]


# -- the gateway's apikey check, CORS, and the Supabase backend -----------------------------------------------------

@pytest.fixture()
def keyed_app(test_env: dict[str, str]) -> Iterator[Flask]:
    application = create_app(load_settings({**test_env, "SUPABASE_ANON_KEY": ANON_KEY, "CORS_ORIGINS": ORIGIN}))
    yield application
    application.extensions["switchboard"].db.close()


def test_apikey_must_match_the_configured_anon_key(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    missing = client.get("/auth/v1/settings")
    assert missing.status_code == 401 and missing.get_json()["message"] == "No API key found in request"
    wrong = client.get("/auth/v1/settings", headers={"apikey": ANON_KEY + "x"})
    assert wrong.status_code == 401 and wrong.get_json()["message"] == "Invalid API key"
    assert client.get("/auth/v1/settings", headers={"apikey": ANON_KEY}).status_code == 200
    assert client.get("/auth/v1/settings?apikey=" + ANON_KEY).status_code == 200
    assert client.post("/auth/v1/token?grant_type=password", json={}).status_code == 401


def test_cors_preflight_allows_what_supabase_js_sends(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    sent = "apikey, authorization, content-type, x-client-info, x-supabase-api-version"
    resp = client.options("/auth/v1/token?grant_type=password", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": sent})
    assert resp.status_code in (200, 204)
    assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == set(sent.split(", "))
    assert "Access-Control-Allow-Credentials" not in resp.headers
    actual = client.post("/auth/v1/signup", json={"email": "x@example.test"},
                         headers={"Origin": ORIGIN, "apikey": ANON_KEY, **V2024})
    assert actual.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "x-supabase-api-version" in actual.headers["Access-Control-Expose-Headers"].lower()
    assert "Origin" in actual.headers["Vary"]
    other = client.options("/auth/v1/user", headers={"Origin": "https://evil.example",
                                                      "Access-Control-Request-Method": "PUT"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_openai_sdk_platform_headers_pass_the_v1_preflight(keyed_app: Flask) -> None:
    sent = "authorization, content-type, x-stainless-lang, x-stainless-os, x-stainless-retry-count"
    resp = keyed_app.test_client().options("/v1/chat/completions", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": sent})
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == set(sent.split(", "))


def test_supabase_backend_does_not_serve_auth_v1(test_env: dict[str, str]) -> None:
    application = create_app(load_settings({**test_env, "AUTH_BACKEND": "supabase", "SUPABASE_ANON_KEY": ANON_KEY}))
    try:
        client = application.test_client()
        assert client.get("/auth/v1/settings", headers={"apikey": ANON_KEY}).status_code == 404
        assert client.post("/auth/v1/token?grant_type=password", json={},
                           headers={"apikey": ANON_KEY}).status_code == 404
    finally:
        application.extensions["switchboard"].db.close()
