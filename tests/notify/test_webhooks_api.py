"""Webhook endpoints through the JSON API on a real Postgres: the secret shown once and stored encrypted; hostile or
wrong inputs are 422 with the field named, never a 500; limits; who may manage the user's, a team's and the site's
endpoints; an API key cannot; and the address rules of BYOK base URLs (no private, loopback, link-local or
metadata address, a name resolving to one included; https only in production)."""

from __future__ import annotations

import base64
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.unit.test_config import good_env
from webapp.config import ConfigError, Settings, load_settings
from webapp.crypto import KeyRing
from webapp.notify import webhooks as notify
from webapp.providers import transport
from webapp.services import webhooks

GOOD = {"url": "https://93.184.216.34/hooks", "event_types": ["api_key.created", "credits.granted"]}


def _create(client: FlaskClient, user: Any, base: str = "/api/user/webhooks", **body: Any) -> Any:
    return client.post(base, json={**GOOD, **body}, headers=user.headers)


def test_create_shows_the_secret_once_and_stores_it_encrypted(client: FlaskClient, make_user: Any,
                                                              settings: Settings,
                                                              admin_conn: psycopg.Connection) -> None:
    user = make_user()
    r = _create(client, user, description="billing alerts")
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    body = r.get_json()
    secret, hook = body["secret"], body["webhook"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) >= 24
    assert hook["url"] == GOOD["url"] and hook["event_types"] == GOOD["event_types"] and hook["status"] == "active"
    assert hook["description"] == "billing alerts" and "secret" not in hook
    (stored,) = admin_conn.execute("select secret_ciphertext from public.webhook_endpoints where id = %s",
                                   [hook["id"]]).fetchone() or ()
    assert secret not in stored and secret[6:] not in stored
    assert KeyRing(settings.encryption_keys).decrypt(stored, notify.secret_aad(hook["id"])) == secret
    for path in ("/api/user/webhooks", f"/api/user/webhooks/{hook['id']}",
                 f"/api/user/webhooks/{hook['id']}/deliveries"):
        shown = client.get(path, headers=user.headers)
        assert shown.status_code == 200 and secret[6:] not in shown.get_data(as_text=True)
    listed = client.get("/api/user/webhooks", headers=user.headers).get_json()
    assert [w["id"] for w in listed["webhooks"]] == [hook["id"]] and "api_key.created" in listed["event_types"]


def test_rotate_makes_a_new_secret_shown_once(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    first = _create(client, user).get_json()
    r = client.post(f"/api/user/webhooks/{first['webhook']['id']}/rotate-secret", headers=user.headers)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    assert r.get_json()["secret"].startswith("whsec_") and r.get_json()["secret"] != first["secret"]


@pytest.mark.parametrize(("body", "field"), [
    ({"url": None}, "url"),
    ({"url": 12}, "url"),
    ({"url": "ftp://93.184.216.34/x"}, "url"),
    ({"url": "https://93.184.216.34/" + "a" * 2000}, "url"),
    ({"url": "https://user:pw@93.184.216.34/x"}, "url"),
    ({"url": "https://93.184.216.34/a b"}, "url"),
    ({"url": "https:///nohost"}, "url"),
    ({"event_types": []}, "event_types"),
    ({"event_types": "nope"}, "event_types"),
    ({"event_types": [1, 2]}, "event_types"),
    ({"event_types": {"a": 1}}, "event_types"),
    ({"event_types": ["api_key.created"] * 50}, "event_types"),
    ({"description": "x" * 201}, "description"),
    ({"description": "\x1f" + "x" * 200}, "description"),  # maxLength counts what is sent, as the document says
    ({"url": " https://93.184.216.34/" + "a" * 1978}, "url"),
    ({"description": ["x"]}, "description"),
    ({"secret": "whsec_mine"}, "body"),
])
def test_invalid_bodies_are_422_beside_the_field(client: FlaskClient, make_user: Any, body: dict[str, Any],
                                                 field: str) -> None:
    user = make_user()
    r = _create(client, user, **body)
    assert r.status_code == 422, r.get_json()
    assert field in r.get_json()["error"]["fields"]


@pytest.mark.parametrize("body", [None, [], "x", 3])
def test_a_body_that_is_not_an_object_is_422(client: FlaskClient, make_user: Any, body: Any) -> None:
    user = make_user()
    r = client.post("/api/user/webhooks", json=body, headers=user.headers)
    assert r.status_code == 422


def test_update_and_delete(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    hook = _create(client, user).get_json()["webhook"]
    path = f"/api/user/webhooks/{hook['id']}"
    r = client.patch(path, json={"event_types": ["password.changed"], "enabled": False}, headers=user.headers)
    assert r.status_code == 200
    assert r.get_json()["webhook"]["event_types"] == ["password.changed"]
    assert r.get_json()["webhook"]["status"] == "disabled"
    assert client.patch(path, json={"enabled": "yes"}, headers=user.headers).status_code == 422
    assert client.patch(path, json={"colour": 1}, headers=user.headers).status_code == 422
    assert client.delete(path, headers=user.headers).status_code == 204
    assert client.get(path, headers=user.headers).status_code == 404
    assert client.delete(path, headers=user.headers).status_code == 404


def test_test_events_cannot_flood_an_endpoint(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    hook = _create(client, user).get_json()["webhook"]
    for _ in range(webhooks.MAX_PENDING_TESTS):
        assert client.post(f"/api/user/webhooks/{hook['id']}/test", headers=user.headers).status_code == 202
    r = client.post(f"/api/user/webhooks/{hook['id']}/test", headers=user.headers)
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "webhook_tests_pending"


def test_at_most_ten_endpoints_per_owner(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    for _ in range(webhooks.MAX_ENDPOINTS):
        assert _create(client, user).status_code == 201
    r = _create(client, user)
    assert r.status_code == 422 and "url" in r.get_json()["error"]["fields"]


def test_limit_of_the_delivery_log_is_checked(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    hook = _create(client, user).get_json()["webhook"]
    for bad in ("0", "101", "x", "-1"):
        r = client.get(f"/api/user/webhooks/{hook['id']}/deliveries?limit={bad}", headers=user.headers)
        assert r.status_code == 422


def test_another_user_cannot_see_change_or_use_an_endpoint(client: FlaskClient, make_user: Any) -> None:
    owner, other = make_user(), make_user()
    hook = _create(client, owner).get_json()["webhook"]
    base = f"/api/user/webhooks/{hook['id']}"
    assert client.get("/api/user/webhooks", headers=other.headers).get_json()["webhooks"] == []
    assert client.get(base, headers=other.headers).status_code == 404
    assert client.patch(base, json={"enabled": False}, headers=other.headers).status_code == 404
    assert client.post(f"{base}/test", headers=other.headers).status_code == 404
    assert client.post(f"{base}/rotate-secret", headers=other.headers).status_code == 404
    assert client.get(f"{base}/deliveries", headers=other.headers).status_code == 404
    assert client.delete(base, headers=other.headers).status_code == 404
    assert client.get(base, headers=owner.headers).get_json()["webhook"]["enabled"] is True


def test_an_api_key_cannot_manage_webhooks(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    key = client.post("/api/user/api-keys", json={"name": "k"}, headers=user.headers).get_json()["secret"]
    r = client.post("/api/user/webhooks", json=GOOD, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "api_key_forbidden"
    r = client.get("/api/user/webhooks", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 403


def test_team_endpoints_are_for_owners_and_admins(client: FlaskClient, make_user: Any) -> None:
    owner, admin, member, outsider = make_user(), make_user(), make_user(), make_user()
    slug = f"hooks-{owner.id[:8]}"
    assert client.post("/api/teams", json={"name": "Hooks", "slug": slug}, headers=owner.headers).status_code == 201
    for person, role in ((admin, "admin"), (member, "member")):
        link = client.post(f"/api/teams/{slug}/invitations", json={"role": role}, headers=owner.headers).get_json()
        r = client.post("/api/teams/join", json={"token": link["token"]}, headers=person.headers)
        assert r.status_code == 200, r.get_json()
    base = f"/api/teams/{slug}/webhooks"
    r = _create(client, admin, base)
    assert r.status_code == 201 and r.get_json()["webhook"]["scope"] == "team"
    hook_id = r.get_json()["webhook"]["id"]
    assert [w["id"] for w in client.get(base, headers=owner.headers).get_json()["webhooks"]] == [hook_id]
    assert client.get(base, headers=member.headers).status_code == 403
    assert _create(client, member, base).status_code == 403
    assert client.get(base, headers=outsider.headers).status_code == 404
    assert client.get(f"{base}/{hook_id}", headers=outsider.headers).status_code == 404
    # The team's endpoint is not one of the admin's own.
    assert client.get(f"/api/user/webhooks/{hook_id}", headers=admin.headers).status_code == 404


@pytest.mark.parametrize("slug", ["%00", "a%00b", "UPPER", "x" * 41, "-a", "%ED%A0%80"])
def test_a_team_slug_that_cannot_be_a_team_is_404_not_a_500(client: FlaskClient, make_user: Any, slug: str) -> None:
    # A NUL in the slug once reached Postgres (DataError, a 500) on every team webhook route.
    user, hook = make_user(), "00000000-0000-4000-8000-000000000000"
    base = f"/api/teams/{slug}/webhooks"
    for method, path in [("GET", ""), ("POST", ""), ("GET", f"/{hook}"), ("PATCH", f"/{hook}"),
                         ("DELETE", f"/{hook}"), ("POST", f"/{hook}/rotate-secret"), ("POST", f"/{hook}/test"),
                         ("GET", f"/{hook}/deliveries")]:
        resp = client.open(base + path, method=method, json=GOOD if method != "GET" else None,
                           headers=user.headers)
        assert resp.status_code == 404, (method, path, resp.get_data(as_text=True))
        assert resp.get_json()["error"]["code"] == "team_not_found"


def test_site_endpoints_are_for_site_admins(client: FlaskClient, make_user: Any) -> None:
    admin, user = make_user(admin=True), make_user()
    assert _create(client, user, "/api/admin/webhooks").status_code == 403
    r = _create(client, admin, "/api/admin/webhooks")
    assert r.status_code == 201 and r.get_json()["webhook"]["scope"] == "site"
    own = _create(client, user).get_json()["webhook"]
    listed = client.get("/api/admin/webhooks", headers=admin.headers).get_json()["webhooks"]
    assert own["id"] not in [w["id"] for w in listed]  # a user's endpoints are theirs alone
    assert client.get(f"/api/admin/webhooks/{own['id']}", headers=admin.headers).status_code == 404


# -- address rules (the same as BYOK base URLs) -------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "https://127.0.0.1/h", "http://127.0.0.1:8080/h", "https://10.0.0.5/h", "https://192.168.1.20/h",
    "https://172.16.0.1/h", "https://169.254.169.254/latest/meta-data/", "https://[::1]/h", "https://[fe80::1]/h",
    "https://[::ffff:127.0.0.1]/h", "https://0.0.0.0/h", "https://localhost/h", "https://100.64.0.1/h",
])
def test_private_loopback_link_local_and_metadata_addresses_are_refused(client: FlaskClient, make_user: Any,
                                                                        url: str) -> None:
    user = make_user()
    r = _create(client, user, url=url)
    assert r.status_code == 422, r.get_json()
    message = r.get_json()["error"]["fields"]["url"]
    assert "public" in message or "resolved" in message


def test_a_name_that_resolves_to_loopback_is_refused(client: FlaskClient, make_user: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_resolve", lambda host, port: ["127.0.0.1"] if host == "rebind.example.test"
                        else ["93.184.216.34"])
    user = make_user()
    r = _create(client, user, url="https://rebind.example.test/h")
    assert r.status_code == 422 and "non-public" in r.get_json()["error"]["fields"]["url"]
    assert _create(client, user, url="https://public.example.test/h").status_code == 201


def test_https_only_in_production(settings: Settings) -> None:
    prod = settings.with_overrides(env="production")
    with pytest.raises(ValueError, match="https"):
        webhooks.check_url("http://93.184.216.34/h", prod)
    webhooks.check_url("https://93.184.216.34/h", prod)
    webhooks.check_url("http://93.184.216.34/h", settings)  # plain http outside production
    with pytest.raises(ValueError, match="public"):
        webhooks.check_url("https://127.0.0.1/h", prod.with_overrides(webhook_allow_private_urls=False))
    # The setting for tests and local development lifts the address rule, not the https rule.
    webhooks.check_url("http://127.0.0.1:9/h", settings.with_overrides(webhook_allow_private_urls=True))
    with pytest.raises(ValueError, match="https"):
        webhooks.check_url("http://127.0.0.1:9/h", prod.with_overrides(webhook_allow_private_urls=True))


def test_webhook_settings_from_the_environment() -> None:
    s = load_settings(good_env())
    assert (s.webhook_allow_private_urls, s.webhook_timeout, s.webhook_retry_scale,
            s.webhook_disable_after_seconds) == (False, 10.0, 1.0, 86400)
    s = load_settings(good_env(WEBHOOK_ALLOW_PRIVATE_URLS="yes", WEBHOOK_TIMEOUT_SECONDS="2.5",
                               WEBHOOK_RETRY_SCALE="0.01", WEBHOOK_DISABLE_AFTER_SECONDS="3600"))
    assert (s.webhook_allow_private_urls, s.webhook_timeout, s.webhook_retry_scale,
            s.webhook_disable_after_seconds) == (True, 2.5, 0.01, 3600)
    for name, value in (("WEBHOOK_ALLOW_PRIVATE_URLS", "maybe"), ("WEBHOOK_TIMEOUT_SECONDS", "0"),
                        ("WEBHOOK_RETRY_SCALE", "-1"), ("WEBHOOK_DISABLE_AFTER_SECONDS", "0"),
                        ("WEBHOOK_TIMEOUT_SECONDS", "soon")):
        with pytest.raises(ConfigError, match=name):
            load_settings(good_env(**{name: value}))
