"""The signed-in user's JSON API (/api/user/*, /api/pricing/providers) on a real Postgres: success, validation
failure with the API's error shape, no token, and another user's rows unreachable through RLS itself. Keys are
tested against a fake OpenAI-compatible provider on loopback; no response ever carries a key or ciphertext.

The `settings_providers` fixture here is shared with the settings page and browser tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp import create_app
from webapp.config import Settings
from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.repos import preferences as prefs_repo
from webapp.repos import request_logs
from webapp.repos import user_keys as keys_repo
from webapp.repos.request_logs import RequestLog

GOOD_KEY = "sk-settings-good-key-a1b2c3d4"
OTHER_KEY = "sk-settings-wrong-key-9f8e7d6c"
MODEL = "st-model"


@dataclass
class SettingsProviders:
    """Providers made for these tests: `ok` answers on loopback and accepts GOOD_KEY; `down` cannot be reached
    and allows a custom base URL."""

    ok: str
    ok_id: str
    down: str
    down_id: str
    upstream: FakeUpstream


def _insert_provider(conn: psycopg.Connection, slug: str, base_url: str, custom_url: bool) -> str:
    # Loopback stand-ins for remote vendors that check keys: marked free for BYOK at their own address, which a
    # keyless local engine is not by default.
    row = conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
               credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order, free_for_byok)
           values (%s, %s, 'openai', %s, %s, true, 2.0, true, %s, 900, true) returning id::text""",
        [slug, slug.upper(), base_url, MODEL, custom_url]).fetchone()
    assert row is not None
    conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window)
                    values (%s, %s, 1000000, 2000000, 4096)""", [row[0], MODEL])
    return str(row[0])


@pytest.fixture(scope="module", name="settings_providers")
def settings_providers_fixture(database_urls: tuple[str, str]) -> Iterator[SettingsProviders]:
    upstream = start_openai_upstream(api_key=GOOD_KEY, models=[MODEL, "st-other"])
    suffix = uuid.uuid4().hex[:6]
    ok, down = f"st-ok-{suffix}", f"st-down-{suffix}"
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        ok_id = _insert_provider(conn, ok, upstream.base_url, custom_url=False)
        # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
        down_id = _insert_provider(conn, down, "http://127.0.0.1:9/v1", custom_url=True)
    yield SettingsProviders(ok, ok_id, down, down_id, upstream)
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("delete from public.llm_providers where id = any(%s::uuid[])", [[ok_id, down_id]])
    upstream.stop()


def add_log(db: Database, user_id: str, provider: str, *, mode: str = "member", status: int = 200,
            tokens: tuple[int, int] = (10, 20), credits: int = 50_000) -> str:
    """A request log row, written the way the gateway's log writer writes it (service role)."""
    request_id = str(uuid.uuid4())
    with db.as_service() as conn:
        request_logs.insert_many(conn, [RequestLog(
            request_id=request_id, user_id=user_id, mode=mode, status=status, provider=provider, model=MODEL,
            tokens_in=tokens[0], tokens_out=tokens[1], usage_source="measured", credits=credits,
            error_code=None if status < 400 else "upstream_error")])
    return request_id


def assert_error_shape(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    return dict(body["error"])


def assert_no_secret(resp: Any, *secrets: str) -> None:
    text = resp.get_data(as_text=True)
    assert "ciphertext" not in text
    for secret in secrets:
        assert secret not in text


# -- authentication ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/user/settings"), ("PUT", "/api/user/settings"), ("GET", "/api/user/llm/keys"),
    ("PUT", "/api/user/llm/keys/openai"), ("DELETE", "/api/user/llm/keys/openai"), ("GET", "/api/user/llm/usage"),
    ("GET", "/api/user/credits"), ("POST", "/api/user/llm/quote"),
])
def test_every_user_endpoint_needs_a_bearer_token(client: FlaskClient, method: str, path: str) -> None:
    resp = client.open(path, method=method, json={})
    assert_error_shape(resp, 401, "missing_token")
    bad = client.open(path, method=method, json={}, headers={"Authorization": "Bearer not-a-jwt"})
    assert bad.status_code == 401 and bad.get_json()["error"]["code"]


def test_session_cookie_alone_does_not_open_the_json_api(client: FlaskClient, make_user: Any) -> None:
    from tests.api.test_auth_pages import sign_in

    user = make_user()
    assert sign_in(client, user.email, user.password).status_code == 302
    assert client.get("/api/user/settings").status_code == 401


# -- settings ----------------------------------------------------------------------------------------------------

def test_get_settings_returns_defaults_for_a_new_user(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    resp = client.get("/api/user/settings", headers=user.headers)
    assert resp.status_code == 200
    s = resp.get_json()["settings"]
    assert s["llm_mode"] == "member" and s["fallbacks_enabled"] is True and s["never_spend_credits"] is False
    assert s["task_overrides"] == {} and s["monthly_credit_cap"] is None


def test_put_settings_saves_every_field(client: FlaskClient, make_user: Any, db: Database,
                                       settings_providers: SettingsProviders) -> None:
    user = make_user()
    ok = settings_providers.ok  # BYOK: a default provider and an override need the user's key there
    assert client.put(f"/api/user/llm/keys/{ok}", json={"api_key": GOOD_KEY}, headers=user.headers).status_code == 200
    body = {"username": f"u_{uuid.uuid4().hex[:8]}", "first_name": " Ada ", "last_name": "Lovelace",
            "email_notifications": False, "marketing_emails": True, "llm_mode": "byok", "default_provider": ok,
            "fallbacks_enabled": False, "never_spend_credits": True, "provider_priorities": ["anthropic", "openai"],
            "task_overrides": {"summarize": {"provider": ok, "model": "any-model-of-mine"}},
            "monthly_credit_cap": "12.5", "allow_dearer_fallbacks": True}
    resp = client.put("/api/user/settings", json=body, headers=user.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    s = resp.get_json()["settings"]
    assert s["first_name"] == "Ada" and s["llm_mode"] == "byok" and s["monthly_credit_cap"] == "12.500000"
    with db.as_user(user.claims) as conn:
        stored = prefs_repo.get(conn, user.id)
    assert stored.monthly_credit_cap == 12_500_000 and stored.provider_priorities == ["anthropic", "openai"]
    assert client.get("/api/user/settings", headers=user.headers).get_json()["settings"] == s


@pytest.mark.parametrize(("body", "field"), [
    ({"username": "a b"}, "username"),
    ({"username": "ab\n"}, "username"),
    ({"first_name": "x" * 81}, "first_name"),
    ({"email_notifications": "yes"}, "email_notifications"),
    ({"llm_mode": "free"}, "llm_mode"),
    ({"default_provider": "no-such-provider"}, "default_provider"),
    ({"default_provider": ["openai"]}, "default_provider"),
    ({"provider_priorities": ["openai", "openai"]}, "provider_priorities"),
    ({"task_overrides": {"bad task": {"provider": "openai", "model": "gpt-4o"}}}, "task_overrides"),
    ({"task_overrides": {"t": {"provider": "no-such", "model": "gpt-4o"}}}, "task_overrides"),
    ({"task_overrides": {"t": {"provider": ["openai"], "model": "gpt-4o"}}}, "task_overrides"),
    ({"task_overrides": {"t": {"provider": "openai", "model": " "}}}, "task_overrides"),
    ({"monthly_credit_cap": "-1"}, "monthly_credit_cap"),
    ({"monthly_credit_cap": "lots"}, "monthly_credit_cap"),
    ({"colour": "blue"}, "colour"),
])
def test_put_settings_rejects_invalid_fields_with_422(client: FlaskClient, make_user: Any, body: dict[str, Any],
                                                       field: str) -> None:
    user = make_user()
    err = assert_error_shape(client.put("/api/user/settings", json=body, headers=user.headers), 422,
                             "validation_error")
    assert field in err["fields"]
    assert client.get("/api/user/settings", headers=user.headers).get_json()["settings"]["llm_mode"] == "member"


def test_put_settings_refuses_a_body_that_is_not_an_object(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    err = assert_error_shape(client.put("/api/user/settings", data="[1]", content_type="application/json",
                                        headers=user.headers), 422, "validation_error")
    assert "body" in err["fields"]


def test_username_taken_by_another_user_is_a_field_error(client: FlaskClient, make_user: Any) -> None:
    first, second = make_user(), make_user()
    name = f"taken_{uuid.uuid4().hex[:6]}"
    assert client.put("/api/user/settings", json={"username": name}, headers=first.headers).status_code == 200
    err = assert_error_shape(client.put("/api/user/settings", json={"username": name}, headers=second.headers),
                             422, "validation_error")
    assert err["fields"] == {"username": "This username is taken."}


def test_task_override_to_a_disabled_provider_is_refused(client: FlaskClient, make_user: Any,
                                                         admin_conn: psycopg.Connection) -> None:
    user = make_user()
    admin_conn.execute("update public.llm_providers set enabled = false where slug = 'mistral'")
    try:
        resp = client.put("/api/user/settings", headers=user.headers,
                          json={"task_overrides": {"t": {"provider": "mistral", "model": "mistral-small-latest"}}})
    finally:
        admin_conn.execute("update public.llm_providers set enabled = true where slug = 'mistral'")
    assert_error_shape(resp, 422, "validation_error")


def test_settings_of_another_user_are_unreachable_through_rls(make_user: Any, db: Database) -> None:
    owner, other = make_user(), make_user()
    with db.as_user(owner.claims) as conn:
        prefs_repo.upsert(conn, owner.id, {"first_name": "Owner", "llm_mode": "byok"})
    with db.as_user(other.claims) as conn:
        # The row exists, but RLS hides it: the repository falls back to defaults.
        assert prefs_repo.get(conn, owner.id).first_name == ""
        assert conn.execute("select count(*) from public.user_preferences where user_id = %s",
                            [owner.id]).fetchone() == (0,)
        updated = conn.execute("update public.user_preferences set llm_mode = 'member' where user_id = %s",
                               [owner.id])
        assert updated.rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(other.claims) as conn:
        conn.execute("insert into public.user_preferences (user_id) values (%s)", [str(uuid.uuid4())])
    with db.as_user(owner.claims) as conn:
        assert prefs_repo.get(conn, owner.id).llm_mode == "byok"


# -- keys --------------------------------------------------------------------------------------------------------

def test_put_key_saves_it_masked_and_reports_that_it_works(client: FlaskClient, make_user: Any,
                                                           settings_providers: SettingsProviders) -> None:
    user = make_user()
    slug = settings_providers.ok
    resp = client.put(f"/api/user/llm/keys/{slug}", json={"api_key": GOOD_KEY}, headers=user.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["key"]["provider"] == slug and body["key"]["last4"] == GOOD_KEY[-4:]
    assert body["check"]["status"] == "ok" and "2 models" in body["check"]["message"]
    assert_no_secret(resp, GOOD_KEY)
    sent = [r for r in settings_providers.upstream.requests if r.path == "/v1/models"][-1]
    assert sent.headers["authorization"] == f"Bearer {GOOD_KEY}"
    listing = client.get("/api/user/llm/keys", headers=user.headers)
    assert listing.status_code == 200
    assert [k["provider"] for k in listing.get_json()["keys"]] == [slug]
    assert set(listing.get_json()["keys"][0]) == {"provider", "last4", "base_url", "enabled", "priority",
                                                  "last_used_at"}
    assert_no_secret(listing, GOOD_KEY)


def test_put_key_the_provider_refuses_is_saved_and_reported(client: FlaskClient, make_user: Any,
                                                            settings_providers: SettingsProviders) -> None:
    user = make_user()
    resp = client.put(f"/api/user/llm/keys/{settings_providers.ok}", json={"api_key": OTHER_KEY},
                      headers=user.headers)
    assert resp.status_code == 200
    assert resp.get_json()["check"]["status"] == "rejected"
    # The fake upstream echoes a refused key in its error body, as real providers do; it must not come back.
    assert_no_secret(resp, OTHER_KEY)


def test_put_key_for_an_unreachable_provider_is_still_saved(client: FlaskClient, make_user: Any,
                                                            settings_providers: SettingsProviders) -> None:
    user = make_user()
    resp = client.put(f"/api/user/llm/keys/{settings_providers.down}", json={"api_key": GOOD_KEY},
                      headers=user.headers)
    assert resp.status_code == 200
    assert resp.get_json()["check"]["status"] == "unreachable"
    assert [k["provider"] for k in client.get("/api/user/llm/keys", headers=user.headers).get_json()["keys"]] == [
        settings_providers.down]


def test_replacing_a_key_keeps_one_row_with_the_new_last_four(client: FlaskClient, make_user: Any,
                                                              settings_providers: SettingsProviders) -> None:
    user = make_user()
    path = f"/api/user/llm/keys/{settings_providers.down}"
    client.put(path, json={"api_key": OTHER_KEY}, headers=user.headers)
    assert client.put(path, json={"api_key": GOOD_KEY}, headers=user.headers).status_code == 200
    keys = client.get("/api/user/llm/keys", headers=user.headers).get_json()["keys"]
    assert len(keys) == 1 and keys[0]["last4"] == GOOD_KEY[-4:]


def test_key_with_own_base_url_is_tested_against_that_url(settings: Settings, make_user: Any,
                                                          settings_providers: SettingsProviders) -> None:
    # The fake upstream is on loopback, which only an operator may allow for user-supplied URLs.
    app = create_app(settings.with_overrides(byok_allow_private_urls=True))
    try:
        user = make_user()
        resp = app.test_client().put(f"/api/user/llm/keys/{settings_providers.down}", headers=user.headers,
                                     json={"api_key": GOOD_KEY, "base_url": settings_providers.upstream.base_url + "/"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        body = resp.get_json()
        assert body["key"]["base_url"] == settings_providers.upstream.base_url
        assert body["check"]["status"] == "ok"
    finally:
        app.extensions["switchboard"].db.close()


@pytest.mark.parametrize(("body", "field"), [
    ({"api_key": "short"}, "api_key"),
    ({"api_key": "has a space in it"}, "api_key"),
    ({}, "api_key"),
    ({"api_key": GOOD_KEY, "base_url": "ftp://example.com"}, "base_url"),
    ({"api_key": GOOD_KEY, "base_url": "http://169.254.169.254/v1"}, "base_url"),
])
def test_put_key_validation_errors_are_422(client: FlaskClient, make_user: Any,
                                           settings_providers: SettingsProviders, body: dict[str, Any],
                                           field: str) -> None:
    user = make_user()
    err = assert_error_shape(client.put(f"/api/user/llm/keys/{settings_providers.down}", json=body,
                                        headers=user.headers), 422, "validation_error")
    assert field in err["fields"]
    assert client.get("/api/user/llm/keys", headers=user.headers).get_json()["keys"] == []


def test_put_key_with_base_url_where_the_provider_forbids_it(client: FlaskClient, make_user: Any,
                                                             settings_providers: SettingsProviders) -> None:
    user = make_user()
    err = assert_error_shape(client.put(f"/api/user/llm/keys/{settings_providers.ok}", headers=user.headers,
                                        json={"api_key": GOOD_KEY, "base_url": "https://llm.example.com/v1"}),
                             422, "validation_error")
    assert "does not accept a custom base URL" in err["fields"]["base_url"]


def test_put_key_for_unknown_provider_is_404(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    assert_error_shape(client.put("/api/user/llm/keys/no-such-provider", json={"api_key": GOOD_KEY},
                                  headers=user.headers), 404, "provider_not_found")


def test_delete_key_removes_it_and_a_second_delete_is_404(client: FlaskClient, make_user: Any,
                                                          settings_providers: SettingsProviders) -> None:
    user = make_user()
    path = f"/api/user/llm/keys/{settings_providers.down}"
    client.put(path, json={"api_key": GOOD_KEY}, headers=user.headers)
    resp = client.delete(path, headers=user.headers)
    assert resp.status_code == 204 and resp.get_data() == b""
    assert client.get("/api/user/llm/keys", headers=user.headers).get_json()["keys"] == []
    assert_error_shape(client.delete(path, headers=user.headers), 404, "key_not_found")


def test_another_user_cannot_see_or_delete_my_key(client: FlaskClient, make_user: Any, db: Database,
                                                  settings_providers: SettingsProviders) -> None:
    owner, other = make_user(), make_user()
    path = f"/api/user/llm/keys/{settings_providers.down}"
    client.put(path, json={"api_key": GOOD_KEY}, headers=owner.headers)
    assert client.get("/api/user/llm/keys", headers=other.headers).get_json()["keys"] == []
    assert_error_shape(client.delete(path, headers=other.headers), 404, "key_not_found")
    with db.as_user(other.claims) as conn:
        assert keys_repo.list_for_owner(conn, owner.id) == []
        assert keys_repo.delete(conn, owner.id, settings_providers.down_id) is False
        assert conn.execute("update public.user_provider_keys set enabled = false where user_id = %s",
                            [owner.id]).rowcount == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(owner.claims) as conn:
        conn.execute("select ciphertext from public.user_provider_keys where user_id = %s", [owner.id])
    assert len(client.get("/api/user/llm/keys", headers=owner.headers).get_json()["keys"]) == 1


# -- usage and credits -------------------------------------------------------------------------------------------

def test_usage_returns_daily_buckets_and_recent_requests(client: FlaskClient, make_user: Any, db: Database) -> None:
    user = make_user()
    add_log(db, user.id, "openai", tokens=(100, 50), credits=1_500_000)
    add_log(db, user.id, "anthropic", mode="byok", credits=0, status=502)
    resp = client.get("/api/user/llm/usage", headers=user.headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["group_by"] == ["day", "provider"]
    by_provider = {b["provider"]: b for b in body["buckets"]}
    assert by_provider["openai"]["tokens_in"] == 100 and by_provider["openai"]["credits"] == "1.500000"
    assert by_provider["anthropic"]["errors"] == 1
    assert {r["mode"] for r in body["recent"]} == {"member", "byok"}


def test_usage_groups_by_model(client: FlaskClient, make_user: Any, db: Database) -> None:
    user = make_user()
    add_log(db, user.id, "openai")
    body = client.get("/api/user/llm/usage?group_by=model", headers=user.headers).get_json()
    assert body["buckets"][0]["model"] == MODEL and body["buckets"][0]["requests"] == 1


@pytest.mark.parametrize(("query", "field"), [
    ("from=yesterday", "from"), ("from=2026-02-01&to=2026-01-01", "from"), ("from=2024-01-01&to=2026-01-01", "from"),
    ("group_by=colour", "group_by"),
])
def test_usage_rejects_bad_ranges_and_groupings(client: FlaskClient, make_user: Any, query: str, field: str) -> None:
    user = make_user()
    err = assert_error_shape(client.get(f"/api/user/llm/usage?{query}", headers=user.headers), 422,
                             "validation_error")
    assert field in err["fields"]


def test_usage_of_another_user_is_unreachable_through_rls(client: FlaskClient, make_user: Any, db: Database) -> None:
    owner, other = make_user(), make_user()
    add_log(db, owner.id, "openai")
    body = client.get("/api/user/llm/usage", headers=other.headers).get_json()
    assert body["buckets"] == [] and body["recent"] == []
    with db.as_user(other.claims) as conn:
        assert request_logs.recent(conn, owner.id) == []


def test_credits_returns_balance_and_ledger(client: FlaskClient, make_user: Any, db: Database) -> None:
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, 2_500_000, "welcome", None)
    resp = client.get("/api/user/credits", headers=user.headers)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["balance"] == "2.500000" and body["balance_micro"] == 2_500_000
    assert body["ledger"][0]["delta"] == "2.500000" and body["ledger"][0]["reason"] == "welcome"


def test_credits_of_another_user_are_unreachable_through_rls(client: FlaskClient, make_user: Any,
                                                             db: Database) -> None:
    owner, other = make_user(), make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, owner.id, 7_000_000, "grant", None)
    assert client.get("/api/user/credits", headers=other.headers).get_json()["balance_micro"] == 0
    with db.as_user(other.claims) as conn:
        assert credits_repo.balance(conn, owner.id) == 0
        assert credits_repo.ledger(conn, owner.id) == []


# -- quote and pricing -------------------------------------------------------------------------------------------

def test_quote_lists_member_routes_and_my_byok_keys(client: FlaskClient, make_user: Any,
                                                    settings_providers: SettingsProviders) -> None:
    user, other = make_user(), make_user()
    client.put(f"/api/user/llm/keys/{settings_providers.ok}", json={"api_key": GOOD_KEY}, headers=user.headers)
    resp = client.post("/api/user/llm/quote", json={"prompt": "hello there", "max_tokens": 100},
                       headers=user.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    mine = [r for r in resp.get_json()["routes"] if r["provider"] == settings_providers.ok]
    # A loopback provider needs no admin key, so it is open in member mode too, at its 2x multiplier.
    assert {r["mode"] for r in mine} == {"member", "byok"}
    member = next(r for r in mine if r["mode"] == "member")
    byok = next(r for r in mine if r["mode"] == "byok")
    assert member["multiplier"] == "2" and member["max_credits_micro"] > 0 and member["fits"] is True
    assert byok["max_credits"] == "0.000000" and byok["context_window"] == 4096
    assert_no_secret(resp, GOOD_KEY)
    # Another user's stored key opens no BYOK route for them.
    theirs = client.post("/api/user/llm/quote", json={"prompt": "hello"}, headers=other.headers).get_json()
    assert not [r for r in theirs["routes"] if r["mode"] == "byok"]


def test_quote_reports_a_prompt_that_does_not_fit(client: FlaskClient, make_user: Any,
                                                  settings_providers: SettingsProviders) -> None:
    user = make_user()
    resp = client.post("/api/user/llm/quote", json={"prompt": "word " * 5000, "max_tokens": 10},
                       headers=user.headers)
    mine = [r for r in resp.get_json()["routes"] if r["provider"] == settings_providers.ok]
    assert mine and all(r["fits"] is False for r in mine)


@pytest.mark.parametrize(("body", "field"), [
    ({}, "prompt"), ({"prompt": "  "}, "prompt"), ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "hi", "max_tokens": "many"}, "max_tokens"), ({"prompt": "hi", "max_tokens": True}, "max_tokens"),
])
def test_quote_validation_errors_are_422(client: FlaskClient, make_user: Any, body: dict[str, Any],
                                         field: str) -> None:
    user = make_user()
    err = assert_error_shape(client.post("/api/user/llm/quote", json=body, headers=user.headers), 422,
                             "validation_error")
    assert field in err["fields"]


def test_pricing_is_public_and_lists_multipliers_without_key_material(client: FlaskClient) -> None:
    resp = client.get("/api/pricing/providers")
    assert resp.status_code == 200
    providers = {p["slug"]: p for p in resp.get_json()["providers"]}
    assert providers["github"]["multiplier"] == "1.5" and providers["openai"]["models"]
    text = json.dumps(resp.get_json())
    assert "ciphertext" not in text and "last4" not in text and "api_key" not in text
