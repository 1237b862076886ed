"""Account security (issue 10): change password, one-time reset links, the first admin's must-change notice, and the
Supabase backend's change and recovery flows against the loopback GoTrue. Real Postgres, real HTTP, no mocks."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_supabase_backend import ANON_KEY, gotrue, sb_app, sb_client  # noqa: F401 (fixtures)
from tests.support.fake_gotrue import FakeGoTrue
from webapp.repos import users as users_repo
from webapp.services import account_security
from webapp.web.account import CHANGED, RECOVER_WAIT

NEW = "a brand new passphrase 42"
HX = {"HX-Request": "true"}


def csrf(client: FlaskClient, path: str = "/auth/sign-in") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"{path} carries a CSRF token"
    return match.group(1)


def sign_in(client: FlaskClient, email: str, password: str) -> Any:
    return client.post("/auth/sign-in", data={"email": email, "password": password, "csrf_token": csrf(client)})


def change(client: FlaskClient, current: str, new: str, confirm: str | None = None, *, hx: bool = True) -> Any:
    data = {"current_password": current, "password": new, "password_confirm": new if confirm is None else confirm,
            "csrf_token": csrf(client, "/settings")}
    return client.post("/settings/password", data=data, headers=HX if hx else {})


def session_ids(admin_conn: psycopg.Connection, user_id: str) -> set[str]:
    rows = admin_conn.execute("select id::text from auth.sessions where user_id = %s", [user_id]).fetchall()
    return {r[0] for r in rows}


def web_sid(client: FlaskClient) -> str:
    with client.session_transaction() as sess:
        return str(sess["sb"]["refresh_token"])


def audit_rows(admin_conn: psycopg.Connection, action: str, email: str) -> list[tuple[Any, ...]]:
    return admin_conn.execute("select actor_id::text, after from public.admin_audit_log where action = %s and"
                              " target = %s order by id", [action, f"user:{email}"]).fetchall()


def password_ok(db: Any, email: str, password: str) -> bool:
    with db.as_service() as conn:
        return users_repo.check_password(conn, email, password) is not None


@pytest.fixture(autouse=True)
def _fresh_throttle(admin_conn: psycopg.Connection) -> None:
    """Counts of earlier tests (same loopback address) must not throttle this one."""
    admin_conn.execute("delete from public.sign_in_attempts where key like 'reset-%' or key like 'recover-%'")


# --- change password (local backend) ------------------------------------------------------------------------------

def test_change_password_keeps_this_session_and_ends_every_other(app: Flask, make_user: Any, db: Any,
                                                                   admin_conn: psycopg.Connection) -> None:
    user = make_user()  # its bearer token carries a live session of its own
    here, elsewhere = app.test_client(), app.test_client()
    assert sign_in(here, user.email, user.password).status_code == 302
    assert sign_in(elsewhere, user.email, user.password).status_code == 302
    assert elsewhere.get("/api/user/credits", headers=user.headers).status_code == 200
    keep = web_sid(here)
    assert len(session_ids(admin_conn, user.id)) == 3
    for sid in session_ids(admin_conn, user.id):  # refresh tokens, as /auth/v1 keeps them for each session
        admin_conn.execute("insert into auth.refresh_tokens (token, user_id, revoked, session_id, created_at)"
                           " values (%s, %s, false, %s, now())", [uuid.uuid4().hex, user.id, sid])

    resp = change(here, user.password, NEW)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    html = resp.get_data(as_text=True)
    assert CHANGED in html and 'id="security"' in html
    assert NEW not in html and user.password not in html

    assert session_ids(admin_conn, user.id) == {keep}
    live_refresh = admin_conn.execute("select session_id::text from auth.refresh_tokens where user_id = %s",
                                      [user.id]).fetchall()
    assert live_refresh == [(keep,)]  # the other sessions' refresh tokens are gone with them
    assert here.get("/settings").status_code == 200  # this session stays
    assert elsewhere.get("/settings").status_code == 302  # the other browser is signed out on its next request
    refused = here.get("/api/user/credits", headers=user.headers)  # the script's token too
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "session_revoked"
    assert not password_ok(db, user.email, user.password) and password_ok(db, user.email, NEW)
    stored = admin_conn.execute("select encrypted_password from auth.users where id = %s", [user.id]).fetchone()[0]
    assert stored.startswith("$argon2id$")


@pytest.mark.parametrize("current", ["not my password at all", "a\x00", "\x00"])  # a NUL once made a 500
def test_wrong_current_password_changes_nothing(app: Flask, make_user: Any, db: Any,
                                                admin_conn: psycopg.Connection, current: str) -> None:
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email, user.password)
    before = session_ids(admin_conn, user.id)
    resp = change(client, current, NEW)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'id="security-current-error"' in html and account_security.WRONG_CURRENT in html
    assert 'aria-invalid="true"' in html
    assert session_ids(admin_conn, user.id) == before
    assert password_ok(db, user.email, user.password)


@pytest.mark.parametrize(("new", "confirm", "field", "message"), [
    ("short", None, "security-new", "at least 12"),
    ("password1234!", None, "security-new", "too common"),
    ("a fine long passphrase", "a different passphrase", "security-confirm", "differ"),
])
def test_weak_or_mistyped_new_password_is_refused_beside_the_field(app: Flask, make_user: Any, db: Any, new: str,
                                                                   confirm: str | None, field: str,
                                                                   message: str) -> None:
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email, user.password)
    resp = change(client, user.password, new, confirm)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    error = re.search(rf'id="{field}-error">([^<]*)<', html)
    assert error and message in error.group(1)
    assert password_ok(db, user.email, user.password)


def test_same_password_is_refused(app: Flask, make_user: Any) -> None:
    user = make_user(password="the same old passphrase")
    client = app.test_client()
    sign_in(client, user.email, user.password)
    resp = change(client, user.password, user.password)
    assert resp.status_code == 422 and account_security.SAME_PASSWORD in resp.get_data(as_text=True)


def test_without_javascript_the_whole_page_comes_back(app: Flask, make_user: Any) -> None:
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email, user.password)
    bad = change(client, "wrong wrong wrong", NEW, hx=False)
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert "<h1>Settings</h1>" in html and 'id="security-current-error"' in html
    ok = change(client, user.password, NEW, hx=False)
    assert ok.status_code == 200 and CHANGED in ok.get_data(as_text=True)


def test_wrong_current_passwords_are_throttled(app: Flask, make_user: Any, db: Any) -> None:
    user = make_user()
    client = app.test_client()
    sign_in(client, user.email, user.password)
    for _ in range(account_security.CHANGE_LIMIT):
        assert change(client, "guess guess guess", NEW).status_code == 422
    resp = change(client, user.password, NEW)  # even the right one waits now
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert "Too many wrong passwords" in resp.get_data(as_text=True)
    assert password_ok(db, user.email, user.password)


def test_change_password_needs_a_signed_in_user(client: FlaskClient) -> None:
    token = csrf(client)
    resp = client.post("/settings/password", data={"csrf_token": token, "current_password": "x", "password": NEW,
                                                   "password_confirm": NEW})
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]
    hx = client.post("/settings/password", data={"csrf_token": token}, headers=HX)
    assert hx.status_code == 401 and "/auth/sign-in" in hx.headers["HX-Redirect"]


def test_change_password_local_keeps_only_the_given_session(db: Any, make_user: Any,
                                                             admin_conn: psycopg.Connection) -> None:
    """The service /auth/v1 calls too: the kept session survives; a keep id that is no session id keeps none."""
    user = make_user()
    with db.as_service() as conn:
        extra = users_repo.create_session(conn, user.id)
    account_security.change_password_local(db, user.id, extra, user.password, NEW)
    assert session_ids(admin_conn, user.id) == {extra}
    account_security.change_password_local(db, user.id, "not-a-uuid", NEW, NEW + "!")
    assert session_ids(admin_conn, user.id) == set()


# --- the first admin's one-time password ---------------------------------------------------------------------------

def test_first_admin_is_told_to_change_the_one_time_password_until_they_do(app: Flask, db: Any,
                                                                           monkeypatch: Any) -> None:
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    email = f"first-admin-{uuid.uuid4().hex[:8]}@example.test"
    result = app.test_cli_runner().invoke(args=["users", "create-admin", email])
    assert result.exit_code == 0, result.output
    password = re.search(r"one-time password: (\S+)", result.output).group(1)  # type: ignore[union-attr]
    assert "Settings → Security" in result.output

    client = app.test_client()
    resp = client.post("/auth/sign-in?next=/admin", data={"email": email, "password": password,
                                                          "csrf_token": csrf(client)})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/settings")
    page = client.get("/settings").get_data(as_text=True)
    notice = re.search(r'<div id="password-notice">(.*?)</div>', page, re.S)
    assert notice and "Change your password" in notice.group(1) and 'href="#security"' in notice.group(1)
    assert client.get("/settings").get_data(as_text=True).count("Change your password") == 1  # still there

    done = change(client, password, NEW)
    assert done.status_code == 200
    oob = re.search(r'<div id="password-notice" hx-swap-oob="true">(.*?)</div>', done.get_data(as_text=True), re.S)
    assert oob and oob.group(1).strip() == ""  # htmx empties the notice at once
    assert "Change your password" not in client.get("/settings").get_data(as_text=True)
    again = app.test_client()
    resp = again.post("/auth/sign-in?next=/admin", data={"email": email, "password": NEW,
                                                         "csrf_token": csrf(again)})
    assert resp.headers["Location"].endswith("/admin")  # no detour any more


def test_admin_password_from_the_environment_is_not_flagged(app: Flask, db: Any, monkeypatch: Any) -> None:
    monkeypatch.setenv("ADMIN_PASSWORD", "chosen by the operator 77")
    email = f"env-admin-{uuid.uuid4().hex[:8]}@example.test"
    assert app.test_cli_runner().invoke(args=["users", "create-admin", email]).exit_code == 0
    with db.as_service() as conn:
        user = users_repo.by_email(conn, email)
        assert user and not users_repo.must_change_password(conn, user.id)


# --- one-time reset links (local backend) -------------------------------------------------------------------------

def create_link(client: FlaskClient, admin: Any, user_id: str) -> str:
    resp = client.post(f"/api/admin/users/{user_id}/password-reset", headers=admin.headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    assert resp.headers["Cache-Control"] == "no-store"
    return str(resp.get_json()["url"])


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def open_link(client: FlaskClient, url: str) -> Any:
    parts = urlsplit(url)
    return client.get(parts.path + "?" + parts.query)


def use_link(client: FlaskClient, url: str, password: str, confirm: str | None = None) -> Any:
    parts = urlsplit(url)
    return client.post(parts.path + "?" + parts.query, data={
        "password": password, "password_confirm": password if confirm is None else confirm,
        "csrf_token": csrf(client)}, follow_redirects=True)


def test_reset_link_sets_a_new_password_once_and_ends_every_session(app: Flask, make_user: Any, db: Any,
                                                                    admin_conn: psycopg.Connection,
                                                                    caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    admin, user = make_user(admin=True), make_user()
    client = app.test_client()
    signed_in = app.test_client()
    sign_in(signed_in, user.email, user.password)
    url = create_link(client, admin, user.id)
    assert url.startswith("http://localhost/reset-password?token=")
    token = token_of(url)

    stored = admin_conn.execute("select token_hash from public.password_reset_links where user_id = %s",
                                [user.id]).fetchone()[0]
    assert bytes(stored) == account_security.reset_token_hash(app.extensions["switchboard"].settings, token)
    assert token.encode() not in bytes(stored)
    [(actor, after)] = audit_rows(admin_conn, "user.password_reset_link", user.email)
    assert actor == admin.id and after["via"] == "admin" and token not in str(after)

    page = open_link(client, url)
    assert page.status_code == 200 and user.email in page.get_data(as_text=True)
    assert token not in page.get_data(as_text=True)  # the form posts to the page's own address
    weak = use_link(client, url, "short")
    assert weak.status_code == 422 and 'id="password-error"' in weak.get_data(as_text=True)
    mistyped = use_link(client, url, NEW, "something else entirely")
    assert mistyped.status_code == 422 and 'id="password_confirm-error"' in mistyped.get_data(as_text=True)

    done = use_link(client, url, NEW)  # the weak attempts did not use the link up
    assert done.status_code == 200
    assert "Your password is changed" in done.get_data(as_text=True)
    assert session_ids(admin_conn, user.id) == set()
    assert signed_in.get("/settings").status_code == 302
    assert client.get("/api/user/credits", headers=user.headers).status_code == 401
    assert password_ok(db, user.email, NEW) and not password_ok(db, user.email, user.password)
    [(actor, after)] = audit_rows(admin_conn, "user.password_reset", user.email)
    assert actor == user.id and after["sessions_ended"] == 2

    again = use_link(client, url, NEW + " again")
    assert again.status_code == 400 and account_security.INVALID_LINK in again.get_data(as_text=True)
    assert open_link(client, url).status_code == 400
    assert password_ok(db, user.email, NEW)
    assert not any(token in r.getMessage() for r in caplog.records)


def test_invalid_expired_used_and_unknown_links_look_the_same(app: Flask, make_user: Any,
                                                             admin_conn: psycopg.Connection) -> None:
    admin, user = make_user(admin=True), make_user()
    client = app.test_client()
    expired = create_link(client, admin, user.id)
    admin_conn.execute("update public.password_reset_links set created_at = now() - interval '61 minutes'"
                       " where user_id = %s", [user.id])
    unknown = "http://localhost/reset-password?token=" + "A" * 43
    garbage = "http://localhost/reset-password?token=%3Cscript%3E"
    bodies = set()
    for url in (expired, unknown, garbage, "http://localhost/reset-password?x=1"):
        resp = open_link(client, url)
        assert resp.status_code == 400
        html = resp.get_data(as_text=True)
        assert account_security.INVALID_LINK in html and user.email not in html
        bodies.add(re.sub(r'value="[^"]*"', "", html))
        assert use_link(client, url, NEW).status_code == 400
    assert len(bodies) == 1  # nothing tells a link that once existed from one that never did


def test_link_a_minute_before_expiry_still_works(app: Flask, make_user: Any, db: Any,
                                                 admin_conn: psycopg.Connection) -> None:
    admin, user = make_user(admin=True), make_user()
    client = app.test_client()
    url = create_link(client, admin, user.id)
    admin_conn.execute("update public.password_reset_links set created_at = now() - interval '59 minutes'"
                       " where user_id = %s", [user.id])
    assert use_link(client, url, NEW).status_code == 200 and password_ok(db, user.email, NEW)


def test_a_newer_link_ends_the_older_one(app: Flask, make_user: Any, db: Any) -> None:
    admin, user = make_user(admin=True), make_user()
    client = app.test_client()
    older = create_link(client, admin, user.id)
    newer = create_link(client, admin, user.id)
    assert token_of(older) != token_of(newer)
    assert use_link(client, older, NEW).status_code == 400
    assert use_link(client, newer, NEW).status_code == 200 and password_ok(db, user.email, NEW)


def test_reset_attempts_are_throttled_per_address_and_per_link(app: Flask, make_user: Any, db: Any) -> None:
    client = app.test_client()
    for _ in range(account_security.RESET_ADDRESS_LIMIT):
        assert open_link(client, "http://localhost/reset-password?token=" + uuid.uuid4().hex * 2).status_code == 400
    admin, user = make_user(admin=True), make_user()
    url = create_link(client, admin, user.id)
    limited = open_link(client, url)  # a good link from a guessing address waits too
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    assert token_of(url) not in limited.get_data(as_text=True)
    other = app.test_client()
    resp = other.get(urlsplit(url).path + "?" + urlsplit(url).query, environ_base={"REMOTE_ADDR": "10.9.8.7"})
    assert resp.status_code == 200  # another address is not held back

    per_link = make_user()
    link = create_link(client, admin, per_link.id)
    parts = urlsplit(link)
    for i in range(account_security.RESET_TOKEN_LIMIT):
        token = csrf(other)
        weak = other.post(parts.path + "?" + parts.query, data={"password": "weak", "password_confirm": "weak",
                                                                "csrf_token": token},
                          environ_base={"REMOTE_ADDR": f"10.1.1.{i + 1}"})
        assert weak.status_code == 422, (i, weak.get_data(as_text=True)[-900:])
    held = other.post(parts.path + "?" + parts.query, data={"password": NEW, "password_confirm": NEW,
                                                            "csrf_token": csrf(other)},
                      environ_base={"REMOTE_ADDR": "10.2.2.2"})
    assert held.status_code == 429 and password_ok(db, per_link.email, per_link.password)


def test_admin_page_creates_a_link_shown_once_and_audited(app: Flask, make_user: Any,
                                                          admin_conn: psycopg.Connection) -> None:
    admin, user = make_user(admin=True), make_user()
    client = app.test_client()
    sign_in(client, admin.email, admin.password)
    page = client.get(f"/admin/users/{user.id}").get_data(as_text=True)
    assert 'id="create-reset-link"' in page and "reset-url" not in page
    resp = client.post(f"/admin/users/{user.id}/password-reset", data={"csrf_token": csrf(client, "/settings")},
                       headers=HX)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    html = resp.get_data(as_text=True)
    url = re.search(r'id="reset-url" readonly value="([^"]+)"', html)
    assert url and "/reset-password?token=" in url.group(1)
    assert "reset link created" in html
    assert "reset-url" not in client.get(f"/admin/users/{user.id}").get_data(as_text=True)  # shown only once
    [(actor, _)] = audit_rows(admin_conn, "user.password_reset_link", user.email)
    assert actor == admin.id
    member = app.test_client()
    sign_in(member, user.email, user.password)
    denied = member.post(f"/admin/users/{admin.id}/password-reset", data={"csrf_token": csrf(member, "/settings")})
    assert denied.status_code == 403


def test_api_refuses_non_admins_and_unknown_users(client: FlaskClient, make_user: Any) -> None:
    member, admin = make_user(), make_user(admin=True)
    resp = client.post(f"/api/admin/users/{admin.id}/password-reset", headers=member.headers)
    assert resp.status_code == 403 and resp.get_json()["error"]["code"] == "admin_required"
    missing = client.post(f"/api/admin/users/{uuid.uuid4()}/password-reset", headers=admin.headers)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "user_not_found"
    assert client.post(f"/api/admin/users/{admin.id}/password-reset").status_code == 401


def test_cli_prints_a_link_and_audits_it(app: Flask, make_user: Any, db: Any,
                                         admin_conn: psycopg.Connection) -> None:
    user = make_user()
    result = app.test_cli_runner().invoke(args=["users", "reset-password", user.email.upper(),
                                                "--base-url", "https://sb.example.test/"])
    assert result.exit_code == 0, result.output
    url = re.search(r"(https://sb\.example\.test/reset-password\?token=\S+)", result.output)
    assert url and "valid until" in result.output
    [(actor, after)] = audit_rows(admin_conn, "user.password_reset_link", user.email)
    assert actor is None and after["via"] == "cli"
    client = app.test_client()
    assert use_link(client, url.group(1), NEW).status_code == 200 and password_ok(db, user.email, NEW)
    unknown = app.test_cli_runner().invoke(args=["users", "reset-password", "nobody@example.test"])
    assert unknown.exit_code != 0 and "no user" in unknown.output


def test_two_uses_of_one_link_at_once_exactly_one_wins(app: Flask, make_user: Any, db: Any) -> None:
    import threading

    admin, user = make_user(admin=True), make_user()
    token = token_of(create_link(app.test_client(), admin, user.id))
    settings = app.extensions["switchboard"].settings
    barrier, outcomes = threading.Barrier(2), []

    def use(password: str, address: str) -> None:
        barrier.wait()
        try:
            account_security.reset_password(db, settings, token, password, address)
            outcomes.append(password)
        except account_security.InvalidResetLink:
            outcomes.append("invalid")

    threads = [threading.Thread(target=use, args=(NEW + str(i), f"10.3.3.{i}")) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 2 and outcomes.count("invalid") == 1
    winner = next(o for o in outcomes if o != "invalid")
    assert password_ok(db, user.email, winner)


def test_reset_clears_the_must_change_flag(app: Flask, make_user: Any, db: Any) -> None:
    admin, user = make_user(admin=True), make_user()
    with db.as_service() as conn:
        users_repo.require_password_change(conn, user.id)
    client = app.test_client()
    assert use_link(client, create_link(client, admin, user.id), NEW).status_code == 200
    assert not account_security.must_change_password(db, user.id)


def test_forgot_password_page_says_to_ask_an_admin(client: FlaskClient) -> None:
    sign_in_page = client.get("/auth/sign-in").get_data(as_text=True)
    assert 'href="/auth/forgot-password"' in sign_in_page
    page = client.get("/auth/forgot-password")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Ask an admin" in html and "Create reset link" in html and "flask users reset-password" in html
    assert "<form" not in html.split('id="forgot-password"')[1]  # nothing to submit: no email exists locally
    assert client.get("/auth/recover?token_hash=" + "a" * 56 + "&type=recovery").status_code == 400


# --- Supabase backend ---------------------------------------------------------------------------------------------

PASSWORD = "correct horse battery"


def sb_web_session(client: FlaskClient) -> dict[str, Any]:
    with client.session_transaction() as sess:
        return dict(sess["sb"])


def gotrue_password_grant(fake: FakeGoTrue, email: str, password: str) -> dict[str, Any]:
    with httpx.Client() as http:
        return http.post(f"{fake.issuer}/token", params={"grant_type": "password"},  # type: ignore[no-any-return]
                         headers={"apikey": ANON_KEY}, json={"email": email, "password": password}).json()


def test_supabase_change_password(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:  # noqa: F811
    user = gotrue.add_user(f"sb-{uuid.uuid4().hex[:8]}@example.test", PASSWORD)
    db = sb_client.application.extensions["switchboard"].db
    with db.as_service() as conn:  # e.g. an admin made with `flask users create-admin` on this database
        users_repo.require_password_change(conn, user.id)
    resp = sign_in(sb_client, user.email, PASSWORD)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/settings")
    assert "Change your password" in sb_client.get("/settings").get_data(as_text=True)
    mine = sb_web_session(sb_client)
    my_sid = gotrue.verify(mine["access_token"])["session_id"]
    other = gotrue_password_grant(gotrue, user.email, PASSWORD)
    gotrue.requests.clear()
    gotrue.logouts.clear()

    resp = change(sb_client, PASSWORD, NEW)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert CHANGED in resp.get_data(as_text=True)
    assert user.password == NEW
    [check] = gotrue.grants("password")  # the current password, checked by GoTrue
    assert check.body["password"] == PASSWORD
    [update] = gotrue.requests_to("/user", "PUT")
    assert update.authorization == f"Bearer {mine['access_token']}" and update.body["password"] == NEW
    scopes = [scope for scope, _ in gotrue.logouts]
    assert scopes == ["local", "others"]  # the checking session ended, then every other one
    assert gotrue.logouts[1][1] == my_sid and my_sid in gotrue.sessions
    assert other["refresh_token"] not in gotrue.refresh_tokens
    assert sb_client.get("/settings").status_code == 200
    assert sb_client.get("/v1/models", headers={"Authorization": f"Bearer {other['access_token']}"}
                         ).status_code == 401
    assert not account_security.must_change_password(db, user.id)
    assert "Change your password" not in sb_client.get("/settings").get_data(as_text=True)


def test_supabase_change_password_refusals(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:  # noqa: F811
    user = gotrue.add_user(f"sb-{uuid.uuid4().hex[:8]}@example.test", PASSWORD + " and more")
    sign_in(sb_client, user.email, user.password)
    gotrue.requests.clear()
    weak = change(sb_client, user.password, "short")
    assert weak.status_code == 422 and 'id="security-new-error"' in weak.get_data(as_text=True)
    assert gotrue.requests_to("/user", "PUT") == []
    wrong = change(sb_client, "not the password", NEW)
    assert wrong.status_code == 422 and account_security.WRONG_CURRENT in wrong.get_data(as_text=True)
    assert gotrue.requests_to("/user", "PUT") == []
    same = change(sb_client, user.password, user.password)  # GoTrue's own same_password rule
    assert same.status_code == 422 and "different from the current one" in same.get_data(as_text=True)
    assert sb_client.get("/settings").status_code == 200


def test_supabase_forgot_password_asks_gotrue_for_its_email(sb_client: FlaskClient,  # noqa: F811
                                                           gotrue: FakeGoTrue) -> None:  # noqa: F811
    user = gotrue.add_user(f"sb-{uuid.uuid4().hex[:8]}@example.test", PASSWORD)
    page = sb_client.get("/auth/forgot-password").get_data(as_text=True)
    assert 'name="email"' in page
    known = sb_client.post("/auth/forgot-password", data={"email": user.email,
                                                          "csrf_token": csrf(sb_client, "/auth/forgot-password")})
    unknown = sb_client.post("/auth/forgot-password", data={"email": "nobody-here@example.test",
                                                            "csrf_token": csrf(sb_client, "/auth/forgot-password")})
    assert known.status_code == unknown.status_code == 200
    notice = re.compile(r'id="forgot-notice"[^>]*>([^<]*)<')
    assert notice.search(known.get_data(as_text=True)).group(1) == notice.search(  # type: ignore[union-attr]
        unknown.get_data(as_text=True)).group(1)
    [mail] = gotrue.outbox
    assert mail.email == user.email and mail.redirect_to == "http://localhost/auth/recover"
    [req] = gotrue.requests_to("/recover", "POST")[:1]
    assert "code_challenge" not in req.body  # implicit flow: the link carries a token_hash
    bad = sb_client.post("/auth/forgot-password", data={"email": "nope", "csrf_token": csrf(sb_client,
                                                                                          "/auth/forgot-password")})
    assert bad.status_code == 422 and 'id="email-error"' in bad.get_data(as_text=True)
    soon = sb_client.post("/auth/forgot-password", data={"email": user.email,
                                                         "csrf_token": csrf(sb_client, "/auth/forgot-password")})
    assert soon.status_code == 429 and RECOVER_WAIT in soon.get_data(as_text=True)


def test_supabase_forgot_password_is_throttled_per_address(sb_client: FlaskClient,  # noqa: F811
                                                           gotrue: FakeGoTrue) -> None:  # noqa: F811
    from webapp.web.account import RECOVER_LIMIT

    for i in range(RECOVER_LIMIT):
        resp = sb_client.post("/auth/forgot-password", data={"email": f"n{i}@example.test",
                                                             "csrf_token": csrf(sb_client, "/auth/forgot-password")})
        assert resp.status_code == 200
    held = sb_client.post("/auth/forgot-password", data={"email": "more@example.test",
                                                         "csrf_token": csrf(sb_client, "/auth/forgot-password")})
    assert held.status_code == 429 and int(held.headers["Retry-After"]) > 0
    assert len(gotrue.requests_to("/recover", "POST")) == RECOVER_LIMIT


def test_supabase_recovery_link_sets_a_new_password(sb_client: FlaskClient, gotrue: FakeGoTrue,  # noqa: F811
                                                    caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    user = gotrue.add_user(f"sb-{uuid.uuid4().hex[:8]}@example.test", PASSWORD)
    elsewhere = gotrue_password_grant(gotrue, user.email, PASSWORD)
    sb_client.post("/auth/forgot-password", data={"email": user.email,
                                                  "csrf_token": csrf(sb_client, "/auth/forgot-password")})
    [mail] = gotrue.outbox
    link = f"/auth/recover?token_hash={mail.token_hash}&type=recovery"

    form = sb_client.get(link)  # a mail scanner opening the link does not use it up
    assert form.status_code == 200 and 'name="password"' in form.get_data(as_text=True)
    assert mail.token_hash not in form.get_data(as_text=True)
    assert gotrue.requests_to("/verify", "POST") == []
    weak = sb_client.post(link, data={"password": "short", "password_confirm": "short",
                                      "csrf_token": csrf(sb_client, link)})
    assert weak.status_code == 422 and gotrue.requests_to("/verify", "POST") == []

    done = sb_client.post(link, data={"password": NEW, "password_confirm": NEW, "csrf_token": csrf(sb_client, link)})
    assert done.status_code == 302 and done.headers["Location"] == "/auth/sign-in"
    assert "Your password is changed" in sb_client.get("/auth/sign-in").get_data(as_text=True)
    assert "Your password is changed" not in sb_client.get("/auth/sign-in").get_data(as_text=True)  # once
    assert user.password == NEW
    [verify] = gotrue.requests_to("/verify", "POST")
    assert verify.body["token_hash"] == mail.token_hash and verify.body["type"] == "recovery"
    assert ("global", gotrue.logouts[-1][1]) == gotrue.logouts[-1]
    assert not [s for s, uid in gotrue.sessions.items() if uid == user.id]  # every session ended
    assert elsewhere["refresh_token"] not in gotrue.refresh_tokens

    again = sb_client.post(link, data={"password": NEW + "x", "password_confirm": NEW + "x",
                                       "csrf_token": csrf(sb_client, link)})
    assert again.status_code == 400 and account_security.INVALID_LINK in again.get_data(as_text=True)
    assert sign_in(sb_client, user.email, NEW).status_code == 302
    assert not any(mail.token_hash in r.getMessage() for r in caplog.records)


def test_supabase_expired_recovery_link_is_invalid(sb_client: FlaskClient, gotrue: FakeGoTrue) -> None:  # noqa: F811
    user = gotrue.add_user(f"sb-{uuid.uuid4().hex[:8]}@example.test", PASSWORD)
    sb_client.post("/auth/forgot-password", data={"email": user.email,
                                                  "csrf_token": csrf(sb_client, "/auth/forgot-password")})
    gotrue.otp_ttl = 0
    link = f"/auth/recover?token_hash={gotrue.outbox[0].token_hash}&type=recovery"
    resp = sb_client.post(link, data={"password": NEW, "password_confirm": NEW, "csrf_token": csrf(sb_client, link)})
    assert resp.status_code == 400 and account_security.INVALID_LINK in resp.get_data(as_text=True)
    assert user.password == PASSWORD
    for bad in ("/auth/recover", "/auth/recover?token_hash=x", f"/auth/recover?token_hash={'a' * 56}&type=signup"):
        assert sb_client.get(bad).status_code == 400


def test_supabase_has_no_local_reset_links(sb_client: FlaskClient, gotrue: FakeGoTrue,  # noqa: F811
                                           database_urls: tuple[str, str]) -> None:
    admin = gotrue.add_user(f"sb-admin-{uuid.uuid4().hex[:8]}@example.test", PASSWORD,
                            app_metadata={"role": "admin"})
    token = gotrue_password_grant(gotrue, admin.email, PASSWORD)["access_token"]
    resp = sb_client.post(f"/api/admin/users/{admin.id}/password-reset", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "reset_links_local_only"
    assert sb_client.get("/reset-password?token=" + "A" * 43).status_code == 400


# --- logs ---------------------------------------------------------------------------------------------------------

def test_reset_tokens_never_reach_the_access_log(test_env: dict[str, str], make_user: Any, tmp_path: Any) -> None:
    """Under the production gunicorn.conf.py, a request for a reset or recovery link logs its path, not its query."""
    import requests

    from tests.load.harness import GunicornServer
    from tests.load.pgcluster import free_port

    server = GunicornServer(test_env, tmp_path / "gunicorn.log", free_port(), workers=1, threads=2)
    server.start()
    try:
        secret, token_hash = "Zq" + uuid.uuid4().hex + "Xw", uuid.uuid4().hex + "beef"
        assert requests.get(f"{server.url}/reset-password?token={secret}", timeout=10).status_code == 400
        assert requests.get(f"{server.url}/auth/recover?token_hash={token_hash}&type=recovery",
                            timeout=10).status_code == 400
    finally:
        server.stop()
    log = server.log_text()
    assert '"GET /reset-password HTTP/1.1" 400' in log and '"GET /auth/recover HTTP/1.1" 400' in log
    assert secret not in log and token_hash not in log
