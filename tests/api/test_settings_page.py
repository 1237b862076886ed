"""The settings page and its htmx fragments (session cookie + CSRF), on a real Postgres: each fragment on success
(200, the fragment alone, saved in place), on validation failure (422, the fragment re-rendered with the error
beside the field), without a session, and without reaching another user's data."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_auth_pages import csrf_token
from tests.api.test_user_api import (  # noqa: F401  (settings_providers_fixture is a fixture)
    GOOD_KEY,
    OTHER_KEY,
    SettingsProviders,
    add_log,
    settings_providers_fixture,
)
from webapp.db import Database
from webapp.repos import credits as credits_repo
from webapp.repos import preferences as prefs_repo
from webapp.repos import user_keys as keys_repo
from webapp.services import charts

HX = {"HX-Request": "true"}


@dataclass
class Session:
    """A signed-in browser: its client, user and CSRF token."""

    client: FlaskClient
    user: Any
    csrf: str

    def post(self, path: str, data: dict[str, Any] | None = None, *, hx: bool = True, csrf: bool = True) -> Any:
        form = dict(data or {})
        if csrf:
            form["csrf_token"] = self.csrf
        return self.client.post(path, data=form, headers=HX if hx else {})

    def get(self, path: str, *, hx: bool = False) -> Any:
        return self.client.get(path, headers=HX if hx else {})

    def prefs(self, db: Database) -> prefs_repo.Preferences:
        with db.as_user(self.user.claims) as conn:
            return prefs_repo.get(conn, self.user.id)


def sign_in(app: Flask, user: Any) -> Session:
    client = app.test_client()
    resp = client.post("/auth/sign-in", data={"email": user.email, "password": user.password,
                                              "csrf_token": csrf_token(client)})
    assert resp.status_code == 302
    # Signing in starts a new session, so the form token comes from the settings page itself.
    return Session(client, user, csrf_token(client, "/settings"))


@pytest.fixture()
def me(app: Flask, make_user: Any) -> Session:
    return sign_in(app, make_user())


def html(resp: Any) -> str:
    return str(resp.get_data(as_text=True))


def assert_fragment(resp: Any, root_id: str, status: int = 200) -> str:
    """The answer is the fragment alone, its root element carrying the id it replaces."""
    assert resp.status_code == status, html(resp)[:2000]
    text = html(resp).strip()
    assert "<html" not in text and "<body" not in text
    assert re.match(rf'<[a-z]+ [^>]*id="{re.escape(root_id)}"', text), text[:300]
    assert "HX-Request" in resp.headers.get("Vary", "")
    return text


def field_error(text: str, field_id: str) -> str:
    """The error shown beside a field, asserting the field points at it."""
    control = re.search(rf'<(?:input|textarea|select)[^>]*id="{re.escape(field_id)}"[^>]*>', text)
    assert control, f"no control {field_id}"
    assert 'aria-invalid="true"' in control.group(0)
    assert f"{field_id}-error" in control.group(0)
    error = re.search(rf'id="{re.escape(field_id)}-error">([^<]+)<', text)
    assert error, f"no error beside {field_id}"
    return error.group(1)


# -- the page ----------------------------------------------------------------------------------------------------

def test_settings_page_renders_every_section(me: Session) -> None:
    resp = me.get("/settings")
    assert resp.status_code == 200
    text = html(resp)
    for section in ("profile", "notifications", "mode", "keys", "routing", "order", "routing-options",
                    "overrides", "usage", "quote"):
        assert f'id="{section}"' in text, section
    assert me.user.email in text
    assert "js/settings.js" in text
    assert text.count('name="csrf_token"') >= 8
    assert "HX-Request" in resp.headers["Vary"]


def test_the_table_of_contents_links_every_section_in_page_order(me: Session) -> None:
    text = html(me.get("/settings"))
    toc = re.search(r'<nav class="toc" aria-label="Settings sections">(.*?)</nav>', text, re.S)
    assert toc
    targets = re.findall(r'<a href="#([a-z-]+)">', toc[1])
    assert "webhooks" in targets and targets.index("webhooks") == targets.index("api-keys") + 1
    positions = [text.find(f'id="{t}"', toc.end()) for t in targets]
    assert -1 not in positions and positions == sorted(positions), dict(zip(targets, positions, strict=True))


def test_page_without_session_redirects_to_sign_in(client: FlaskClient) -> None:
    resp = client.get("/settings")
    assert resp.status_code == 302 and "/auth/sign-in?next=%2Fsettings" in resp.headers["Location"]


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/settings/usage"), ("GET", "/settings/mode"), ("GET", "/settings/routing/order"),
    ("POST", "/settings/profile"),
    ("POST", "/settings/notifications"), ("POST", "/settings/mode"), ("POST", "/settings/keys/openai"),
    ("POST", "/settings/keys/openai/delete"), ("POST", "/settings/routing/order"), ("POST", "/settings/routing"),
    ("POST", "/settings/overrides"), ("POST", "/settings/quote"),
])
def test_fragment_without_session_sends_the_browser_to_sign_in(client: FlaskClient, method: str, path: str) -> None:
    token = csrf_token(client)
    resp = client.open(path, method=method, data={"csrf_token": token}, headers=HX)
    assert resp.status_code == 401
    assert resp.headers["HX-Redirect"].startswith("/auth/sign-in?next=")
    plain = client.open(path, method=method, data={"csrf_token": token})
    assert plain.status_code == 302 and "/auth/sign-in" in plain.headers["Location"]


def test_post_without_csrf_token_is_refused(me: Session, db: Database) -> None:
    resp = me.post("/settings/profile", {"first_name": "Mallory"}, csrf=False)
    assert resp.status_code == 400
    assert resp.headers["HX-Retarget"] == "#flash" and "form expired" in html(resp)
    assert me.prefs(db).first_name == ""


# -- profile and notifications -----------------------------------------------------------------------------------

def test_profile_saves_in_place(me: Session, db: Database) -> None:
    name = f"ada_{uuid.uuid4().hex[:6]}"
    resp = me.post("/settings/profile", {"username": name, "first_name": "Ada", "last_name": "Lovelace"})
    text = assert_fragment(resp, "profile")
    assert 'role="status">Saved.<' in text and f'value="{name}"' in text
    assert "data-dirty" not in text
    prefs = me.prefs(db)
    assert (prefs.username, prefs.first_name, prefs.last_name) == (name, "Ada", "Lovelace")


def test_profile_invalid_username_is_422_with_error_beside_field(me: Session, db: Database) -> None:
    resp = me.post("/settings/profile", {"username": "no spaces!", "first_name": "Ada", "last_name": ""})
    text = assert_fragment(resp, "profile", 422)
    assert "letters, digits" in field_error(text, "profile-username")
    assert 'value="no spaces!"' in text, "what the user typed is kept"
    assert "data-dirty" in text, "the changes are still unsaved"
    assert me.prefs(db).first_name == ""


def test_profile_username_taken_is_422(app: Flask, make_user: Any, me: Session) -> None:
    other = sign_in(app, make_user())
    name = f"taken_{uuid.uuid4().hex[:6]}"
    assert other.post("/settings/profile", {"username": name}).status_code == 200
    text = assert_fragment(me.post("/settings/profile", {"username": name}), "profile", 422)
    assert field_error(text, "profile-username") == "This username is taken."


def test_profile_without_htmx_answers_the_whole_page(me: Session, db: Database) -> None:
    resp = me.post("/settings/profile", {"username": "", "first_name": "Grace", "last_name": "Hopper"}, hx=False)
    assert resp.status_code == 200
    text = html(resp)
    assert "<html" in text and 'id="usage"' in text and 'role="status">Saved.<' in text
    assert me.prefs(db).first_name == "Grace"


def test_notifications_toggle(me: Session, db: Database) -> None:
    resp = me.post("/settings/notifications", {"marketing_emails": "true"})
    text = assert_fragment(resp, "notifications")
    assert re.search(r'id="notifications-marketing"[^>]*checked', text)
    assert not re.search(r'id="notifications-email"[^>]*checked', text)
    prefs = me.prefs(db)
    assert (prefs.email_notifications, prefs.marketing_emails) == (False, True)


def test_notifications_tampered_value_is_422(me: Session, db: Database) -> None:
    text = assert_fragment(me.post("/settings/notifications", {"email_notifications": "maybe"}), "notifications",
                           422)
    assert field_error(text, "notifications-email") == "Must be true or false."
    assert me.prefs(db).email_notifications is True


# -- mode --------------------------------------------------------------------------------------------------------

def test_mode_section_shows_balance_and_multipliers(me: Session, db: Database) -> None:
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.user.id, 12_345_600, "grant", None)
    text = assert_fragment(me.get("/settings/mode", hx=True), "mode")
    assert 'id="balance">12.345600<' in text, "to the micro-credit"
    assert "GitHub Models</td><td>1.5\u00d7" in text
    assert "hx-confirm=" in text and 'hx-trigger="keys-changed from:body"' in text


def test_switching_mode_takes_effect_and_says_so(me: Session, db: Database) -> None:
    text = assert_fragment(me.post("/settings/mode", {"llm_mode": "byok"}), "mode")
    assert 'id="mode-current">Bring your own key' in text and "your next request" in text
    assert 'id="mode-no-keys"' in text
    assert me.prefs(db).llm_mode == "byok"
    back = assert_fragment(me.post("/settings/mode", {"llm_mode": "member"}), "mode")
    assert 'id="mode-current">Member' in back and me.prefs(db).llm_mode == "member"


def test_switching_to_an_unknown_mode_is_422(me: Session, db: Database) -> None:
    text = assert_fragment(me.post("/settings/mode", {"llm_mode": "free"}), "mode", 422)
    assert 'id="mode-invalid" role="alert">Not saved: Choose member or byok.<' in text
    assert me.prefs(db).llm_mode == "member"


# -- keys --------------------------------------------------------------------------------------------------------

def test_saving_a_key_shows_it_masked_with_the_check_result(me: Session, db: Database,
                                                            settings_providers: SettingsProviders) -> None:
    slug = settings_providers.ok
    resp = me.post(f"/settings/keys/{slug}", {"api_key": GOOD_KEY})
    text = assert_fragment(resp, f"key-{slug}")
    assert f"••••{GOOD_KEY[-4:]}" in text and "The key works (2 models available)." in text
    assert "outcome-ok" in text and "not used yet" in text
    assert GOOD_KEY not in text and GOOD_KEY[:-4] not in text
    assert resp.headers["HX-Trigger"] == "keys-changed"
    assert "Remove key" in text and "hx-confirm=" in text
    with db.as_user(me.user.claims) as conn:
        assert [k.last4 for k in keys_repo.list_for_owner(conn, me.user.id)] == [GOOD_KEY[-4:]]


def test_a_refused_key_is_saved_and_the_refusal_shown(me: Session, settings_providers: SettingsProviders) -> None:
    text = assert_fragment(me.post(f"/settings/keys/{settings_providers.ok}", {"api_key": OTHER_KEY}),
                           f"key-{settings_providers.ok}")
    assert "refused this key" in text and "outcome-rejected" in text and f"••••{OTHER_KEY[-4:]}" in text
    assert OTHER_KEY not in text


def test_a_key_for_an_unreachable_provider_is_saved(me: Session, settings_providers: SettingsProviders) -> None:
    text = assert_fragment(me.post(f"/settings/keys/{settings_providers.down}", {"api_key": GOOD_KEY}),
                           f"key-{settings_providers.down}")
    assert "saved anyway" in text and f"••••{GOOD_KEY[-4:]}" in text


def test_invalid_key_is_422_and_never_echoed(me: Session, db: Database,
                                             settings_providers: SettingsProviders) -> None:
    slug = settings_providers.down
    resp = me.post(f"/settings/keys/{slug}", {"api_key": "bad key value", "base_url": "ftp://x.example"})
    text = assert_fragment(resp, f"key-{slug}", 422)
    assert "Paste the whole key" in field_error(text, f"key-{slug}-api_key")
    assert "http" in field_error(text, f"key-{slug}-base_url")
    assert "bad key value" not in text and 'value="ftp://x.example"' in text
    with db.as_user(me.user.claims) as conn:
        assert keys_repo.list_for_owner(conn, me.user.id) == []


def test_base_url_field_only_where_the_provider_allows_it(me: Session,
                                                          settings_providers: SettingsProviders) -> None:
    page = html(me.get("/settings"))
    assert f'id="key-{settings_providers.down}-base_url"' in page
    assert f'id="key-{settings_providers.ok}-base_url"' not in page
    text = assert_fragment(me.post(f"/settings/keys/{settings_providers.ok}",
                                   {"api_key": GOOD_KEY, "base_url": "https://x.example/v1"}),
                           f"key-{settings_providers.ok}", 422)
    assert "does not accept a custom base URL" in text


def test_removing_a_key(me: Session, db: Database, settings_providers: SettingsProviders) -> None:
    slug = settings_providers.down
    me.post(f"/settings/keys/{slug}", {"api_key": GOOD_KEY})
    resp = me.post(f"/settings/keys/{slug}/delete")
    text = assert_fragment(resp, f"key-{slug}")
    assert "Key removed." in text and "No key stored." in text
    assert resp.headers["HX-Trigger"] == "keys-changed"
    with db.as_user(me.user.claims) as conn:
        assert keys_repo.list_for_owner(conn, me.user.id) == []


def test_removing_a_missing_key_flashes_an_error(me: Session, settings_providers: SettingsProviders) -> None:
    resp = me.post(f"/settings/keys/{settings_providers.down}/delete")
    assert resp.status_code == 404
    assert resp.headers["HX-Retarget"] == "#flash" and "no stored key" in html(resp)


def test_key_for_unknown_provider_flashes_404(me: Session) -> None:
    resp = me.post("/settings/keys/no-such-provider", {"api_key": GOOD_KEY})
    assert resp.status_code == 404 and resp.headers["HX-Retarget"] == "#flash"


def test_key_shows_when_it_was_last_used(app: Flask, me: Session, settings_providers: SettingsProviders) -> None:
    slug = settings_providers.ok
    me.post(f"/settings/keys/{slug}", {"api_key": GOOD_KEY})
    me.post("/settings/mode", {"llm_mode": "byok"})
    resp = me.client.post("/v1/chat/completions", headers=me.user.headers,
                          json={"model": f"{slug}/st-model", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, html(resp)
    assert resp.headers["X-Switchboard-Key-Source"] == "byok_stored"
    app.extensions["switchboard"].logs.flush()
    page = html(me.get("/settings"))
    stored = re.search(rf'id="key-{slug}-stored">(.*?)</p>', page, re.S)
    assert stored and "last used <time" in stored.group(1) and "UTC</time>" in stored.group(1)


def v1_chat(session: Session, model: str) -> Any:
    return session.client.post("/v1/chat/completions", headers=session.user.headers,
                               json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_switching_mode_applies_to_the_very_next_request(me: Session) -> None:
    assert me.post("/settings/mode", {"llm_mode": "byok"}).status_code == 200
    resp = v1_chat(me, "openai/gpt-4o-mini")
    assert resp.status_code == 400 and resp.get_json()["error"]["code"] == "byok_key_missing"


# -- routing -----------------------------------------------------------------------------------------------------

def order_on_page(text: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="order" value="([^"]+)">', text)


def test_order_shows_which_providers_have_my_key(me: Session, settings_providers: SettingsProviders) -> None:
    me.post(f"/settings/keys/{settings_providers.down}", {"api_key": GOOD_KEY})
    text = assert_fragment(me.get("/settings/routing/order", hx=True), "order")
    item = re.search(rf'<li id="order-{settings_providers.down}">(.*?)</li>', text, re.S)
    assert item and "your key" in item.group(1)
    assert 'hx-trigger="keys-changed from:body"' in text


def test_moving_a_provider_up_saves_the_new_order(me: Session, db: Database) -> None:
    # The first two presets on the page (openai, github on the seed alone; other suites may add presets before
    # them): moving the second up swaps them, and moving it down swaps them back.
    order = order_on_page(html(me.get("/settings")))
    seeded = [slug for slug in order if slug in ("openai", "github")]
    assert seeded == ["openai", "github"]  # the seed's own order
    first, second = order[:2]
    resp = me.post("/settings/routing/order", {"order": order, "move": f"{second}:up"})
    text = assert_fragment(resp, "order")
    assert order_on_page(text)[:2] == [second, first] and "Order saved." in text
    assert me.prefs(db).provider_priorities[:2] == [second, first]
    assert re.search(rf'id="move-up-{re.escape(second)}"[^>]*disabled', text)
    down = assert_fragment(me.post("/settings/routing/order", {"order": order_on_page(text), "move": f"{second}:down"}),
                           "order")
    assert order_on_page(down)[:2] == [first, second]


def test_order_with_an_unknown_provider_is_422(me: Session, db: Database) -> None:
    text = assert_fragment(me.post("/settings/routing/order", {"order": ["openai", "nope"], "move": "nope:up"}),
                           "order", 422)
    assert 'id="order-error">A list of distinct provider slugs.<' in text
    assert me.prefs(db).provider_priorities == []


def test_routing_options_save_fallbacks_never_spend_and_cap(me: Session, db: Database) -> None:
    resp = me.post("/settings/routing", {"never_spend_credits": "true", "monthly_credit_cap": "12.5"})
    text = assert_fragment(resp, "routing-options")
    assert 'value="12.5"' in text and "Saved." in text
    prefs = me.prefs(db)
    assert (prefs.fallbacks_enabled, prefs.never_spend_credits, prefs.monthly_credit_cap) == (False, True, 12_500_000)
    cleared = me.post("/settings/routing", {"fallbacks_enabled": "true", "monthly_credit_cap": ""})
    assert cleared.status_code == 200 and me.prefs(db).monthly_credit_cap is None


@pytest.mark.parametrize("cap", ["-3", "ten", "1e12"])
def test_invalid_monthly_cap_is_422_beside_the_field(me: Session, db: Database, cap: str) -> None:
    text = assert_fragment(me.post("/settings/routing", {"monthly_credit_cap": cap}), "routing-options", 422)
    assert field_error(text, "routing-cap")
    assert f'value="{cap}"' in text and me.prefs(db).monthly_credit_cap is None


@pytest.mark.parametrize(("form", "code"), [
    ({"monthly_credit_cap": "0.000001", "fallbacks_enabled": "true"}, "monthly_cap_reached"),
    ({"never_spend_credits": "true", "fallbacks_enabled": "true"}, "credits_disabled"),
])
def test_spending_limits_set_on_the_page_are_enforced_by_the_gateway(me: Session, db: Database,
                                                                     settings_providers: SettingsProviders,
                                                                     form: dict[str, str], code: str) -> None:
    with db.as_service() as conn:
        credits_repo.adjust(conn, me.user.id, 100_000_000, "grant", None)
    assert me.post("/settings/routing", form).status_code == 200
    resp = v1_chat(me, f"{settings_providers.ok}/st-model")
    assert resp.status_code == 402 and resp.get_json()["error"]["code"] == code
    with db.as_user(me.user.claims) as conn:
        assert credits_repo.balance(conn, me.user.id) == 100_000_000


def overrides_form(*rows: tuple[str, str, str], remove: list[int] | None = None) -> dict[str, Any]:
    form: dict[str, Any] = {"task": [r[0] for r in rows], "provider": [r[1] for r in rows],
                            "model": [r[2] for r in rows]}
    if remove:
        form["remove"] = [str(i) for i in remove]
    return form


def test_adding_a_task_override(me: Session, db: Database) -> None:
    # (Ollama on loopback needs no admin key, so it is offered in member mode.)
    form = overrides_form(("summarize", "ollama", "llama3.2"), ("", "", ""))
    text = assert_fragment(me.post("/settings/overrides", form), "overrides")
    assert 'value="summarize"' in text and "Saved." in text
    assert me.prefs(db).task_overrides == {"summarize": {"provider": "ollama", "model": "llama3.2"}}


def test_removing_a_task_override(me: Session, db: Database) -> None:
    me.post("/settings/overrides", overrides_form(("a", "ollama", "llama3.2"), ("b", "lmstudio", "local-model")))
    rows = (("a", "ollama", "llama3.2"), ("b", "lmstudio", "local-model"), ("", "", ""))
    resp = me.post("/settings/overrides", overrides_form(*rows, remove=[0]))
    assert resp.status_code == 200
    assert me.prefs(db).task_overrides == {"b": {"provider": "lmstudio", "model": "local-model"}}


@pytest.mark.parametrize(("rows", "message"), [
    ((("summarize", "", "gpt-4o"),), "choose an enabled provider"),
    ((("summarize", "no-such", "gpt-4o"),), "choose an enabled provider"),
    ((("bad task", "openai", "gpt-4o"),), "name it with"),
    ((("summarize", "openai", ""),), "name a model"),
    ((("", "openai", "gpt-4o"),), "name it with"),
    ((("t", "ollama", "llama3.2"), ("t", "lmstudio", "local-model")), "listed twice"),
])
def test_invalid_task_override_is_422_beside_its_row(me: Session, db: Database, rows: tuple[Any, ...],
                                                     message: str) -> None:
    text = assert_fragment(me.post("/settings/overrides", overrides_form(*rows)), "overrides", 422)
    bad = len(rows) - 1
    for field in ("task", "provider", "model"):
        control = re.search(rf'<(?:input|select) id="ov-{bad}-{field}"[^>]*>', text)
        assert control and f'aria-invalid="true" aria-describedby="ov-{bad}-error"' in control.group(0)
    error = re.search(rf'id="ov-{bad}-error">([^<]+)<', text)
    assert error and message in error.group(1)
    if bad:
        assert 'id="ov-0-error"' not in text, "only the row at fault is marked"
    assert me.prefs(db).task_overrides == {}


def test_task_override_to_a_disabled_provider_is_refused(me: Session, db: Database,
                                                         admin_conn: psycopg.Connection) -> None:
    admin_conn.execute("update public.llm_providers set enabled = false where slug = 'mistral'")
    try:
        resp = me.post("/settings/overrides", overrides_form(("t", "mistral", "mistral-small-latest")))
    finally:
        admin_conn.execute("update public.llm_providers set enabled = true where slug = 'mistral'")
    text = assert_fragment(resp, "overrides", 422)
    assert "mistral (not available)" in text and me.prefs(db).task_overrides == {}


# -- usage and its chart -----------------------------------------------------------------------------------------------

def test_usage_chart_draws_a_bar_per_provider_and_day(me: Session, db: Database,
                                                      admin_conn: psycopg.Connection) -> None:
    add_log(db, me.user.id, "openai", tokens=(100, 50), credits=1_500_000)
    add_log(db, me.user.id, "anthropic", mode="byok", credits=0, status=502)
    old = add_log(db, me.user.id, "openai")
    admin_conn.execute("update public.llm_request_logs set created_at = now() - interval '3 days'"
                       " where request_id = %s", [old])
    text = assert_fragment(me.get("/settings/usage", hx=True), "usage")
    for measure in ("requests", "tokens", "credits"):
        assert f'id="chart-{measure}"' in text
    bars = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', text)
    assert any("openai: 1 requests" in t for t in bars) and any("anthropic: 1 requests" in t for t in bars)
    assert any("openai: 150 tokens" in t for t in bars) and any("openai: 1.5 credits" in t for t in bars)
    assert len([t for t in bars if "requests" in t]) == 3
    assert text.count("<tr><td>") >= 3, "a data table below the chart"
    assert 'id="recent"' in text and "502 upstream_error" in text and "BYOK" in text


def test_usage_without_requests_says_so(me: Session) -> None:
    text = assert_fragment(me.get("/settings/usage", hx=True), "usage")
    assert 'id="usage-empty"' in text and "<svg" not in text


def test_usage_never_shows_another_users_requests(app: Flask, make_user: Any, me: Session, db: Database) -> None:
    other = make_user()
    add_log(db, other.id, "groq")
    text = html(me.get("/settings"))
    assert "groq: " not in text and 'id="usage-empty"' in text


def test_chart_axis_uses_round_numbers() -> None:
    assert [charts.nice_ceiling(v) for v in (0, 1, 3, 7, 11, 26_000, 50_001)] == [1, 1, 5, 10, 20, 50_000, 100_000]
    day = date(2026, 11, 23)
    buckets = [{"day": day.isoformat(), "provider": "openai", "requests": 3, "tokens_in": 26_000, "tokens_out": 0,
                "credits_micro": 1_500_000, "errors": 0}]
    built = charts.usage_charts(buckets, day - timedelta(days=29), day)
    tokens = next(c for c in built.charts if c.measure == "tokens")
    assert [t.text for t in tokens.ticks] == ["0", "25k", "50k"]
    credits = next(c for c in built.charts if c.measure == "credits")
    assert credits.total == "1.5" and credits.ticks[-1].text == "2"


def test_stacked_bars_reach_the_day_total_and_stay_in_the_plot() -> None:
    day = date(2026, 11, 23)
    buckets = [{"day": day.isoformat(), "provider": p, "requests": n, "tokens_in": 0, "tokens_out": 0,
                "credits_micro": 0, "errors": 0} for p, n in (("a", 3), ("b", 2))]
    built = charts.usage_charts(buckets, day - timedelta(days=29), day)
    requests = next(c for c in built.charts if c.measure == "requests")
    assert [b.title for b in requests.bars] == ["Nov 23 · a: 3 requests", "Nov 23 · b: 2 requests"]
    bottom, top = charts.TOP + charts.PLOT_H, charts.TOP
    a, b = requests.bars
    assert a.y + a.height == pytest.approx(bottom) and b.y + b.height == pytest.approx(a.y)
    # 5 requests on an axis topped at 5: the stack reaches the top exactly.
    assert b.y == pytest.approx(top)
    assert all(built.left <= bar.x and bar.x + bar.width <= built.right for bar in requests.bars)
    assert [r.provider for r in built.rows] == ["a", "b"] and built.series[0].provider == "a"


# -- quote -------------------------------------------------------------------------------------------------------

def test_quote_lists_routes_with_costs_and_fit(me: Session, settings_providers: SettingsProviders) -> None:
    me.post(f"/settings/keys/{settings_providers.ok}", {"api_key": GOOD_KEY})
    resp = me.post("/settings/quote", {"prompt": "How many tokens is this?", "max_tokens": "100"})
    text = assert_fragment(resp, "quote")
    assert 'id="quote-results"' in text and "How many tokens is this?" in text and 'value="100"' in text
    rows = re.findall(r"<tr class=\"[^\"]*\"><td>(Member|My key)</td><td>([^<]+)</td>", text)
    name = settings_providers.ok.upper()
    assert ("My key", name) in rows and ("Member", name) in rows
    assert re.search(r'id="quote-tokens">Your prompt is <strong>\d+', text)
    assert "fits" in text


def test_quote_without_a_prompt_is_422(me: Session) -> None:
    text = assert_fragment(me.post("/settings/quote", {"prompt": " ", "max_tokens": "10"}), "quote", 422)
    assert field_error(text, "quote-prompt") == "Paste a prompt."


@pytest.mark.parametrize("max_tokens", ["0", "lots", "99999999999", "\u00b2", "-5"])
def test_quote_with_bad_max_tokens_is_422(me: Session, max_tokens: str) -> None:
    text = assert_fragment(me.post("/settings/quote", {"prompt": "hi", "max_tokens": max_tokens}), "quote", 422)
    assert field_error(text, "quote-max_tokens") == "An integer from 1 to 1,000,000."


# -- another user's data -----------------------------------------------------------------------------------------

@pytest.fixture()
def owner_with_data(app: Flask, make_user: Any, db: Database,
                    settings_providers: SettingsProviders) -> Iterator[Session]:
    owner = sign_in(app, make_user())
    owner.post("/settings/profile", {"username": f"owner_{uuid.uuid4().hex[:6]}", "first_name": "Olivia"})
    owner.post(f"/settings/keys/{settings_providers.down}", {"api_key": GOOD_KEY})
    owner.post("/settings/overrides", overrides_form(("secret-task", "ollama", "llama3.2")))
    yield owner


def test_another_users_settings_and_keys_never_show(owner_with_data: Session, me: Session,
                                                    settings_providers: SettingsProviders) -> None:
    text = html(me.get("/settings"))
    assert "Olivia" not in text and "secret-task" not in text and f"••••{GOOD_KEY[-4:]}" not in text
    resp = me.post(f"/settings/keys/{settings_providers.down}/delete")
    assert resp.status_code == 404
    assert f"••••{GOOD_KEY[-4:]}" in html(owner_with_data.get("/settings"))


def test_another_users_rows_are_unreachable_through_rls(owner_with_data: Session, me: Session, db: Database,
                                                        settings_providers: SettingsProviders) -> None:
    owner_id = owner_with_data.user.id
    with db.as_user(me.user.claims) as conn:
        assert prefs_repo.get(conn, owner_id).first_name == ""
        assert keys_repo.list_for_owner(conn, owner_id) == []
        assert keys_repo.delete(conn, owner_id, settings_providers.down_id) is False
        assert conn.execute("update public.user_preferences set first_name = 'x' where user_id = %s",
                            [owner_id]).rowcount == 0
    assert owner_with_data.prefs(db).first_name == "Olivia"
