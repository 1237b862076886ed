"""Revoked means revoked, on the next request: sign-out ends the session server-side; a deleted, banned or
soft-deleted user and a demoted admin lose access on their next request, by session cookie and by bearer token
alike, and a validly signed token for a user the database does not know is a 401, never a 500."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp import create_app
from webapp.auth.backends import AuthSession
from webapp.auth.tokens import mint_access_token
from webapp.config import Settings
from webapp.errors import Unauthorized

CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
USER_ROUTES = ("/api/user/settings", "/api/user/credits", "/api/user/llm/keys", "/api/user/llm/usage")
ADMIN_ROUTES = ("/api/admin/llm/providers", "/api/admin/settings/providers", "/api/admin/users", "/api/admin/logs")


def csrf_token(client: FlaskClient, path: str = "/auth/sign-in") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str) -> Any:
    return client.post("/auth/sign-in", data={"email": email, "password": password, "csrf_token": csrf_token(client)})


def web_tokens(client: FlaskClient) -> dict[str, Any]:
    with client.session_transaction() as sess:
        return dict(sess["sb"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed_in(client: FlaskClient, user: Any) -> dict[str, Any]:
    assert sign_in(client, user.email, user.password).status_code == 302
    assert client.get("/settings").status_code == 200
    return web_tokens(client)


# --- sign-out --------------------------------------------------------------------------------------------------------


def test_signed_out_cookie_replayed_is_signed_out(app: Flask, client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    signed_in(client, user)
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    stolen = client.get_cookie(cookie_name)
    assert stolen is not None
    assert client.post("/auth/sign-out", data={"csrf_token": csrf_token(client, "/settings")}).status_code == 302
    replay = app.test_client()
    replay.set_cookie(cookie_name, stolen.value)
    resp = replay.get("/settings")
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]


def test_signed_out_access_token_is_refused_as_bearer(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    token = signed_in(client, user)["access_token"]
    assert client.get("/api/user/credits", headers=bearer(token)).status_code == 200
    client.post("/auth/sign-out", data={"csrf_token": csrf_token(client, "/settings")})
    resp = client.get("/api/user/credits", headers=bearer(token))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "session_revoked"
    resp = client.post("/v1/chat/completions", headers=bearer(token), json=CHAT)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "session_revoked"
    assert client.get("/v1/models", headers=bearer(token)).status_code == 401


def test_signed_out_refresh_token_no_longer_refreshes(app: Flask, client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    tokens = signed_in(client, user)
    client.post("/auth/sign-out", data={"csrf_token": csrf_token(client, "/settings")})
    backend = app.extensions["switchboard"].auth_backend
    with pytest.raises(Unauthorized) as info:
        backend.refresh(AuthSession.from_dict(tokens))
    assert info.value.code == "session_revoked"


def test_refresh_of_a_replayed_cookie_after_sign_out_signs_out(app: Flask, client: FlaskClient,
                                                               make_user: Any) -> None:
    """A replayed cookie whose access token is about to expire tries a refresh: refused, so signed out."""
    user = make_user()
    signed_in(client, user)
    with client.session_transaction() as sess:
        sess["sb"] = {**sess["sb"], "expires_at": int(time.time()) + 10}
    cookie_name = app.config["SESSION_COOKIE_NAME"]
    stolen = client.get_cookie(cookie_name)
    assert stolen is not None
    client.post("/auth/sign-out", data={"csrf_token": csrf_token(client, "/settings")})
    replay = app.test_client()
    replay.set_cookie(cookie_name, stolen.value)
    assert replay.get("/settings").status_code == 302


def test_sign_out_ends_only_that_session(client: FlaskClient, app: Flask, make_user: Any) -> None:
    user = make_user()
    other = app.test_client()
    signed_in(client, user)
    other_token = signed_in(other, user)["access_token"]
    client.post("/auth/sign-out", data={"csrf_token": csrf_token(client, "/settings")})
    assert other.get("/settings").status_code == 200
    assert client.get("/api/user/credits", headers=bearer(other_token)).status_code == 200


# --- deleted, banned, soft-deleted -------------------------------------------------------------------------------


def _delete(conn: psycopg.Connection, uid: str) -> None:
    conn.execute("delete from auth.users where id = %s", [uid])


def _ban(conn: psycopg.Connection, uid: str) -> None:
    conn.execute("update auth.users set banned_until = now() + interval '1 day' where id = %s", [uid])


def _soft_delete(conn: psycopg.Connection, uid: str) -> None:
    conn.execute("update auth.users set deleted_at = now() where id = %s", [uid])


REVOKE: dict[str, tuple[Callable[[psycopg.Connection, str], None], str]] = {
    "deleted": (_delete, "user_not_found"),
    "banned": (_ban, "user_banned"),
    "soft_deleted": (_soft_delete, "user_not_found"),
}


@pytest.mark.parametrize("how", list(REVOKE))
def test_revoked_user_bearer_token_is_401_on_every_route(client: FlaskClient, admin_conn: psycopg.Connection,
                                                         make_user: Any, how: str) -> None:
    user = make_user()
    assert client.post("/v1/chat/completions", headers=user.headers, json={"model": "x"}).status_code == 400
    assert client.get("/api/user/credits", headers=user.headers).status_code == 200
    revoke, code = REVOKE[how]
    revoke(admin_conn, user.id)
    resp = client.post("/v1/chat/completions", headers=user.headers, json=CHAT)
    assert resp.status_code == 401, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == code and resp.get_json()["error"]["type"] == "authentication_error"
    resp = client.post("/v1/chat/completions", headers=user.headers, json={**CHAT, "stream": True})
    assert resp.status_code == 401
    assert client.get("/v1/models", headers=user.headers).status_code == 401
    for path in USER_ROUTES:
        resp = client.get(path, headers=user.headers)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == code, path
    resp = client.put("/api/user/settings", headers=user.headers, json={"llm_mode": "member"})
    assert resp.status_code == 401
    resp = client.post("/api/user/llm/quote", headers=user.headers, json=CHAT)
    assert resp.status_code == 401


@pytest.mark.parametrize("how", list(REVOKE))
def test_revoked_admin_bearer_token_is_401_on_admin_routes(client: FlaskClient, admin_conn: psycopg.Connection,
                                                           make_user: Any, how: str) -> None:
    admin = make_user(admin=True)
    assert client.get("/api/admin/llm/providers", headers=admin.headers).status_code == 200
    REVOKE[how][0](admin_conn, admin.id)
    for path in ADMIN_ROUTES:
        resp = client.get(path, headers=admin.headers)
        assert resp.status_code == 401, (path, resp.get_data(as_text=True))


@pytest.mark.parametrize("how", list(REVOKE))
def test_revoked_user_session_cookie_is_signed_out(client: FlaskClient, admin_conn: psycopg.Connection,
                                                   make_user: Any, how: str) -> None:
    user = make_user()
    signed_in(client, user)
    REVOKE[how][0](admin_conn, user.id)
    resp = client.get("/settings")
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]
    # Signed out for good: the session was cleared, nothing comes back if the user is restored.
    with client.session_transaction() as sess:
        assert "sb" not in sess


def test_revoked_in_one_app_instance_is_seen_by_another(settings: Settings, admin_conn: psycopg.Connection,
                                                        make_user: Any) -> None:
    """Two workers: nothing is cached per worker, so the ban made anywhere counts everywhere."""
    apps = [create_app(settings), create_app(settings)]
    try:
        user = make_user()
        for a in apps:
            assert a.test_client().get("/v1/models", headers=user.headers).status_code == 200
        _ban(admin_conn, user.id)
        for a in apps:
            assert a.test_client().get("/v1/models", headers=user.headers).status_code == 401
    finally:
        for a in apps:
            a.extensions["switchboard"].db.close()


def test_validly_signed_token_of_unknown_user_is_401_never_500(client: FlaskClient, settings: Settings) -> None:
    token = mint_access_token(settings, user_id=str(uuid.uuid4()), email="ghost@example.test",
                              app_metadata={"role": "admin"}, user_metadata={})
    for method, path, body in [("post", "/v1/chat/completions", CHAT),
                               ("post", "/v1/chat/completions", {**CHAT, "stream": True}),
                               ("get", "/v1/models", None), ("get", "/api/user/settings", None),
                               ("put", "/api/user/settings", {"llm_mode": "member"}),
                               ("get", "/api/user/credits", None), ("post", "/api/user/llm/quote", CHAT),
                               *[("get", p, None) for p in ADMIN_ROUTES]]:
        resp = getattr(client, method)(path, headers=bearer(token), json=body)
        assert resp.status_code == 401, (path, resp.status_code, resp.get_data(as_text=True))


def test_token_with_a_session_that_never_existed_is_401(client: FlaskClient, settings: Settings,
                                                        make_user: Any) -> None:
    user = make_user()
    token = mint_access_token(settings, user_id=user.id, email=user.email, app_metadata={}, user_metadata={},
                              session_id=str(uuid.uuid4()))
    resp = client.get("/api/user/credits", headers=bearer(token))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "session_revoked"
    assert client.post("/v1/chat/completions", headers=bearer(token), json=CHAT).status_code == 401


def test_expired_ban_lets_the_user_back(client: FlaskClient, admin_conn: psycopg.Connection,
                                        make_user: Any) -> None:
    user = make_user()
    admin_conn.execute("update auth.users set banned_until = now() - interval '1 second' where id = %s", [user.id])
    assert client.get("/api/user/credits", headers=user.headers).status_code == 200


# --- demoted admin ---------------------------------------------------------------------------------------------------


def test_demoted_admin_bearer_token_is_403_on_admin_routes(client: FlaskClient, admin_conn: psycopg.Connection,
                                                           make_user: Any) -> None:
    admin = make_user(admin=True)
    assert client.get("/api/admin/llm/providers", headers=admin.headers).status_code == 200
    admin_conn.execute("update auth.users set raw_app_meta_data = raw_app_meta_data - 'role' where id = %s",
                       [admin.id])
    for path in ADMIN_ROUTES:
        resp = client.get(path, headers=admin.headers)
        assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "admin_required", path
    # Still a member: their own routes work.
    assert client.get("/api/user/credits", headers=admin.headers).status_code == 200


def test_demoted_admin_session_loses_admin_pages(client: FlaskClient, admin_conn: psycopg.Connection,
                                                 make_user: Any) -> None:
    admin = make_user(admin=True)
    signed_in(client, admin)
    assert client.get("/admin/providers").status_code == 200
    admin_conn.execute("update auth.users set raw_app_meta_data = raw_app_meta_data - 'role' where id = %s",
                       [admin.id])
    assert client.get("/admin/providers").status_code == 403
    assert client.get("/settings").status_code == 200


def test_promoted_user_session_gets_admin_pages_without_signing_in_again(client: FlaskClient,
                                                                         admin_conn: psycopg.Connection,
                                                                         make_user: Any) -> None:
    user = make_user()
    signed_in(client, user)
    assert client.get("/admin/providers").status_code == 403
    admin_conn.execute("update auth.users set raw_app_meta_data = raw_app_meta_data || '{\"role\": \"admin\"}'"
                       " where id = %s", [user.id])
    assert client.get("/admin/providers").status_code == 200
