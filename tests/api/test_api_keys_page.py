"""The settings page's "API keys" section (session cookie + CSRF): create shows the secret once, errors beside the
fields (422), revoke, the usage filter by key; the hash never on a page; the admin user panel lists and revokes."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from flask import Flask

from tests.api.test_settings_page import sign_in

SECRET_RE = re.compile(r"sb_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}")


def _create(s: Any, **form: str) -> Any:
    form.setdefault("name", "page key")
    return s.post("/settings/api-keys", form)


def test_create_shows_the_secret_once_then_only_the_prefix(app: Flask, make_user: Any,
                                                           admin_conn: psycopg.Connection) -> None:
    s = sign_in(app, make_user())
    resp = _create(s, name="laptop", monthly_credit_cap="1.5")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert html.lstrip().startswith('<section class="card" id="api-keys"')
    (secret,) = SECRET_RE.findall(html)
    assert 'id="api-key-copy"' in html and "cannot show it again" in html
    assert resp.headers["Cache-Control"] == "no-store"
    (stored,) = admin_conn.execute("select hash from public.api_keys where user_id = %s", [s.user.id]).fetchone()
    page = s.get("/settings").get_data(as_text=True)
    assert 'id="api-keys"' in page and "laptop" in page and secret[:16] in page
    assert secret not in page and stored not in page and SECRET_RE.search(page) is None
    fragment = s.get("/settings/usage", hx=True).get_data(as_text=True)
    assert 'id="usage-api-key"' in fragment and "laptop" in fragment


def test_errors_are_beside_the_fields(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user())
    resp = _create(s, name="", expires_at="2001-01-01", monthly_credit_cap="-3", allow="nosuchprovider", mode="root")
    assert resp.status_code == 422
    html = resp.get_data(as_text=True)
    for field in ("api-keys-name", "api-keys-expires_at", "api-keys-cap", "api-keys-allow", "api-keys-mode"):
        assert f'id="{field}-error"' in html, field
    assert SECRET_RE.search(html) is None
    # Without htmx, the whole page comes back with the same errors.
    full = s.post("/settings/api-keys", {"name": "x" * 500}, hx=False)
    assert full.status_code == 422 and 'id="api-keys-name-error"' in full.get_data(as_text=True)


def test_revoke_from_the_page_refuses_the_key(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user())
    secret = SECRET_RE.findall(_create(s).get_data(as_text=True))[0]
    client = app.test_client()
    assert client.get("/api/user/settings", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    key_id = client.get("/api/user/api-keys", headers=s.user.headers).get_json()["api_keys"][0]["id"]
    resp = s.post(f"/settings/api-keys/{key_id}/revoke")
    assert resp.status_code == 200 and "revoked" in resp.get_data(as_text=True)
    assert 'id="api-keys-none"' in resp.get_data(as_text=True)
    assert client.get("/api/user/settings", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    # Another user's key, a bad id, no CSRF: never a 500.
    other = sign_in(app, make_user())
    assert other.post(f"/settings/api-keys/{key_id}/revoke").status_code == 404
    assert s.post("/settings/api-keys/not-a-uuid/revoke").status_code == 404
    assert s.post("/settings/api-keys", {"name": "x"}, csrf=False).status_code in (400, 403)


def test_usage_filter_ignores_ids_that_are_not_keys(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user())
    _create(s)
    for value in ("not-a-uuid", "x" * 5000, "00000000-0000-0000-0000-000000000000"):
        assert s.get(f"/settings/usage?api_key={value}", hx=True).status_code == 200
        assert s.get(f"/settings?api_key={value}").status_code == 200


def test_admin_user_panel_lists_and_revokes_keys(app: Flask, make_user: Any,
                                                 admin_conn: psycopg.Connection) -> None:
    member = sign_in(app, make_user())
    secret = SECRET_RE.findall(_create(member, name="member laptop").get_data(as_text=True))[0]
    admin = sign_in(app, make_user(admin=True))
    page = admin.get(f"/admin/users/{member.user.id}").get_data(as_text=True)
    assert 'id="user-api-keys"' in page and "member laptop" in page and secret not in page
    key_id = app.test_client().get("/api/user/api-keys", headers=member.user.headers).get_json()["api_keys"][0]["id"]
    resp = admin.post(f"/admin/users/{member.user.id}/api-keys/{key_id}/revoke")
    assert resp.status_code == 200 and "revoked" in resp.get_data(as_text=True)
    assert app.test_client().get("/api/user/settings",
                                 headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert admin_conn.execute("select count(*) from public.admin_audit_log where action = 'api_key.revoke'"
                              " and target = %s", [f"api_key:{key_id}"]).fetchone() == (1,)
    # The admin logs filter by key.
    logs = admin.get(f"/admin/logs?api_key={key_id}")
    assert logs.status_code == 200 and 'id="f-api_key"' in logs.get_data(as_text=True)
    assert admin.get("/admin/logs?api_key=nope").status_code == 422
    # A member cannot reach the admin revoke.
    assert member.post(f"/admin/users/{member.user.id}/api-keys/{key_id}/revoke").status_code == 403
