"""Admin site settings for credits: validated (JSON and the panel form, the error beside the field), audited with
before and after, and the sign-up grant applied through the ledger in the transaction that creates the user, for
the local web sign-up, the local /auth/v1/signup and a Supabase (GoTrue) sign-up alike: ledger = balance."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_supabase_backend import gotrue, sb_app, sb_client  # noqa: F401  (fixtures)
from tests.api.test_supabase_backend import sign_up as sb_sign_up
from tests.support.admin import HX, audit_rows, csrf_token, hx_post, web_sign_in
from tests.support.fake_gotrue import FakeGoTrue

DEFAULTS = ("update public.site_settings set signup_grant = 0, currency_code = 'USD', currency_symbol = '$',"
            " credit_value = 1000000, low_balance_threshold = 1000000, updated_by = null where id")


@pytest.fixture()
def restore(admin_conn: psycopg.Connection) -> Iterator[None]:
    """The settings row is shared by the whole test session: back to the migration's defaults afterwards."""
    admin_conn.execute(DEFAULTS)
    yield
    admin_conn.execute(DEFAULTS)


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


def put(client: FlaskClient, user: Any, body: Any) -> Any:
    return client.put("/api/admin/settings/credits", json=body, headers=user.headers)


def account(conn: psycopg.Connection, email: str) -> tuple[int, int, list[tuple[str, int, str, Any]]]:
    """(balance, sum of the ledger, ledger rows) of the user with this email."""
    uid = conn.execute("select id from auth.users where email = lower(%s)", [email]).fetchone()
    assert uid is not None, f"{email} was created"
    row = conn.execute("select balance from public.credit_accounts where user_id = %s", [uid[0]]).fetchone()
    ledger = conn.execute("select kind, delta, reason, actor_id from public.credit_ledger where user_id = %s"
                          " order by id", [uid[0]]).fetchall()
    return int(row[0]) if row else -1, sum(int(r[1]) for r in ledger), [tuple(r) for r in ledger]


# -- the JSON API -------------------------------------------------------------------------------------------------

def test_defaults_and_a_change_is_audited_with_before_and_after(client: FlaskClient, admin: Any, restore: None,
                                                                admin_conn: psycopg.Connection) -> None:
    got = client.get("/api/admin/settings/credits", headers=admin.headers).get_json()["settings"]
    assert (got["signup_grant"], got["currency_code"], got["currency_symbol"], got["credit_value"],
            got["credit_value_label"], got["low_balance_threshold"]) == (
        "0.000000", "USD", "$", "1.000000", "1 credit = $1.00", "1.000000")
    resp = put(client, admin, {"signup_grant": "2.5", "currency_code": "eur", "currency_symbol": "€",
                               "credit_value": "0.92", "low_balance_threshold": 1})
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["changed"] == ["signup_grant", "currency_code", "currency_symbol", "credit_value"]
    s = body["settings"]
    assert (s["signup_grant_micro"], s["currency_code"], s["credit_value_label"], s["updated_by"]) == (
        2_500_000, "EUR", "1 credit = €0.92", admin.email)
    [row] = [r for r in audit_rows(admin_conn, "site settings") if r["actor_id"] == admin.id]
    assert row["action"] == "settings.credits"
    assert row["before"] == {"signup_grant": "0.000000 credits", "currency_code": "USD", "currency_symbol": "$",
                             "credit_value": "1 credit = $1.00"}
    assert row["after"] == {"signup_grant": "2.500000 credits", "currency_code": "EUR", "currency_symbol": "€",
                            "credit_value": "1 credit = €0.92"}
    again = put(client, admin, {"signup_grant": "2.500000"})
    assert again.get_json()["changed"] == [], "the same value again changes nothing and audits nothing"
    assert len([r for r in audit_rows(admin_conn, "site settings") if r["actor_id"] == admin.id]) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"signup_grant": "-1"}, "signup_grant"), ({"signup_grant": "NaN"}, "signup_grant"),
    ({"signup_grant": "Infinity"}, "signup_grant"), ({"signup_grant": "1e999999"}, "signup_grant"),
    ({"signup_grant": True}, "signup_grant"), ({"signup_grant": None}, "signup_grant"),
    ({"signup_grant": "0.0000001"}, "signup_grant"), ({"signup_grant": "1000000001"}, "signup_grant"),
    ({"signup_grant": [1]}, "signup_grant"), ({"signup_grant": "1\x00"}, "signup_grant"),
    ({"low_balance_threshold": "ten"}, "low_balance_threshold"),
    ({"credit_value": "-0.01"}, "credit_value"), ({"credit_value": "1000001"}, "credit_value"),
    ({"currency_code": "EURO"}, "currency_code"), ({"currency_code": "€€€"}, "currency_code"),
    ({"currency_code": 978}, "currency_code"), ({"currency_code": "US\x00"}, "currency_code"),
    ({"currency_symbol": "US $"}, "currency_symbol"), ({"currency_symbol": "toolong"}, "currency_symbol"),
    ({"currency_symbol": "\ud800"}, "body"), ({"currency_symbol": "\x00"}, "currency_symbol"),
    ({"surprise": 1}, "surprise"), ({}, "body"), ([1, 2], "body"), ("text", "body"),
])
def test_hostile_settings_are_422_with_the_field(client: FlaskClient, admin: Any, restore: None, body: Any,
                                                 field: str) -> None:
    resp = put(client, admin, body)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    error = resp.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]


def test_settings_are_for_admins_only(client: FlaskClient, make_user: Any, restore: None) -> None:
    member = make_user()
    assert client.get("/api/admin/settings/credits", headers=member.headers).status_code == 403
    assert put(client, member, {"signup_grant": "5"}).status_code == 403
    assert client.get("/api/admin/settings/credits").status_code == 401


# -- the panel ----------------------------------------------------------------------------------------------------

def test_panel_saves_and_shows_errors_beside_the_fields(client: FlaskClient, admin: Any, restore: None,
                                                        admin_conn: psycopg.Connection) -> None:
    token = web_sign_in(client, admin)
    page = client.get("/admin/settings").get_data(as_text=True)
    assert 'aria-current="page">Settings</a>' in page and 'id="set-signup_grant"' in page
    assert 'hx-disabled-elt="find button"' in page and 'hx-indicator="#site-settings-busy"' in page
    form = {"signup_grant": "abc", "currency_symbol": "$", "currency_code": "USDX", "credit_value": "1",
            "low_balance_threshold": "1"}
    bad = hx_post(client, "/admin/settings", token, form)
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and html.lstrip().startswith('<section class="card" id="site-settings"')
    assert re.search(r'id="set-signup_grant-error">Enter a number', html)
    assert 'id="set-currency_code-error"' in html and 'value="USDX"' in html, "the form keeps what was sent"
    good = hx_post(client, "/admin/settings", token, {**form, "signup_grant": "3", "currency_code": "USD"})
    html = good.get_data(as_text=True)
    assert good.status_code == 200 and 'value="3.000000"' in html and "Settings saved" in html
    row = admin_conn.execute("select signup_grant from public.site_settings").fetchone()
    assert row is not None and row[0] == 3_000_000
    same = hx_post(client, "/admin/settings", token, {**form, "signup_grant": "3", "currency_code": "USD"})
    assert "Nothing changed" in same.get_data(as_text=True)


def test_panel_refuses_members(client: FlaskClient, make_user: Any) -> None:
    member = make_user()
    web_sign_in(client, member)
    assert client.get("/admin/settings").status_code == 403


def test_audit_page_shows_the_change_as_a_readable_diff(client: FlaskClient, admin: Any, restore: None) -> None:
    put(client, admin, {"low_balance_threshold": "2.5"})
    web_sign_in(client, admin)
    html = client.get("/admin/audit?action=settings", headers=HX).get_data(as_text=True)
    assert 'class="diff"' in html
    assert re.search(r"low_balance_threshold</span>:\s*<del>1\.000000 credits</del>\s*→\s*<ins>2\.500000 credits</ins>",
                     html), html
    assert "{&#34;" not in html and '{"' not in html, "no raw JSON"


# -- the sign-up grant ----------------------------------------------------------------------------------------------

def test_local_web_sign_up_is_granted_through_the_ledger(client: FlaskClient, admin: Any, restore: None,
                                                         admin_conn: psycopg.Connection) -> None:
    assert put(client, admin, {"signup_grant": "7.000001"}).status_code == 200
    email = f"grant-{uuid.uuid4().hex[:8]}@example.test"
    resp = client.post("/auth/sign-up", data={"email": email, "password": "a long enough passphrase",
                                              "csrf_token": csrf_token(client, "/auth/sign-up")})
    assert resp.status_code == 200 and "sign in" in resp.get_data(as_text=True).lower()
    balance, total, ledger = account(admin_conn, email)
    assert balance == total == 7_000_001
    assert ledger == [("grant", 7_000_001, "sign-up grant", None)]
    signed = client.post("/auth/sign-in", data={"email": email, "password": "a long enough passphrase",
                                                "csrf_token": csrf_token(client)})
    assert signed.status_code == 302
    page = client.get("/settings").get_data(as_text=True)
    assert 'id="balance">7.000001</strong>' in page and 'id="zero-credits"' not in page
    assert "sign-up grant" in page, "the grant is in the user's ledger"


def test_auth_v1_sign_up_is_granted_and_a_change_applies_to_the_next_sign_up(
        app: Flask, client: FlaskClient, admin: Any, restore: None, admin_conn: psycopg.Connection) -> None:
    api = app.test_client()
    api.environ_base["REMOTE_ADDR"] = f"10.77.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"

    def signup() -> str:
        email = f"v1grant-{uuid.uuid4().hex[:8]}@example.test"
        resp = api.post("/auth/v1/signup", json={"email": email, "password": "a brand new passphrase"},
                        headers={"X-Supabase-Api-Version": "2024-01-01"})
        assert resp.status_code == 200, resp.get_json()
        return email

    put(client, admin, {"signup_grant": "1.5"})
    first = account(admin_conn, signup())
    assert first[0] == first[1] == 1_500_000 and first[2][0][2] == "sign-up grant"
    put(client, admin, {"signup_grant": "0"})
    second = account(admin_conn, signup())
    assert second == (0, 0, []), "with the grant at 0, no ledger row at all"


def test_cli_and_admin_made_users_follow_the_setting_too(make_user: Any, client: FlaskClient, admin: Any,
                                                         restore: None, admin_conn: psycopg.Connection) -> None:
    put(client, admin, {"signup_grant": "0.000001"})
    user = make_user()  # an auth.users insert as the CLI does it
    assert account(admin_conn, user.email)[:2] == (1, 1)


def test_supabase_gotrue_sign_up_is_granted(sb_client: FlaskClient, gotrue: FakeGoTrue,  # noqa: F811
                                            client: FlaskClient, admin: Any, restore: None,
                                            admin_conn: psycopg.Connection) -> None:
    put(client, admin, {"signup_grant": "4"})
    email = f"sbgrant-{uuid.uuid4().hex[:8]}@example.test"
    resp = sb_sign_up(sb_client, email, "correct horse battery")
    assert resp.status_code == 302
    balance, total, ledger = account(admin_conn, email)
    assert balance == total == 4_000_000 and ledger == [("grant", 4_000_000, "sign-up grant", None)]


def test_the_grant_is_part_of_the_user_insert_transaction(admin_conn: psycopg.Connection, client: FlaskClient,
                                                           admin: Any, restore: None) -> None:
    """Inside the inserting transaction the ledger row is already there; rolled back, neither user nor grant is."""
    put(client, admin, {"signup_grant": "9"})
    uid = str(uuid.uuid4())

    class Abort(Exception):
        pass

    with pytest.raises(Abort), admin_conn.transaction():
        admin_conn.execute("insert into auth.users (instance_id, id, aud, role, email) values"
                           " ('00000000-0000-0000-0000-000000000000', %s, 'authenticated', 'authenticated', %s)",
                           [uid, f"{uid}@example.test"])
        inside = admin_conn.execute("select c.balance, l.delta, l.reason from public.credit_accounts c"
                                    " join public.credit_ledger l using (user_id) where c.user_id = %s",
                                    [uid]).fetchall()
        assert inside == [(9_000_000, 9_000_000, "sign-up grant")]
        raise Abort
    assert admin_conn.execute("select count(*) from public.credit_ledger where user_id = %s",
                              [uid]).fetchone() == (0,)
