"""AUTH_BACKEND=supabase end to end: the web pages drive supabase-py against a loopback GoTrue (tests/support/
fake_gotrue.py) that issues real ES256 access tokens, which the app verifies through the fake's JWKS."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support import dbsetup
from tests.support.fake_gotrue import API_VERSION, API_VERSION_HEADER, FakeGoTrue, FakeUser
from webapp import create_app
from webapp.auth.backends import SupabaseBackend
from webapp.config import load_settings

ANON_KEY = "anon-test-key"
PASSWORD = "correct horse battery"


def _mirror_into_auth_users(admin_url: str) -> Any:
    """On Supabase, GoTrue writes auth.users in the app's own database; mirror each fake user there."""

    def mirror(user: FakeUser) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                """insert into auth.users (instance_id, id, aud, role, email, email_confirmed_at,
                       raw_app_meta_data, raw_user_meta_data, confirmation_token, recovery_token,
                       email_change_token_new, email_change)
                   values ('00000000-0000-0000-0000-000000000000', %s, 'authenticated', 'authenticated', %s,
                       case when %s then now() end, %s, '{}', '', '', '', '')""",
                [user.id, user.email, user.confirmed, json.dumps(user.app_metadata)],
            )

    return mirror


def _mirror_sessions(fake: FakeGoTrue, admin_url: str) -> None:
    """GoTrue writes auth.sessions in the app's database too (the app checks a token's session_id there)."""

    def created(session_id: str, user_id: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("insert into auth.sessions (id, user_id, created_at, updated_at) values (%s, %s, now(),"
                         " now()) on conflict do nothing", [session_id, user_id])

    def ended(session_id: str) -> None:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("delete from auth.sessions where id = %s", [session_id])

    fake.on_session_created, fake.on_session_ended = created, ended


@pytest.fixture()
def gotrue(database_urls: tuple[str, str]) -> Iterator[FakeGoTrue]:
    fake = FakeGoTrue(anon_key=ANON_KEY)
    fake.on_user_created = _mirror_into_auth_users(database_urls[0])
    _mirror_sessions(fake, database_urls[0])
    with fake:
        yield fake


def _supabase_env(database_urls: tuple[str, str], gotrue: FakeGoTrue, **extra: str) -> dict[str, str]:
    admin_url, app_url = database_urls
    return dbsetup.test_environ(app_url, admin_url, AUTH_BACKEND="supabase", SUPABASE_URL=gotrue.base_url,
                        SUPABASE_ANON_KEY=ANON_KEY, JWT_ALGORITHMS="ES256", **extra)


@pytest.fixture()
def sb_app(database_urls: tuple[str, str], gotrue: FakeGoTrue) -> Iterator[Flask]:
    app = create_app(load_settings(_supabase_env(database_urls, gotrue)))
    yield app
    svc = app.extensions["switchboard"]
    svc.verifier.close()
    svc.db.close()


@pytest.fixture()
def sb_client(sb_app: Flask) -> FlaskClient:
    return sb_app.test_client()


def csrf_token(client: FlaskClient, path: str = "/auth/sign-in") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the form carries a CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str) -> Any:
    token = csrf_token(client)
    return client.post("/auth/sign-in", data={"email": email, "password": password, "csrf_token": token})


def sign_up(client: FlaskClient, email: str, password: str) -> Any:
    token = csrf_token(client, "/auth/sign-up")
    return client.post("/auth/sign-up", data={"email": email, "password": password, "csrf_token": token})


def web_session(client: FlaskClient) -> dict[str, Any]:
    with client.session_transaction() as sess:
        return dict(sess)


def new_email() -> str:
    return f"sb-{uuid.uuid4().hex[:10]}@example.test"


# --- sign-up ------------------------------------------------------------------------------------------------------


def test_sign_up_with_session_signs_in(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    email = new_email()
    resp = sign_up(sb_client, email, PASSWORD)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/settings")
    [req] = gotrue.requests_to("/signup", "POST")
    assert req.apikey == ANON_KEY and req.authorization == f"Bearer {ANON_KEY}"
    assert req.body["email"] == email and req.body["password"] == PASSWORD
    user = gotrue.users[email]
    assert web_session(sb_client)["sb"]["user_id"] == user.id
    page = sb_client.get("/settings")
    assert page.status_code == 200 and email in page.get_data(as_text=True)


def test_sign_up_needing_email_confirmation_shows_notice(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    gotrue.autoconfirm = False
    email = new_email()
    resp = sign_up(sb_client, email, PASSWORD)
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert 'id="sign-in"' in html and "Check your email to confirm your account" in html
    assert "sb" not in web_session(sb_client)
    assert sb_client.get("/settings").status_code == 302
    assert not gotrue.users[email].confirmed
    # Until confirmed, GoTrue refuses the password grant.
    resp = sign_in(sb_client, email, PASSWORD)
    assert resp.status_code == 401 and "Email not confirmed" in resp.get_data(as_text=True)


def test_sign_up_existing_email_says_what_a_new_unconfirmed_one_says(sb_client: FlaskClient,
                                                                     gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    resp = sign_up(sb_client, user.email, "another long password")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "already exists" not in html and "Check your email to confirm your account" in html
    assert "sb" not in web_session(sb_client)


def test_sign_up_weak_password_per_project_policy_is_a_field_error(sb_client: FlaskClient,
                                                                    gotrue: FakeGoTrue) -> None:
    gotrue.min_password_length = 16  # the project demands more than the app's own 12-character minimum
    resp = sign_up(sb_client, new_email(), "only12chars!")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'id="password-error"' in html and "at least 16 characters" in html


def test_sign_up_validation_happens_before_calling_gotrue(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    resp = sign_up(sb_client, "not-an-email", "short")
    assert resp.status_code == 422
    assert gotrue.requests_to("/signup") == []


# --- sign-in / sign-out -------------------------------------------------------------------------------------------


def test_sign_in_with_password(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    resp = sign_in(sb_client, user.email.upper(), PASSWORD)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/settings")
    [req] = gotrue.grants("password")
    assert req.apikey == ANON_KEY and req.authorization == f"Bearer {ANON_KEY}"
    assert req.headers[API_VERSION_HEADER.lower()] == API_VERSION
    stored = web_session(sb_client)["sb"]
    assert stored["user_id"] == user.id and stored["email"] == user.email
    assert stored["refresh_token"] in gotrue.refresh_tokens
    assert gotrue.verify(stored["access_token"])["sub"] == user.id
    page = sb_client.get("/settings")
    assert page.status_code == 200 and user.email in page.get_data(as_text=True)


@pytest.mark.parametrize("legacy", [False, True], ids=["error-codes", "legacy-oauth-error"])
def test_wrong_password_rerenders_with_message(gotrue: FakeGoTrue, sb_client: FlaskClient, legacy: bool) -> None:
    gotrue.legacy_password_errors = legacy
    user = gotrue.add_user(new_email(), PASSWORD)
    resp = sign_in(sb_client, user.email, "wrong password!")
    assert resp.status_code == 401
    html = resp.get_data(as_text=True)
    assert 'id="sign-in"' in html and "Invalid login credentials" in html
    assert user.email in html  # the form keeps the email
    assert "sb" not in web_session(sb_client)
    assert sb_client.get("/settings").status_code == 302


def test_sign_out_revokes_only_this_session(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    assert sign_in(sb_client, user.email, PASSWORD).status_code == 302
    stored = web_session(sb_client)["sb"]
    sid = gotrue.verify(stored["access_token"])["session_id"]
    # A second session of the same user (another browser) must survive a local sign-out.
    with httpx.Client() as http:
        other = http.post(f"{gotrue.issuer}/token", params={"grant_type": "password"},
                          headers={"apikey": ANON_KEY}, json={"email": user.email, "password": PASSWORD}).json()
    resp = sb_client.post("/auth/sign-out", data={"csrf_token": csrf_token(sb_client, "/settings")})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/auth/sign-in")
    [req] = gotrue.requests_to("/logout", "POST")
    assert req.query == {"scope": "local"}
    assert req.apikey == ANON_KEY and req.authorization == f"Bearer {stored['access_token']}"
    assert gotrue.logouts == [("local", sid)]
    assert sid not in gotrue.sessions and stored["refresh_token"] not in gotrue.refresh_tokens
    assert other["refresh_token"] in gotrue.refresh_tokens
    assert "sb" not in web_session(sb_client)
    assert sb_client.get("/settings").status_code == 302


def test_supabase_token_is_refused_once_its_session_is_gone(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    """The app checks a Supabase token's session_id against auth.sessions (which GoTrue writes): after sign-out,
    or an admin's "sign out everywhere", the still-unexpired access token is a 401 at once."""
    user = gotrue.add_user(new_email(), PASSWORD)
    assert sign_in(sb_client, user.email, PASSWORD).status_code == 302
    token = web_session(sb_client)["sb"]["access_token"]
    with httpx.Client() as http:
        other = http.post(f"{gotrue.issuer}/token", params={"grant_type": "password"},
                          headers={"apikey": ANON_KEY}, json={"email": user.email, "password": PASSWORD}).json()
    assert sb_client.get("/api/user/credits", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    sb_client.post("/auth/sign-out", data={"csrf_token": csrf_token(sb_client, "/settings")})
    resp = sb_client.get("/api/user/credits", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "session_revoked"
    other_headers = {"Authorization": f"Bearer {other['access_token']}"}
    assert sb_client.get("/v1/models", headers=other_headers).status_code == 200
    gotrue.revoke_sessions(user.id)
    assert sb_client.get("/v1/models", headers=other_headers).status_code == 401


def test_sign_in_post_without_csrf_is_refused(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    resp = sb_client.post("/auth/sign-in", data={"email": user.email, "password": PASSWORD})
    assert resp.status_code == 400
    assert "form expired" in resp.get_data(as_text=True)
    assert gotrue.grants("password") == []  # refused before GoTrue is asked
    assert sb_client.get("/settings").status_code == 302


# --- session lifetime and refresh -----------------------------------------------------------------------------------


def test_session_expires_after_configured_hours(database_urls: tuple[str, str], gotrue: FakeGoTrue) -> None:
    app = create_app(load_settings(_supabase_env(database_urls, gotrue, SESSION_HOURS="1")))
    try:
        client = app.test_client()
        user = gotrue.add_user(new_email(), PASSWORD)
        assert sign_in(client, user.email, PASSWORD).status_code == 302
        assert client.get("/settings").status_code == 200
        with client.session_transaction() as sess:
            sess["signed_in_at"] = int(time.time()) - 3601
        assert client.get("/settings").status_code == 302
        assert "sb" not in web_session(client)
        assert gotrue.grants("refresh_token") == []  # an expired web session is not silently extended
    finally:
        app.extensions["switchboard"].verifier.close()
        app.extensions["switchboard"].db.close()


def test_access_token_is_refreshed_before_expiry(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    assert sign_in(sb_client, user.email, PASSWORD).status_code == 302
    before = web_session(sb_client)["sb"]
    with sb_client.session_transaction() as sess:
        sess["sb"] = {**sess["sb"], "expires_at": int(time.time()) + 30}
    assert sb_client.get("/settings").status_code == 200
    [req] = gotrue.grants("refresh_token")
    assert req.body == {"refresh_token": before["refresh_token"]}
    assert req.apikey == ANON_KEY and req.authorization == f"Bearer {ANON_KEY}"
    after = web_session(sb_client)["sb"]
    assert after["refresh_token"] != before["refresh_token"]
    assert after["refresh_token"] in gotrue.refresh_tokens and not gotrue.refresh_tokens[after["refresh_token"]].used
    assert gotrue.refresh_tokens[before["refresh_token"]].used
    assert after["access_token"] != before["access_token"] and after["expires_at"] > time.time() + 600
    assert gotrue.verify(after["access_token"])["session_id"] == gotrue.verify(before["access_token"])["session_id"]
    # The next page load uses the stored token as is: no second refresh.
    assert sb_client.get("/settings").status_code == 200
    assert len(gotrue.grants("refresh_token")) == 1


def test_refresh_tokens_are_single_use(gotrue: FakeGoTrue) -> None:
    """The fake behaves as GoTrue does for the reuse the app must never commit."""
    user = gotrue.add_user(new_email(), PASSWORD)
    headers = {"apikey": ANON_KEY, API_VERSION_HEADER: API_VERSION}
    with httpx.Client(base_url=gotrue.issuer, headers=headers) as http:
        first = http.post("/token", params={"grant_type": "password"},
                          json={"email": user.email, "password": PASSWORD}).json()
        rotated = http.post("/token", params={"grant_type": "refresh_token"},
                            json={"refresh_token": first["refresh_token"]})
        assert rotated.status_code == 200
        reused = http.post("/token", params={"grant_type": "refresh_token"},
                           json={"refresh_token": first["refresh_token"]})
        assert reused.status_code == 400
        assert reused.json() == {"code": "refresh_token_already_used", "message": "Invalid Refresh Token: Already Used"}
        assert reused.headers[API_VERSION_HEADER] == API_VERSION
        no_key = http.post("/token", params={"grant_type": "password"}, headers={"apikey": ""},
                           json={"email": user.email, "password": PASSWORD})
        assert no_key.status_code == 401


def test_refresh_failure_signs_out(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    assert sign_in(sb_client, user.email, PASSWORD).status_code == 302
    gotrue.revoke_sessions(user.id)  # e.g. "sign out everywhere" from another device
    with sb_client.session_transaction() as sess:
        sess["sb"] = {**sess["sb"], "expires_at": int(time.time()) + 30}
    resp = sb_client.get("/settings")
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]
    assert len(gotrue.grants("refresh_token")) == 1
    assert "sb" not in web_session(sb_client)


def test_reused_refresh_token_signs_out(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    assert sign_in(sb_client, user.email, PASSWORD).status_code == 302
    stale = web_session(sb_client)["sb"]
    with sb_client.session_transaction() as sess:
        sess["sb"] = {**sess["sb"], "expires_at": int(time.time()) + 30}
    assert sb_client.get("/settings").status_code == 200  # rotates the refresh token
    with sb_client.session_transaction() as sess:  # a stale cookie replayed: the old, used refresh token
        sess["sb"] = {**stale, "expires_at": int(time.time()) + 30}
    assert sb_client.get("/settings").status_code == 302
    assert "sb" not in web_session(sb_client)


# --- isolation between users ----------------------------------------------------------------------------------------


def test_concurrent_sign_ins_never_share_client_state(sb_app: Flask, gotrue: FakeGoTrue) -> None:
    alice = gotrue.add_user(new_email(), PASSWORD)
    bob = gotrue.add_user(new_email(), "bobs own long password")
    barrier = threading.Barrier(2, timeout=10)
    gotrue.before_password_grant = barrier.wait  # both password grants are in flight at once
    clients = {alice.email: sb_app.test_client(), bob.email: sb_app.test_client()}
    passwords = {alice.email: PASSWORD, bob.email: "bobs own long password"}
    tokens = {email: csrf_token(c) for email, c in clients.items()}
    results: dict[str, int] = {}

    def run(email: str) -> None:
        resp = clients[email].post("/auth/sign-in", data={"email": email, "password": passwords[email],
                                                          "csrf_token": tokens[email]})
        results[email] = resp.status_code

    threads = [threading.Thread(target=run, args=(email,)) for email in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    gotrue.before_password_grant = None
    assert results == {alice.email: 302, bob.email: 302}

    for user in (alice, bob):
        stored = web_session(clients[user.email])["sb"]
        assert stored["user_id"] == user.id
        assert gotrue.verify(stored["access_token"])["sub"] == user.id
        page = clients[user.email].get("/settings")
        assert page.status_code == 200 and user.email in page.get_data(as_text=True)
    alice_token = web_session(clients[alice.email])["sb"]["access_token"]
    bob_token = web_session(clients[bob.email])["sb"]["access_token"]
    assert alice_token != bob_token

    # Then both sign out, and once more sign in, from the same app (and the same backend object).
    for client in clients.values():
        client.post("/auth/sign-out", data={"csrf_token": csrf_token(client, "/settings")})
    assert sign_in(clients[alice.email], alice.email, PASSWORD).status_code == 302

    # No request made for one user ever carried the other's token; sign-ins only ever carried the anon key.
    for req in gotrue.grants("password") + gotrue.grants("refresh_token") + gotrue.requests_to("/signup"):
        assert req.authorization == f"Bearer {ANON_KEY}" and req.apikey == ANON_KEY
    logouts = {req.authorization for req in gotrue.requests_to("/logout")}
    assert logouts == {f"Bearer {alice_token}", f"Bearer {bob_token}"}


def test_backend_clients_share_nothing(database_urls: tuple[str, str], gotrue: FakeGoTrue) -> None:
    backend = SupabaseBackend(load_settings(_supabase_env(database_urls, gotrue)))
    alice = gotrue.add_user(new_email(), PASSWORD)
    bob = gotrue.add_user(new_email(), PASSWORD)
    a = backend.sign_in(alice.email, PASSWORD)
    b = backend.sign_in(bob.email, PASSWORD)
    backend.sign_out(a)
    b2 = backend.refresh(b)
    assert b2.user_id == bob.id and b2.refresh_token != b.refresh_token
    [logout] = gotrue.requests_to("/logout")
    assert logout.authorization == f"Bearer {a.access_token}"
    assert [r.authorization for r in gotrue.grants("refresh_token")] == [f"Bearer {ANON_KEY}"]


# --- GoTrue unavailable ---------------------------------------------------------------------------------------------


def test_gotrue_down_is_a_clear_503(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    token = csrf_token(sb_client)
    gotrue.stop()
    resp = sb_client.post("/auth/sign-in", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 503
    html = resp.get_data(as_text=True)
    assert "sign-in service is unavailable" in html
    assert "Traceback" not in html and "Errno" not in html and "Connection refused" not in html
    assert "sb" not in web_session(sb_client)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_gotrue_server_errors_are_503(sb_client: FlaskClient, gotrue: FakeGoTrue, status: int) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    gotrue.fail_status = status
    resp = sign_in(sb_client, user.email, PASSWORD)
    assert resp.status_code == 503
    assert "sign-in service is unavailable" in resp.get_data(as_text=True)


def test_gotrue_rate_limit_is_a_429_with_the_message_beside_the_form(sb_client: FlaskClient,
                                                                       gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    gotrue.fail_status = 429
    resp = sign_in(sb_client, user.email, PASSWORD)
    assert resp.status_code == 429
    assert "Too many sign-in attempts" in resp.get_data(as_text=True)
    assert "sb" not in web_session(sb_client)


def test_refresh_with_gotrue_down_signs_out_cleanly(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)
    assert sign_in(sb_client, user.email, PASSWORD).status_code == 302
    with sb_client.session_transaction() as sess:
        sess["sb"] = {**sess["sb"], "expires_at": int(time.time()) + 30}
    gotrue.stop()
    resp = sb_client.get("/settings")
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]


# --- bearer API with a GoTrue-issued ES256 token ----------------------------------------------------------------------


def test_es256_token_from_gotrue_is_accepted_by_the_api(database_urls: tuple[str, str]) -> None:
    """The token verifies via JWKS; its user must exist in auth.users (a user the database does not know is a 401,
    never a 500), and then the balance reads 0."""
    with FakeGoTrue(anon_key=ANON_KEY) as gotrue:
        app = create_app(load_settings(_supabase_env(database_urls, gotrue)))
        try:
            stranger = gotrue.add_user(new_email(), PASSWORD)  # no mirror hook: not in the local auth.users
            client = app.test_client()
            resp = client.get("/api/user/credits",
                              headers={"Authorization": f"Bearer {gotrue.access_token(stranger, str(uuid.uuid4()))}"})
            assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "user_not_found"
            gotrue.on_user_created = _mirror_into_auth_users(database_urls[0])
            _mirror_sessions(gotrue, database_urls[0])
            user = gotrue.add_user(new_email(), PASSWORD)
            with httpx.Client() as http:
                session = http.post(f"{gotrue.issuer}/token", params={"grant_type": "password"},
                                    headers={"apikey": ANON_KEY},
                                    json={"email": user.email, "password": PASSWORD}).json()
            resp = client.get("/api/user/credits", headers={"Authorization": f"Bearer {session['access_token']}"})
            assert resp.status_code == 200, resp.get_data(as_text=True)
            body = resp.get_json()
            assert body["balance_micro"] == 0 and body["ledger"] == []
            assert gotrue.requests_to("/.well-known/jwks.json", "GET"), "the key came from the JWKS"
            # A token signed by another key with the same kid is refused.
            impostor = FakeGoTrue(anon_key=ANON_KEY)
            impostor.kid = gotrue.kid
            forged = impostor.access_token(user, str(uuid.uuid4()))
            impostor.stop()
            resp = client.get("/api/user/credits", headers={"Authorization": f"Bearer {forged}"})
            assert resp.status_code == 401
        finally:
            app.extensions["switchboard"].verifier.close()
            app.extensions["switchboard"].db.close()


def test_es256_token_of_mirrored_user_sees_its_own_credits(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:
    user = gotrue.add_user(new_email(), PASSWORD)  # mirrored: the new-user trigger creates its rows
    assert sign_in(sb_client, user.email, PASSWORD).status_code == 302  # a real session (mirrored into the db)
    token = web_session(sb_client)["sb"]["access_token"]
    resp = sb_client.get("/api/user/credits", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200
    assert isinstance(resp.get_json()["balance_micro"], int)
