"""Request limits of the local Supabase Auth API per client address: sign-ups (/auth/v1/signup) and token refreshes
(/auth/v1/token?grant_type=refresh_token), counted in Postgres so every worker shares one count, answered as
Supabase Auth answers them (429 `over_request_rate_limit`, "Request rate limit reached"), both error formats. The
limits and their windows are settings; here 3 per 2 seconds so the window passes within the test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_auth_pages import csrf_token
from tests.api.test_gotrue_local import _address, assert_error, new_email, post, refresh, sign_in
from webapp import create_app
from webapp.config import Settings

LIMIT, WINDOW = 3, 2
PASSWORD = "a brand new passphrase"


@pytest.fixture()
def apps(settings: Settings) -> Iterator[list[Flask]]:
    """Two app instances (two workers' worth of state) with small limits on one database."""
    limited = settings.with_overrides(auth_signup_rate_limit=LIMIT, auth_signup_rate_window_seconds=WINDOW,
                                      auth_refresh_rate_limit=LIMIT, auth_refresh_rate_window_seconds=WINDOW)
    made = [create_app(limited), create_app(limited)]
    yield made
    for app in made:
        app.extensions["switchboard"].db.close()


def _client(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _sign_up(client: FlaskClient, **kw: Any) -> Any:
    return post(client, "/signup", {"email": new_email(), "password": PASSWORD}, **kw)


def _wait_out(resp: Any) -> None:
    wait = int(resp.headers["Retry-After"])
    assert 1 <= wait <= WINDOW
    time.sleep(wait + 0.2)


def test_the_sign_up_past_the_limit_from_one_address_is_refused_until_the_window_passes(apps: list[Flask]) -> None:
    address = _address()
    one, two = (_client(app, address) for app in apps)
    # Counted across workers: two sign-ups through one app, one through the other ...
    for client in (one, one, two):
        assert _sign_up(client).status_code == 200
    # ... and the next from that address is refused, through either, in both of GoTrue's error formats.
    refused = _sign_up(two)
    assert assert_error(refused, 429, "over_request_rate_limit") == {
        "code": "over_request_rate_limit", "message": "Request rate limit reached"}
    legacy = _sign_up(one, legacy=True)
    assert legacy.status_code == 429
    assert legacy.get_json() == {"code": 429, "error_code": "over_request_rate_limit",
                                 "msg": "Request rate limit reached"}
    # Another address is not affected.
    assert _sign_up(_client(apps[0], _address())).status_code == 200
    # Once the window has passed, the address may sign up again.
    _wait_out(legacy)
    assert _sign_up(one).status_code == 200


def test_a_refused_sign_up_creates_no_account(apps: list[Flask], admin_conn: Any) -> None:
    client = _client(apps[0], _address())
    for _ in range(LIMIT):
        assert _sign_up(client).status_code == 200
    email = new_email()
    assert post(client, "/signup", {"email": email, "password": PASSWORD}).status_code == 429
    assert admin_conn.execute("select count(*) from auth.users where email = %s", [email]).fetchone() == (0,)


def test_invalid_sign_ups_are_refused_without_counting(apps: list[Flask]) -> None:
    client = _client(apps[0], _address())
    for _ in range(LIMIT + 2):  # refused before the password hash: nothing to limit
        assert post(client, "/signup", {"email": "not-an-email", "password": PASSWORD}).status_code == 400
    assert _sign_up(client).status_code == 200


def test_refreshes_past_the_limit_are_refused_and_the_token_survives(apps: list[Flask], make_user: Any) -> None:
    address = _address()
    one, two = (_client(app, address) for app in apps)
    token = sign_in(one, make_user().email)["refresh_token"]  # a password sign-in is not a refresh
    for client in (one, two, one):
        resp = refresh(client, token)
        assert resp.status_code == 200, resp.get_json()
        token = resp.get_json()["refresh_token"]
    refused = refresh(two, token)
    assert assert_error(refused, 429, "over_request_rate_limit")["message"] == "Request rate limit reached"
    other = _client(apps[1], _address())
    other_token = sign_in(other, make_user().email)["refresh_token"]
    assert refresh(other, other_token).status_code == 200  # another address refreshes freely
    # The refused request consumed nothing: the same refresh token works once the window has passed.
    _wait_out(refused)
    resp = refresh(one, token)
    assert resp.status_code == 200, resp.get_json()


def test_the_defaults_are_supabase_auths(settings: Settings) -> None:
    assert (settings.auth_signup_rate_limit, settings.auth_signup_rate_window_seconds) == (30, 300)
    assert (settings.auth_refresh_rate_limit, settings.auth_refresh_rate_window_seconds) == (150, 300)


def test_a_limit_of_zero_turns_it_off(settings: Settings, admin_conn: Any) -> None:
    app = create_app(settings.with_overrides(auth_signup_rate_limit=0, auth_signup_rate_window_seconds=WINDOW))
    address = _address()
    try:
        client = _client(app, address)
        for _ in range(LIMIT + 1):
            assert _sign_up(client).status_code == 200
    finally:
        app.extensions["switchboard"].db.close()
    assert admin_conn.execute("select count(*) from public.auth_rate_hits where key = %s",
                              [f"signup:address:{address}"]).fetchone() == (0,)  # not even counted


def test_the_sign_up_page_shares_the_count_and_a_refused_form_keeps_its_email(apps: list[Flask]) -> None:
    address = _address()
    api, page = _client(apps[0], address), _client(apps[1], address)

    def form(client: FlaskClient, email: str) -> Any:
        return client.post("/auth/sign-up", data={"email": email, "password": PASSWORD,
                                                  "csrf_token": csrf_token(client, "/auth/sign-up")})

    # A form with a typo costs nothing ...
    bad = form(page, "not an email")
    assert bad.status_code == 422
    # ... valid sign-ups count, through the API and the page alike.
    assert _sign_up(api).status_code == 200
    assert _sign_up(api).status_code == 200
    assert form(page, new_email()).status_code in (200, 302)
    email = new_email()
    refused = form(page, email)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= WINDOW
    html = refused.get_data(as_text=True)
    assert "Request rate limit reached" in html and f'value="{email}"' in html
    assert _sign_up(api).status_code == 429
    # Another address is not affected.
    assert form(_client(apps[1], _address()), new_email()).status_code in (200, 302)
