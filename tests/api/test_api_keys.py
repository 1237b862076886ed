"""Personal API keys through the JSON API on a real Postgres: create (the secret shown once), list, change, revoke;
a key authenticates /api/user/* as its owner and is refused on key management and admin routes; another user
cannot see, change, revoke or use them; hostile inputs are 422/404, never 500; the hash never leaves the database."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from webapp.db import Database
from webapp.repos import preferences as prefs_repo

KEY_RE = re.compile(r"^sb_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$")


@pytest.fixture()
def user(make_user: Any) -> Any:
    return make_user()


def _create(client: FlaskClient, user: Any, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "script")
    r = client.post("/api/user/api-keys", json=body, headers=user.headers)
    assert r.status_code == 201, r.get_json()
    return r.get_json()


def _key_headers(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _hashes(admin_conn: psycopg.Connection, user_id: str) -> list[str]:
    return [r[0] for r in admin_conn.execute("select hash from public.api_keys where user_id = %s",
                                              [user_id]).fetchall()]


def test_create_shows_the_secret_once_and_stores_only_a_keyed_hash(client: FlaskClient, user: Any,
                                                                    admin_conn: psycopg.Connection) -> None:
    created = _create(client, user, name="ci runner")
    secret = created["secret"]
    assert KEY_RE.fullmatch(secret)
    key = created["api_key"]
    assert key["name"] == "ci runner" and key["status"] == "active" and key["mode"] == "user"
    assert secret.startswith(f"sb_{key['prefix']}_")
    (stored,) = _hashes(admin_conn, user.id)
    assert secret not in stored and stored not in str(created)
    listed = client.get("/api/user/api-keys", headers=user.headers)
    assert listed.status_code == 200
    body = listed.get_data(as_text=True)
    assert secret not in body and stored not in body and secret[-43:] not in body
    (item,) = listed.get_json()["api_keys"]
    assert item["id"] == key["id"] and item["month"] == {"requests": 0, "credits": "0.000000", "credits_micro": 0}
    assert "secret" not in item and "hash" not in item


def test_key_authenticates_user_routes_as_its_owner_bearer_or_x_api_key(client: FlaskClient, user: Any,
                                                                          db: Database) -> None:
    secret = _create(client, user)["secret"]
    for headers in (_key_headers(secret), {"X-Api-Key": secret}):
        r = client.get("/api/user/settings", headers=headers)
        assert r.status_code == 200, r.get_json()
        assert r.get_json()["settings"]["llm_mode"] == "member"
        assert client.get("/api/user/credits", headers=headers).status_code == 200
        assert client.get("/api/user/llm/usage", headers=headers).status_code == 200
    r = client.put("/api/user/settings", json={"first_name": "Keyed"}, headers=_key_headers(secret))
    assert r.status_code == 200
    with db.as_service() as conn:
        assert prefs_repo.get(conn, user.id).first_name == "Keyed"


def test_key_cannot_manage_keys_nor_reach_admin_routes(client: FlaskClient, make_user: Any) -> None:
    admin = make_user(admin=True)
    secret = _create(client, admin)["secret"]
    h = _key_headers(secret)
    for method, path in (("get", "/api/user/api-keys"), ("post", "/api/user/api-keys")):
        r = getattr(client, method)(path, json={"name": "minted"}, headers=h)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "api_key_forbidden"
    key_id = client.get("/api/user/api-keys", headers=admin.headers).get_json()["api_keys"][0]["id"]
    for method in ("patch", "delete"):
        r = getattr(client, method)(f"/api/user/api-keys/{key_id}", json={"name": "x"}, headers=h)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "api_key_forbidden"
    for path in ("/api/admin/llm/providers", "/api/admin/users", f"/api/admin/users/{admin.id}/api-keys"):
        r = client.get(path, headers=h)
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "api_key_forbidden", path
        assert client.get(path, headers={"X-Api-Key": secret}).status_code == 403
    # The admin's own token still works, and the key is still live.
    assert client.get("/api/admin/users", headers=admin.headers).status_code == 200
    assert client.get("/api/user/settings", headers=h).status_code == 200


def test_key_claims_are_never_admin_in_sql(db: Database, make_user: Any, client: FlaskClient) -> None:
    from webapp.services import api_keys

    admin = make_user(admin=True)
    secret = _create(client, admin)["secret"]
    app_settings = client.application.extensions["switchboard"].settings
    claims = api_keys.claims_for(app_settings, db, secret)
    with db.as_user(claims) as conn:
        row = conn.execute("select public.is_admin(), auth.uid()::text, auth.jwt() ->> 'api_key_id'").fetchone()
    assert row is not None and row[0] is False and row[1] == admin.id and row[2]
    with db.as_user(admin.claims) as conn:
        assert conn.execute("select public.is_admin()").fetchone() == (True,)


def test_revoke_refuses_the_very_next_request(client: FlaskClient, user: Any) -> None:
    created = _create(client, user)
    h = _key_headers(created["secret"])
    assert client.get("/api/user/settings", headers=h).status_code == 200
    r = client.delete(f"/api/user/api-keys/{created['api_key']['id']}", headers=user.headers)
    assert r.status_code == 200 and r.get_json()["api_key"]["status"] == "revoked"
    r = client.get("/api/user/settings", headers=h)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "api_key_revoked"
    # A revoked key is kept (its requests keep its name) but not listed, and cannot be changed.
    assert client.get("/api/user/api-keys", headers=user.headers).get_json()["api_keys"] == []
    r = client.patch(f"/api/user/api-keys/{created['api_key']['id']}", json={"name": "back"}, headers=user.headers)
    assert r.status_code == 404
    # Not even with nothing to change (schemathesis' stateful run found this answered 200).
    r = client.patch(f"/api/user/api-keys/{created['api_key']['id']}", json={}, headers=user.headers)
    assert r.status_code == 404


def test_expired_and_unknown_keys_are_refused(client: FlaskClient, user: Any,
                                              admin_conn: psycopg.Connection) -> None:
    soon = (date.today() + timedelta(days=30)).isoformat()
    created = _create(client, user, expires_at=soon)
    h = _key_headers(created["secret"])
    assert created["api_key"]["expires_at"].startswith(soon)
    assert client.get("/api/user/settings", headers=h).status_code == 200
    admin_conn.execute("update public.api_keys set expires_at = now() - interval '1 second' where id = %s",
                       [created["api_key"]["id"]])
    r = client.get("/api/user/settings", headers=h)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "api_key_expired"
    wrong = created["secret"][:-1] + ("A" if created["secret"][-1] != "A" else "B")
    for bad in (wrong, "sb_short", "sb_" + "x" * 600):
        r = client.get("/api/user/settings", headers=_key_headers(bad))
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_api_key", bad[:20]
    r = client.get("/api/user/settings", headers={"X-Api-Key": "not-a-key"})
    assert r.status_code == 401


def test_banned_owner_key_is_refused(client: FlaskClient, user: Any, admin_conn: psycopg.Connection) -> None:
    h = _key_headers(_create(client, user)["secret"])
    admin_conn.execute("update auth.users set banned_until = now() + interval '1 day' where id = %s", [user.id])
    r = client.get("/api/user/settings", headers=h)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "user_banned"


def test_patch_changes_restrictions_and_validates_against_the_catalog(client: FlaskClient, user: Any) -> None:
    created = _create(client, user)
    kid = created["api_key"]["id"]
    providers = client.get("/api/pricing/providers").get_json()["providers"]
    slug = providers[0]["slug"]
    r = client.patch(f"/api/user/api-keys/{kid}", headers=user.headers,
                     json={"name": "renamed", "mode": "byok", "allow": [slug], "monthly_credit_cap": "2.5",
                           "expires_at": None})
    assert r.status_code == 200, r.get_json()
    k = r.get_json()["api_key"]
    assert (k["name"], k["mode"], k["allow"], k["monthly_credit_cap"]) == ("renamed", "byok", [slug], "2.500000")
    for body, field in (({"allow": ["no-such-provider"]}, "allow"), ({"allow": [f"{slug}/no-such-model"]}, "allow"),
                        ({"mode": "admin"}, "mode"), ({"name": ""}, "name"), ({"colour": "red"}, "body")):
        r = client.patch(f"/api/user/api-keys/{kid}", json=body, headers=user.headers)
        assert r.status_code == 422 and field in r.get_json()["error"]["fields"], body


def test_key_cap_cannot_exceed_the_users_own_cap(client: FlaskClient, user: Any) -> None:
    assert client.put("/api/user/settings", json={"monthly_credit_cap": "10"},
                      headers=user.headers).status_code == 200
    r = client.post("/api/user/api-keys", json={"name": "k", "monthly_credit_cap": "11"}, headers=user.headers)
    assert r.status_code == 422 and "monthly_credit_cap" in r.get_json()["error"]["fields"]
    assert _create(client, user, monthly_credit_cap="10")["api_key"]["monthly_credit_cap"] == "10.000000"


@pytest.mark.parametrize("body, field", [
    ({"name": "x" * 10_000}, "name"),
    ({"name": "\x00bad"}, "name"),
    ({"name": "\x1f" + "*" * 100}, "name"),  # the document's maxLength counts what is sent (schemathesis found it)
    ({"name": " " * 3 + "k" * 98}, "name"),
    ({"name": 42}, "name"),
    ({}, "name"),
    ({"name": "k", "expires_at": "yesterday"}, "expires_at"),
    ({"name": "k", "expires_at": "2001-01-01"}, "expires_at"),
    ({"name": "k", "expires_at": "9999-12-31T23:59:59"}, "expires_at"),
    ({"name": "k", "expires_at": "2027-02-30"}, "expires_at"),
    ({"name": "k", "expires_at": "9999-12-31T23:59:59-14:00"}, "expires_at"),
    ({"name": "k", "expires_at": "0001-01-01T00:00:00+14:00"}, "expires_at"),
    ({"name": "k", "expires_at": "2027-01-01T00:00:00+99:00"}, "expires_at"),
    ({"name": "k", "expires_at": 12345}, "expires_at"),
    ({"name": "k", "expires_at": "2" * 5000}, "expires_at"),
    ({"name": "k", "monthly_credit_cap": "-1"}, "monthly_credit_cap"),
    ({"name": "k", "monthly_credit_cap": "1e400"}, "monthly_credit_cap"),
    ({"name": "k", "monthly_credit_cap": "NaN"}, "monthly_credit_cap"),
    ({"name": "k", "monthly_credit_cap": "Infinity"}, "monthly_credit_cap"),
    ({"name": "k", "monthly_credit_cap": True}, "monthly_credit_cap"),
    ({"name": "k", "monthly_credit_cap": 10**30}, "monthly_credit_cap"),
    ({"name": "k", "monthly_credit_cap": [1]}, "monthly_credit_cap"),
    ({"name": "k", "allow": ["openai"] * 10_000}, "allow"),
    ({"name": "k", "allow": [{"a": 1}]}, "allow"),
    ({"name": "k", "allow": {"openai": True}}, "allow"),
    ({"name": "k", "allow": ["x" * 1000]}, "allow"),
    ({"name": "k", "allow": ""}, "allow"),  # a list or null on the JSON route; only the page's field is text
    ({"name": "k", "allow": "openai"}, "allow"),
    ({"name": "k", "mode": None}, "mode"),
])
def test_hostile_inputs_are_422_never_500(client: FlaskClient, user: Any, body: dict[str, Any], field: str) -> None:
    r = client.post("/api/user/api-keys", json=body, headers=user.headers)
    assert r.status_code == 422, (body, r.status_code)
    assert field in r.get_json()["error"]["fields"]


def test_allow_null_means_everything(client: FlaskClient, user: Any) -> None:
    r = client.post("/api/user/api-keys", json={"name": "k", "allow": None}, headers=user.headers)
    assert r.status_code == 201 and r.get_json()["api_key"]["allow"] == []


def test_non_json_and_non_uuid_ids(client: FlaskClient, user: Any) -> None:
    r = client.post("/api/user/api-keys", data="name=x", headers=user.headers)
    assert r.status_code in (415, 422)
    r = client.post("/api/user/api-keys", json=["name"], headers=user.headers)
    assert r.status_code == 422
    for path in ("/api/user/api-keys/not-a-uuid", "/api/user/api-keys/" + "9" * 400,
                 "/api/user/api-keys/00000000-0000-0000-0000-000000000000"):
        assert client.patch(path, json={"name": "x"}, headers=user.headers).status_code == 404
        assert client.delete(path, headers=user.headers).status_code == 404


def test_another_user_cannot_see_change_revoke_or_use_them(client: FlaskClient, make_user: Any) -> None:
    alice, bob = make_user(), make_user()
    created = _create(client, alice)
    kid = created["api_key"]["id"]
    assert client.get("/api/user/api-keys", headers=bob.headers).get_json()["api_keys"] == []
    assert client.patch(f"/api/user/api-keys/{kid}", json={"name": "mine"}, headers=bob.headers).status_code == 404
    assert client.delete(f"/api/user/api-keys/{kid}", headers=bob.headers).status_code == 404
    (still,) = client.get("/api/user/api-keys", headers=alice.headers).get_json()["api_keys"]
    assert still["name"] == "script" and still["status"] == "active"
    # The key acts as alice only.
    r = client.put("/api/user/settings", json={"first_name": "Alice"}, headers=_key_headers(created["secret"]))
    assert r.status_code == 200
    assert client.get("/api/user/settings", headers=bob.headers).get_json()["settings"]["first_name"] != "Alice"
    r = client.get("/api/admin/users/" + bob.id + "/api-keys", headers=bob.headers)
    assert r.status_code == 403


def test_admin_lists_and_revokes_any_users_keys_audited(client: FlaskClient, make_user: Any,
                                                         admin_conn: psycopg.Connection) -> None:
    admin, member = make_user(admin=True), make_user()
    created = _create(client, member, name="laptop")
    kid = created["api_key"]["id"]
    r = client.get(f"/api/admin/users/{member.id}/api-keys", headers=admin.headers)
    assert r.status_code == 200
    (listed,) = r.get_json()["api_keys"]
    assert listed["id"] == kid and listed["name"] == "laptop"
    assert created["secret"] not in r.get_data(as_text=True)
    r = client.delete(f"/api/admin/api-keys/{kid}", headers=admin.headers)
    assert r.status_code == 200 and r.get_json()["api_key"]["status"] == "revoked"
    r = client.get("/api/user/settings", headers=_key_headers(created["secret"]))
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "api_key_revoked"
    audit = admin_conn.execute("select actor_id::text, action, target, before::text from public.admin_audit_log"
                               " where target = %s", [f"api_key:{kid}"]).fetchall()
    assert len(audit) == 1 and audit[0][:3] == (admin.id, "api_key.revoke", f"api_key:{kid}")
    assert "laptop" in audit[0][3]
    for hash_ in _hashes(admin_conn, member.id):
        assert hash_ not in audit[0][3]
    assert client.delete(f"/api/admin/api-keys/{kid}", headers=member.headers).status_code == 403
    assert client.delete("/api/admin/api-keys/not-a-uuid", headers=admin.headers).status_code == 404
    assert client.get("/api/admin/users/00000000-0000-0000-0000-000000000000/api-keys",
                      headers=admin.headers).get_json() == {"api_keys": []}


def test_key_limit_per_user(client: FlaskClient, user: Any, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    from webapp.services import api_keys

    monkeypatch.setattr(api_keys, "MAX_KEYS", 2)
    _create(client, user)
    _create(client, user)
    r = client.post("/api/user/api-keys", json={"name": "third"}, headers=user.headers)
    assert r.status_code == 422 and "name" in r.get_json()["error"]["fields"]


def test_api_key_secret_is_configured_or_derived(test_env: dict[str, str]) -> None:
    from webapp.config import ConfigError, derive_api_key_secret, load_settings

    env = {k: v for k, v in test_env.items() if k != "API_KEY_SECRET"}
    derived = load_settings(env)
    assert derived.api_key_secret == derive_api_key_secret(env["SECRET_KEY"]) != env["SECRET_KEY"]
    assert load_settings(env).api_key_secret == derived.api_key_secret  # stable across restarts
    assert load_settings({**env, "SECRET_KEY": "s" * 40}).api_key_secret != derived.api_key_secret
    explicit = load_settings({**env, "API_KEY_SECRET": "a" * 32})
    assert explicit.api_key_secret == "a" * 32 and "a" * 32 not in repr(explicit)
    with pytest.raises(ConfigError, match="API_KEY_SECRET"):
        load_settings({**env, "API_KEY_SECRET": "short"})


def test_a_key_from_another_server_secret_is_refused(client: FlaskClient, user: Any, settings: Any,
                                                     db: Database) -> None:
    """Only the keyed hash is stored: the same key hashed under another API_KEY_SECRET matches nothing."""
    from webapp import create_app

    secret = _create(client, user)["secret"]
    other = create_app(settings.with_overrides(api_key_secret="z" * 40))
    try:
        r = other.test_client().get("/api/user/settings", headers=_key_headers(secret))
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "invalid_api_key"
    finally:
        other.extensions["switchboard"].db.close()


def test_revoke_in_one_worker_is_refused_by_another_on_its_next_request(client: FlaskClient, user: Any,
                                                                         settings: Any) -> None:
    """Nothing about a key is cached in a worker: another app instance (another worker, another machine) refuses
    a key revoked through this one on its very next request."""
    from webapp import create_app

    created = _create(client, user)
    other = create_app(settings)
    try:
        worker2 = other.test_client()
        h = _key_headers(created["secret"])
        for _ in range(3):
            assert worker2.get("/api/user/settings", headers=h).status_code == 200
            assert worker2.get("/v1/models", headers=h).status_code == 200
        assert client.delete(f"/api/user/api-keys/{created['api_key']['id']}", headers=user.headers).status_code == 200
        r = worker2.get("/v1/models", headers=h)
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "api_key_revoked"
        assert worker2.get("/api/user/settings", headers=h).status_code == 401
    finally:
        other.extensions["switchboard"].db.close()
