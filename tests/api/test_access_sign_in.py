"""Sign-in that holds against guessing: throttling per account and per client address shared by every app
instance (429 with Retry-After), the same answer and about the same time for an unknown email as for a wrong
password, sign-up that does not reveal which emails exist, and password rules (length, common passwords, no
72-byte truncation; old bcrypt hashes still work and are upgraded)."""

from __future__ import annotations

import re
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
from webapp.auth.throttle import DEFAULT as LIMITS
from webapp.config import Settings
from webapp.errors import Unauthorized


def _address() -> str:
    """A client address no other test uses, so the per-address count starts at zero."""
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def csrf_token(client: FlaskClient, path: str = "/auth/sign-in") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match
    return match.group(1)


def post_form(client: FlaskClient, path: str, email: str, password: str) -> Any:
    return client.post(path, data={"email": email, "password": password, "csrf_token": csrf_token(client, path)})


def new_client(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.fixture()
def two_apps(settings: Settings) -> Iterator[tuple[Flask, Flask]]:
    apps = (create_app(settings), create_app(settings))
    yield apps
    for a in apps:
        a.extensions["switchboard"].db.close()


# --- throttling ------------------------------------------------------------------------------------------------------


def test_account_throttled_after_failures_across_two_app_instances(two_apps: tuple[Flask, Flask],
                                                                   make_user: Any) -> None:
    user = make_user()
    clients = [new_client(a, _address()) for a in two_apps]  # two workers, and two addresses too
    for i in range(LIMITS.per_account):
        resp = post_form(clients[i % 2], "/auth/sign-in", user.email, f"wrong password number {i}")
        assert resp.status_code == 401
    for c in clients:
        resp = post_form(c, "/auth/sign-in", user.email, user.password)  # even the right password waits
        assert resp.status_code == 429
        assert 0 < int(resp.headers["Retry-After"]) <= LIMITS.window_seconds
        assert "Too many failed sign-in attempts" in resp.get_data(as_text=True)
    # Another account from the same addresses is not affected.
    other = make_user()
    assert post_form(clients[0], "/auth/sign-in", other.email, other.password).status_code == 302


def test_address_throttled_after_failures_on_many_accounts(two_apps: tuple[Flask, Flask], make_user: Any) -> None:
    address = _address()
    clients = [new_client(a, address) for a in two_apps]
    for i in range(LIMITS.per_address):
        email = f"nobody-{uuid.uuid4().hex[:8]}@example.test"  # spraying: one guess per account
        assert post_form(clients[i % 2], "/auth/sign-in", email, "some guess 123").status_code == 401
    user = make_user()
    resp = post_form(clients[1], "/auth/sign-in", user.email, user.password)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    # The same user from another address signs in.
    assert post_form(new_client(two_apps[0], _address()), "/auth/sign-in", user.email,
                     user.password).status_code == 302


def test_successful_sign_in_clears_the_account_count(app: Flask, make_user: Any) -> None:
    user = make_user()
    client = new_client(app, _address())
    for _ in range(LIMITS.per_account - 1):
        assert post_form(client, "/auth/sign-in", user.email, "not the password!").status_code == 401
    assert post_form(client, "/auth/sign-in", user.email, user.password).status_code == 302
    client = new_client(app, _address())
    for _ in range(LIMITS.per_account - 1):
        assert post_form(client, "/auth/sign-in", user.email, "not the password!").status_code == 401
    assert post_form(client, "/auth/sign-in", user.email, user.password).status_code == 302


def test_throttle_window_ends(app: Flask, admin_conn: psycopg.Connection, make_user: Any) -> None:
    user = make_user()
    client = new_client(app, _address())
    for _ in range(LIMITS.per_account):
        post_form(client, "/auth/sign-in", user.email, "not the password!")
    assert post_form(client, "/auth/sign-in", user.email, user.password).status_code == 429
    admin_conn.execute("update public.sign_in_attempts set window_start = now() - make_interval(secs => %s)"
                       " where key = %s", [LIMITS.window_seconds + 1, "account:" + user.email])
    assert post_form(client, "/auth/sign-in", user.email, user.password).status_code == 302


# --- unknown email vs wrong password ---------------------------------------------------------------------------


def test_unknown_email_answers_like_a_wrong_password(app: Flask, make_user: Any) -> None:
    user = make_user()
    wrong = post_form(new_client(app, _address()), "/auth/sign-in", user.email, "not the password!")
    unknown = post_form(new_client(app, _address()), "/auth/sign-in", f"x-{uuid.uuid4().hex}@example.test",
                        "not the password!")
    assert wrong.status_code == unknown.status_code == 401

    def form_error(resp: Any) -> str:
        match = re.search(r'id="form-error">([^<]*)<', resp.get_data(as_text=True))
        assert match
        return match.group(1)

    assert form_error(wrong) == form_error(unknown) == "Wrong email or password."


def test_unknown_email_takes_about_as_long_as_a_wrong_password(app: Flask, make_user: Any) -> None:
    backend = app.extensions["switchboard"].auth_backend
    user = make_user()

    def timed(email: str) -> float:
        started = time.perf_counter()
        with pytest.raises(Unauthorized):
            backend.sign_in(email, "not the password!")
        return time.perf_counter() - started

    timed(user.email)  # warm the pool
    wrong = statistics.median(timed(user.email) for _ in range(7))
    unknown = statistics.median(timed(f"x-{uuid.uuid4().hex}@example.test") for _ in range(7))
    # Without the dummy verification an unknown email answers in one query's time, a small fraction of a hash.
    assert 0.5 < unknown / wrong < 2.0, (unknown, wrong)


# --- sign-up -----------------------------------------------------------------------------------------------------


def test_sign_up_does_not_reveal_a_taken_email(app: Flask, make_user: Any) -> None:
    user = make_user()
    taken = post_form(app.test_client(), "/auth/sign-up", user.email, "a brand new passphrase")
    fresh = post_form(app.test_client(), "/auth/sign-up", f"n-{uuid.uuid4().hex[:8]}@example.test",
                      "a brand new passphrase")
    assert taken.status_code == fresh.status_code == 200

    def notice(resp: Any) -> str:
        match = re.search(r'class="notice">([^<]*)<', resp.get_data(as_text=True))
        assert match
        return match.group(1)

    assert notice(taken) == notice(fresh)
    assert "sb" not in (taken.headers.get("Set-Cookie") or "")
    # The taken account kept its password.
    client = new_client(app, _address())
    assert post_form(client, "/auth/sign-in", user.email, "a brand new passphrase").status_code == 401
    assert post_form(client, "/auth/sign-in", user.email, user.password).status_code == 302


# --- password rules ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "message"), [
    ("elevenchars", "at least 12 characters"),
    ("password1234", "too common"),
    ("Password1234!", "too common"),
    ("qwertyuiopasdfgh", "too common"),
    ("123456789012", "too common"),
    ("iloveyou2024!!", "too common"),
    ("aaaaaaaaaaaaaaaa", "too common"),
    ("x" * 1025, "at most 1024 characters"),
])
def test_sign_up_refuses_weak_passwords(client: FlaskClient, password: str, message: str) -> None:
    resp = post_form(client, "/auth/sign-up", f"w-{uuid.uuid4().hex[:8]}@example.test", password)
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    assert 'id="password-error"' in html and message in html


def test_twelve_character_uncommon_password_is_accepted(app: Flask) -> None:
    email = f"ok-{uuid.uuid4().hex[:8]}@example.test"
    assert post_form(app.test_client(), "/auth/sign-up", email, "tk7-Rq2v-Mz9").status_code == 200
    assert post_form(new_client(app, _address()), "/auth/sign-in", email, "tk7-Rq2v-Mz9").status_code == 302


def test_password_longer_than_72_bytes_is_not_truncated(app: Flask, admin_conn: psycopg.Connection) -> None:
    email = f"long-{uuid.uuid4().hex[:8]}@example.test"
    prefix = secrets.token_hex(40)  # 80 bytes: bcrypt would ignore everything after byte 72
    assert post_form(app.test_client(), "/auth/sign-up", email, prefix + "-ending-one").status_code == 200
    stored = admin_conn.execute("select encrypted_password from auth.users where email = %s", [email]).fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$")
    client = new_client(app, _address())
    assert post_form(client, "/auth/sign-in", email, prefix + "-ending-two").status_code == 401
    assert post_form(client, "/auth/sign-in", email, prefix[:72]).status_code == 401
    assert post_form(client, "/auth/sign-in", email, prefix + "-ending-one").status_code == 302


def test_legacy_bcrypt_hash_signs_in_and_is_upgraded(app: Flask, admin_conn: psycopg.Connection) -> None:
    """Users whose hash pgcrypto or GoTrue made (bcrypt) keep signing in; the hash becomes argon2id."""
    email = f"bc-{uuid.uuid4().hex[:8]}@example.test"
    admin_conn.execute(
        """insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
               raw_app_meta_data, raw_user_meta_data)
           values ('00000000-0000-0000-0000-000000000000', gen_random_uuid(), 'authenticated', 'authenticated',
               %s, extensions.crypt('an old bcrypt pass', extensions.gen_salt('bf', 10)), now(),
               '{"provider": "email"}', '{}')""", [email])
    client = new_client(app, _address())
    assert post_form(client, "/auth/sign-in", email, "an old bcrypt passX").status_code == 401
    assert post_form(client, "/auth/sign-in", email, "an old bcrypt pass").status_code == 302
    stored = admin_conn.execute("select encrypted_password from auth.users where email = %s", [email]).fetchone()
    assert stored is not None and stored[0].startswith("$argon2id$")
    client = new_client(app, _address())
    assert post_form(client, "/auth/sign-in", email, "an old bcrypt pass").status_code == 302


def test_banned_user_cannot_sign_in(app: Flask, admin_conn: psycopg.Connection, make_user: Any) -> None:
    user = make_user()
    admin_conn.execute("update auth.users set banned_until = now() + interval '1 hour' where id = %s", [user.id])
    resp = post_form(new_client(app, _address()), "/auth/sign-in", user.email, user.password)
    assert resp.status_code == 401 and "Wrong email or password." in resp.get_data(as_text=True)
