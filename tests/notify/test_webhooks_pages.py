"""Webhook endpoints on the pages (session cookie + CSRF): the settings page loads the section; adding an endpoint
shows the secret once (never cached, never again); errors beside the fields (422); send a test event, rotate,
disable/enable, delete; a disabled endpoint says why; a team's page for its owners and admins only; the admin panel's
site endpoints."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from flask import Flask

from tests.api.test_settings_page import assert_fragment, field_error, html, sign_in

SECRET_RE = re.compile(r"whsec_[A-Za-z0-9+/]{40,}={0,2}")
EVENTS = ["api_key.created", "password.changed"]


def _add(s: Any, base: str = "/settings/webhooks", **form: Any) -> Any:
    data = {"url": "https://93.184.216.34/hooks", "event_types": EVENTS, **form}
    return s.post(f"{base}/endpoints", data)


def _endpoint_id(text: str) -> str:
    match = re.search(r'id="webhook-([0-9a-f-]{36})"', text)
    assert match, text[:500]
    return match.group(1)


def test_the_settings_page_loads_the_webhooks_section(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user())
    page = html(s.get("/settings"))
    assert 'id="settings-webhooks"' in page and 'hx-get="/settings/webhooks/section"' in page
    section = assert_fragment(s.get("/settings/webhooks/section", hx=True), "webhooks")
    assert 'id="webhooks-none"' in section and "api_key.created" in section
    full = html(s.get("/settings/webhooks"))
    assert "<html" in full and 'id="webhooks"' in full


def test_anonymous_is_sent_to_sign_in(app: Flask) -> None:
    client = app.test_client()
    resp = client.get("/settings/webhooks")
    assert resp.status_code == 302 and "/auth/sign-in" in resp.headers["Location"]
    resp = client.get("/settings/webhooks/section", headers={"HX-Request": "true"})
    assert resp.status_code == 401 and "HX-Redirect" in resp.headers


def test_add_shows_the_secret_once(app: Flask, make_user: Any, admin_conn: psycopg.Connection) -> None:
    s = sign_in(app, make_user())
    resp = _add(s, description="alerts")
    text = assert_fragment(resp, "webhooks")
    (secret,) = SECRET_RE.findall(text)
    assert resp.headers["Cache-Control"] == "no-store" and 'id="webhook-secret-copy"' in text
    assert "https://93.184.216.34/hooks" in text and "alerts" in text
    again = html(s.get("/settings/webhooks"))
    assert secret not in again and SECRET_RE.search(again) is None and "https://93.184.216.34/hooks" in again
    rows = admin_conn.execute("select event_types from public.webhook_endpoints where user_id = %s",
                              [s.user.id]).fetchall()
    assert rows == [(EVENTS,)]


def test_errors_are_beside_the_fields(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user())
    resp = _add(s, url="https://169.254.169.254/latest/meta-data/", event_types=[])
    text = assert_fragment(resp, "webhooks", 422)
    assert "public" in field_error(text, "webhooks-url")
    assert 'id="webhooks-events-error"' in text and "https://169.254.169.254/latest/meta-data/" in text
    assert SECRET_RE.search(text) is None
    text = assert_fragment(_add(s, url="not a url"), "webhooks", 422)
    assert field_error(text, "webhooks-url")


def test_test_event_rotate_disable_enable_delete(app: Flask, make_user: Any, admin_conn: psycopg.Connection) -> None:
    s = sign_in(app, make_user())
    endpoint_id = _endpoint_id(html(_add(s)))
    text = assert_fragment(s.post(f"/settings/webhooks/{endpoint_id}/test"), "webhooks")
    assert "Test event queued" in text and 'hx-trigger="every 2s"' in text  # the list polls while it is pending
    (event_type, status), = admin_conn.execute("select event_type, status from public.webhook_deliveries"
                                               " where endpoint_id = %s", [endpoint_id]).fetchall()
    assert (event_type, status) == ("webhook.test", "pending")
    rotated = s.post(f"/settings/webhooks/{endpoint_id}/rotate")
    assert len(SECRET_RE.findall(html(rotated))) == 1 and rotated.headers["Cache-Control"] == "no-store"
    text = html(s.post(f"/settings/webhooks/{endpoint_id}/disable"))
    assert f'id="webhook-{endpoint_id}-status">disabled' in text and f"webhook-{endpoint_id}-test" not in text
    text = html(s.post(f"/settings/webhooks/{endpoint_id}/enable"))
    assert f'id="webhook-{endpoint_id}-status">active' in text
    text = html(s.post(f"/settings/webhooks/{endpoint_id}/delete"))
    assert "Endpoint deleted." in text and 'id="webhooks-none"' in text


def test_change_an_endpoint_with_errors_beside_its_own_fields(app: Flask, make_user: Any,
                                                                admin_conn: psycopg.Connection) -> None:
    s = sign_in(app, make_user())
    endpoint_id = _endpoint_id(html(_add(s)))
    bad = s.post(f"/settings/webhooks/{endpoint_id}", {"url": "https://10.1.2.3/x", "description": "",
                                                       "event_types": ["credits.granted"]})
    text = assert_fragment(bad, "webhooks", 422)
    assert "public" in field_error(text, f"webhook-{endpoint_id}-url")
    assert 'id="webhooks-url-error"' not in text  # the add form is not blamed
    assert re.search(rf'<details class="webhook-edit" id="webhook-{endpoint_id}-edit" open>', text)
    good = s.post(f"/settings/webhooks/{endpoint_id}", {"url": "https://93.184.216.35/new", "description": "new",
                                                        "event_types": ["credits.granted", "balance.low"]})
    text = assert_fragment(good, "webhooks")
    assert "saved" in text and "https://93.184.216.35/new" in text
    row = admin_conn.execute("select url, description, event_types from public.webhook_endpoints where id = %s",
                             [endpoint_id]).fetchone()
    assert row == ("https://93.184.216.35/new", "new", ["credits.granted", "balance.low"])


def test_a_disabled_endpoint_says_why(app: Flask, make_user: Any, admin_conn: psycopg.Connection) -> None:
    s = sign_in(app, make_user())
    endpoint_id = _endpoint_id(html(_add(s)))
    admin_conn.execute("update public.webhook_endpoints set enabled = false, disabled_at = now(),"
                       " disabled_reason = 'Disabled after failing for a day: no delivery succeeded.'"
                       " where id = %s", [endpoint_id])
    text = html(s.get("/settings/webhooks"))
    assert f'id="webhook-{endpoint_id}-disabled"' in text and "failing for a day" in text


def test_another_users_endpoint_is_not_found(app: Flask, make_user: Any) -> None:
    owner, other = sign_in(app, make_user()), sign_in(app, make_user())
    endpoint_id = _endpoint_id(html(_add(owner)))
    for action in ("test", "rotate", "disable", "delete"):
        assert other.post(f"/settings/webhooks/{endpoint_id}/{action}").status_code == 404
    assert endpoint_id not in html(other.get("/settings/webhooks"))
    assert f'id="webhook-{endpoint_id}-status">active' in html(owner.get("/settings/webhooks"))


def test_team_page_for_owners_and_admins(app: Flask, make_user: Any) -> None:
    owner, member = make_user(), make_user()
    slug = f"pg-{owner.id[:8]}"
    client = app.test_client()
    assert client.post("/api/teams", json={"name": "Pg", "slug": slug}, headers=owner.headers).status_code == 201
    token = client.post(f"/api/teams/{slug}/invitations", json={"role": "member"},
                        headers=owner.headers).get_json()["token"]
    assert client.post("/api/teams/join", json={"token": token}, headers=member.headers).status_code == 200
    s = sign_in(app, owner)
    assert 'id="team-webhooks-link"' in html(s.get(f"/teams/{slug}"))
    endpoint_id = _endpoint_id(html(_add(s, f"/teams/{slug}/webhooks")))
    assert endpoint_id in html(s.get(f"/teams/{slug}/webhooks"))
    assert endpoint_id not in html(s.get("/settings/webhooks"))
    m = sign_in(app, member)
    assert 'id="team-webhooks-link"' not in html(m.get(f"/teams/{slug}"))
    assert m.get(f"/teams/{slug}/webhooks").status_code == 403
    assert m.post(f"/teams/{slug}/webhooks/{endpoint_id}/delete").status_code == 403
    assert sign_in(app, make_user()).get(f"/teams/{slug}/webhooks").status_code == 404


def test_admin_panel_site_endpoints(app: Flask, make_user: Any) -> None:
    s = sign_in(app, make_user(admin=True))
    page = html(s.get("/admin/webhooks"))
    assert 'aria-current="page">Webhooks' in page and "every user and team" in page
    endpoint_id = _endpoint_id(html(_add(s, "/admin/webhooks")))
    assert endpoint_id in html(s.get("/admin/webhooks"))
    assert sign_in(app, make_user()).get("/admin/webhooks").status_code == 403
