"""Users and credits: search by email (service role over auth.users joined with credit_accounts), balance and
ledger, grant or deduct with a reason through credits_adjust (a ledger row, never an in-place edit), with the
audit row in the same transaction. Panel fragments and the JSON API."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.admin import HX, audit_rows, hx_post, web_sign_in


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


def balance_and_ledger_sum(conn: psycopg.Connection, user_id: str) -> tuple[int, int]:
    row = conn.execute("select (select balance from public.credit_accounts where user_id = %(u)s),"
                       " (select coalesce(sum(delta), 0) from public.credit_ledger where user_id = %(u)s)",
                       {"u": user_id}).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


# -- search -------------------------------------------------------------------------------------------------------

def test_search_by_email_fragment_returns_matching_users_with_balances(client: FlaskClient, admin: Any,
                                                                       make_user: Any) -> None:
    member = make_user()
    web_sign_in(client, admin)
    fragment = member.email.split("@")[0][-6:]
    resp = client.get(f"/admin/users?q={fragment}", headers=HX)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith('<div id="user-results">')
    assert member.email in html and f"/admin/users/{member.id}" in html and admin.email not in html
    page = client.get(f"/admin/users?q={fragment}").get_data(as_text=True)
    assert "<html" in page and f'value="{fragment}"' in page, "a pushed search URL renders the whole page"


def test_search_treats_like_wildcards_literally(client: FlaskClient, admin: Any, make_user: Any) -> None:
    make_user()
    body = client.get("/api/admin/users?q=%25_%25", headers=admin.headers).get_json()
    assert body["users"] == []


def test_api_search_users(client: FlaskClient, admin: Any, make_user: Any) -> None:
    member = make_user()
    resp = client.get(f"/api/admin/users?q={member.email.upper()}", headers=admin.headers)
    assert resp.status_code == 200
    [found] = resp.get_json()["users"]
    assert (found["id"], found["email"], found["balance"], found["is_admin"]) == (member.id, member.email,
                                                                                  "0.000000", False)


# -- grant and deduct ---------------------------------------------------------------------------------------------

def test_grant_from_panel_writes_ledger_and_audit(client: FlaskClient, admin: Any, make_user: Any,
                                                  admin_conn: psycopg.Connection) -> None:
    member = make_user()
    token = web_sign_in(client, admin)
    page = client.get(f"/admin/users/{member.id}").get_data(as_text=True)
    assert 'id="credits"' in page and 'id="balance"' in page
    resp = hx_post(client, f"/admin/users/{member.id}/credits", token,
                   {"amount": "12.5", "reason": "welcome bonus", "direction": "grant"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith('<section class="card" id="credits">')
    assert '<strong id="balance">12.500000</strong>' in html and "welcome bonus" in html and admin.email in html
    assert balance_and_ledger_sum(admin_conn, member.id) == (12_500_000, 12_500_000)
    [entry] = audit_rows(admin_conn, f"user:{member.email}")
    assert (entry["action"], entry["actor_id"], entry["before"], entry["after"]) == (
        "credits.grant", admin.id, {"balance": "0.000000"},
        {"balance": "12.500000", "delta": "12.500000", "reason": "welcome bonus"})


def test_deduct_from_panel(client: FlaskClient, admin: Any, make_user: Any, admin_conn: psycopg.Connection) -> None:
    member = make_user()
    token = web_sign_in(client, admin)
    hx_post(client, f"/admin/users/{member.id}/credits", token, {"amount": "5", "reason": "r", "direction": "grant"})
    resp = hx_post(client, f"/admin/users/{member.id}/credits", token,
                   {"amount": "2", "reason": "refund to card", "direction": "deduct"})
    assert resp.status_code == 200 and '<strong id="balance">3.000000</strong>' in resp.get_data(as_text=True)
    ledger = admin_conn.execute("select kind, delta, reason, actor_id::text from public.credit_ledger"
                                " where user_id = %s order by id", [member.id]).fetchall()
    assert ledger == [("grant", 5_000_000, "r", admin.id), ("deduct", -2_000_000, "refund to card", admin.id)]


def test_deduct_below_zero_is_refused_beside_amount(client: FlaskClient, admin: Any, make_user: Any,
                                                    admin_conn: psycopg.Connection) -> None:
    member = make_user()
    token = web_sign_in(client, admin)
    resp = hx_post(client, f"/admin/users/{member.id}/credits", token,
                   {"amount": "1", "reason": "oops", "direction": "deduct"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="amount-error"' in html and "below zero" in html
    assert 'value="1"' in html and 'value="oops"' in html
    assert balance_and_ledger_sum(admin_conn, member.id) == (0, 0)
    assert audit_rows(admin_conn, f"user:{member.email}") == []


@pytest.mark.parametrize(("form", "errors"), [
    ({"amount": "0", "reason": "x", "direction": "grant"}, {"amount"}),
    ({"amount": "abc", "reason": "x", "direction": "grant"}, {"amount"}),
    ({"amount": "0.0000001", "reason": "x", "direction": "grant"}, {"amount"}),
    ({"amount": "-3", "reason": "x", "direction": "grant"}, {"amount"}),
    ({"amount": "3", "reason": "  ", "direction": "grant"}, {"reason"}),
    ({"amount": "3", "reason": "x", "direction": "steal"}, {"direction"}),
])
def test_adjust_form_validation(client: FlaskClient, admin: Any, make_user: Any, admin_conn: psycopg.Connection,
                                form: dict[str, str], errors: set[str]) -> None:
    member = make_user()
    token = web_sign_in(client, admin)
    resp = hx_post(client, f"/admin/users/{member.id}/credits", token, form)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    for field in errors:
        assert (f'id="{field}-error"' if field != "direction" else "Grant or deduct.") in html
    assert balance_and_ledger_sum(admin_conn, member.id) == (0, 0)


def test_api_adjust_credits_signed_amount(client: FlaskClient, admin: Any, make_user: Any,
                                          admin_conn: psycopg.Connection) -> None:
    member = make_user()
    path = f"/api/admin/users/{member.id}/credits"
    up = client.post(path, json={"amount": 7, "reason": "api grant"}, headers=admin.headers)
    assert up.status_code == 200 and up.get_json()["user"]["balance"] == "7.000000"
    down = client.post(path, json={"amount": "-0.5", "reason": "api deduct"}, headers=admin.headers)
    body = down.get_json()
    assert down.status_code == 200 and body["user"]["balance"] == "6.500000"
    assert [(e["kind"], e["delta"], e["actor"]) for e in body["ledger"]] == [
        ("deduct", "-0.500000", admin.email), ("grant", "7.000000", admin.email)]
    assert balance_and_ledger_sum(admin_conn, member.id) == (6_500_000, 6_500_000)
    detail = client.get(f"/api/admin/users/{member.id}", headers=admin.headers).get_json()
    assert detail["user"]["balance"] == "6.500000" and len(detail["ledger"]) == 2


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"amount", "reason"}),
    ({"amount": True, "reason": "x"}, {"amount"}),
    ({"amount": 1e10, "reason": "x"}, {"amount"}),
    ({"amount": 1, "reason": "x" * 501}, {"reason"}),
])
def test_api_adjust_credits_validation(client: FlaskClient, admin: Any, make_user: Any, body: dict[str, Any],
                                       fields: set[str]) -> None:
    resp = client.post(f"/api/admin/users/{make_user().id}/credits", json=body, headers=admin.headers)
    assert resp.status_code == 422 and set(resp.get_json()["error"]["fields"]) == fields


def test_api_adjust_credits_unknown_user_is_404(client: FlaskClient, admin: Any) -> None:
    resp = client.post(f"/api/admin/users/{uuid.uuid4()}/credits", json={"amount": 1, "reason": "x"},
                       headers=admin.headers)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "user_not_found"


def test_api_deduct_below_zero_is_422(client: FlaskClient, admin: Any, make_user: Any) -> None:
    resp = client.post(f"/api/admin/users/{make_user().id}/credits", json={"amount": -1, "reason": "x"},
                       headers=admin.headers)
    assert resp.status_code == 422 and "below zero" in resp.get_json()["error"]["fields"]["amount"]
