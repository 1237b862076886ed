"""Routing settings that do what the user said, on a real Postgres: a default provider and task overrides are
validated against what is offered to the user in their mode (422 with the offered list, in the JSON API and beside
the field on the page); the dearer-fallbacks setting (off by default) in both; a warning on the page for each
override or priority that no longer resolves after an admin disables a model or a provider; and quotes that plan
exactly as the gateway does (pins, a personal API key's allow-list and mode).

In the test database, the seeded local engines (Ollama: llama3.2 and smollm2, LM Studio: local-model) are the
providers ready for members (no key needed on loopback); OpenAI, Anthropic, ... have no admin key, so are not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.api.test_settings_page import Session, assert_fragment, html, overrides_form, sign_in
from tests.api.test_user_api import (  # noqa: F401  (settings_providers_fixture is a fixture)
    GOOD_KEY,
    MODEL,
    SettingsProviders,
    assert_error_shape,
    settings_providers_fixture,
)


def put(client: FlaskClient, user: Any, body: dict[str, Any]) -> Any:
    return client.put("/api/user/settings", json=body, headers=user.headers)


@pytest.fixture()
def restore_catalog(admin_conn: psycopg.Connection) -> Iterator[psycopg.Connection]:
    """For tests that act as an admin on the seeded local engines: everything is switched back on after."""
    yield admin_conn
    admin_conn.execute("update public.llm_providers set enabled = true where slug in ('ollama', 'lmstudio')")
    admin_conn.execute("update public.llm_model_rates set enabled = true where provider_id in"
                       " (select id from public.llm_providers where slug in ('ollama', 'lmstudio'))")


# -- JSON API ----------------------------------------------------------------------------------------------------

def test_an_override_to_a_provider_not_offered_in_member_mode_is_422_with_the_offered_list(
        client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    resp = put(client, user, {"task_overrides": {"summarize": {"provider": "openai", "model": "gpt-4o"}}})
    err = assert_error_shape(resp, 422, "validation_error")
    assert "openai is not offered to you in member mode" in err["fields"]["task_overrides"]
    assert "ollama (llama3.2, smollm2)" in err["fields"]["task_overrides"]
    assert err["offered"]["mode"] == "member"
    offered = {p["provider"]: p["models"] for p in err["offered"]["providers"]}
    assert offered["ollama"] == ["llama3.2", "smollm2"] and offered["lmstudio"] == ["local-model"]
    assert "openai" not in offered and "anthropic" not in offered
    assert client.get("/api/user/settings", headers=user.headers).get_json()["settings"]["task_overrides"] == {}


def test_an_override_to_a_model_its_provider_does_not_offer_is_422(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    err = assert_error_shape(put(client, user, {"task_overrides": {"t": {"provider": "ollama", "model": "gpt-4o"}}}),
                             422, "validation_error")
    assert "ollama does not offer 'gpt-4o' in member mode" in err["fields"]["task_overrides"]
    ok = put(client, user, {"task_overrides": {"t": {"provider": "ollama", "model": "smollm2"}}})
    assert ok.status_code == 200
    assert ok.get_json()["settings"]["task_overrides"] == {"t": {"provider": "ollama", "model": "smollm2"}}


def test_a_default_provider_not_offered_is_422(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    err = assert_error_shape(put(client, user, {"default_provider": "anthropic"}), 422, "validation_error")
    assert "anthropic is not offered to you in member mode" in err["fields"]["default_provider"]
    assert {p["provider"] for p in err["offered"]["providers"]} >= {"ollama", "lmstudio"}
    assert put(client, user, {"default_provider": "lmstudio"}).get_json()["settings"]["default_provider"] == \
        "lmstudio"


def test_byok_mode_offers_the_providers_the_user_has_a_key_for(client: FlaskClient, make_user: Any,
                                                               settings_providers: SettingsProviders) -> None:
    user = make_user()
    ok = settings_providers.ok
    # Switching to BYOK in the same request: checked against BYOK, where nothing is offered without a key.
    err = assert_error_shape(put(client, user, {"llm_mode": "byok", "task_overrides": {
        "t": {"provider": "ollama", "model": "llama3.2"}}}), 422, "validation_error")
    assert "not offered to you in BYOK mode" in err["fields"]["task_overrides"]
    assert err["offered"] == {"mode": "byok", "providers": []}
    assert client.put(f"/api/user/llm/keys/{ok}", json={"api_key": GOOD_KEY}, headers=user.headers).status_code == 200
    resp = put(client, user, {"llm_mode": "byok", "default_provider": ok,
                              "task_overrides": {"t": {"provider": ok, "model": "a-model-the-catalog-lacks"}}})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    # Back in member mode the same provider (loopback, no admin key needed) offers only its priced model.
    err = assert_error_shape(put(client, user, {"llm_mode": "member", "task_overrides": {
        "t": {"provider": ok, "model": "a-model-the-catalog-lacks"}}}), 422, "validation_error")
    assert f"Offered there: {MODEL}" in err["fields"]["task_overrides"]


def test_allow_dearer_fallbacks_is_off_by_default_and_validated(client: FlaskClient, make_user: Any) -> None:
    user = make_user()
    assert client.get("/api/user/settings", headers=user.headers).get_json()["settings"][
        "allow_dearer_fallbacks"] is False
    for bad in ("yes", 1, None):
        err = assert_error_shape(put(client, user, {"allow_dearer_fallbacks": bad}), 422, "validation_error")
        assert err["fields"] == {"allow_dearer_fallbacks": "Must be true or false."}
    assert put(client, user, {"allow_dearer_fallbacks": True}).get_json()["settings"]["allow_dearer_fallbacks"] is True


# -- the settings page -----------------------------------------------------------------------------------------

@pytest.fixture()
def me(app: Flask, make_user: Any) -> Session:
    return sign_in(app, make_user())


def test_the_page_shows_the_offered_list_beside_a_refused_override(me: Session) -> None:
    text = assert_fragment(me.post("/settings/overrides", overrides_form(("t", "openai", "gpt-4o"))), "overrides", 422)
    error = re.search(r'id="ov-0-error">([^<]+)<', text)
    assert error and "openai is not offered to you in member mode" in error.group(1)
    assert "ollama (llama3.2, smollm2)" in error.group(1).replace("&#39;", "'")
    assert 'id="overrides-offered"' in text and "lmstudio (local-model)" in text


def test_the_page_saves_allow_dearer_fallbacks(me: Session, app: Flask) -> None:
    page = html(me.client.get("/settings"))
    box = re.search(r'<input[^>]*id="routing-dearer"[^>]*>', page)
    assert box and "checked" not in box.group(0)
    form = {"fallbacks_enabled": "true", "allow_dearer_fallbacks": "true", "monthly_credit_cap": ""}
    text = assert_fragment(me.post("/settings/routing", form), "routing-options")
    box = re.search(r'<input[^>]*id="routing-dearer"[^>]*>', text)
    assert box and "checked" in box.group(0)
    db = app.extensions["switchboard"].db
    assert me.prefs(db).allow_dearer_fallbacks is True
    assert_fragment(me.post("/settings/routing", {**form, "allow_dearer_fallbacks": "maybe"}), "routing-options", 422)
    assert me.prefs(db).allow_dearer_fallbacks is True


def test_warnings_after_an_admin_disables_a_model_or_a_provider(me: Session,
                                                                restore_catalog: psycopg.Connection) -> None:
    assert me.post("/settings/overrides", overrides_form(("summarize", "ollama", "smollm2"),
                                                         ("code", "lmstudio", "local-model"))).status_code == 200
    me.post("/settings/routing/order", {"order": ["ollama", "lmstudio"]})
    page = html(me.client.get("/settings"))
    assert 'id="overrides-warnings"' not in page and 'id="order-warnings"' not in page
    # The admin switches a model off: the override naming it no longer resolves.
    restore_catalog.execute("update public.llm_model_rates set enabled = false where model = 'smollm2'")
    page = html(me.client.get("/settings"))
    warnings = re.search(r'id="overrides-warnings"[^>]*>(.*?)</ul>', page, re.S)
    assert warnings and "summarize" in warnings.group(1) and "smollm2" in warnings.group(1)
    assert "code" not in warnings.group(1)
    # ...then disables a provider: its override and its place in the order are flagged.
    restore_catalog.execute("update public.llm_providers set enabled = false where slug = 'lmstudio'")
    page = html(me.client.get("/settings"))
    warnings = re.search(r'id="overrides-warnings"[^>]*>(.*?)</ul>', page, re.S)
    assert warnings and "'code'" in warnings.group(1).replace("&#39;", "'")
    order = re.search(r'id="order-warnings"[^>]*>(.*?)</ul>', page, re.S)
    assert order and "lmstudio" in order.group(1) and "disabled or retired" in order.group(1)
    # Fixing the override clears its warning.
    assert me.post("/settings/overrides", overrides_form(("summarize", "ollama", "llama3.2"))).status_code == 200
    page = html(me.client.get("/settings"))
    assert 'id="overrides-warnings"' not in page


# -- quotes plan as the gateway does ---------------------------------------------------------------------------

def _api_key(client: FlaskClient, user: Any, **body: Any) -> dict[str, str]:
    resp = client.post("/api/user/api-keys", json={"name": "quote", **body}, headers=user.headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return {"Authorization": f"Bearer {resp.get_json()['secret']}"}


def test_a_quote_with_an_api_key_stays_within_its_allow_list_and_mode(client: FlaskClient, make_user: Any,
                                                                      settings_providers: SettingsProviders) -> None:
    user = make_user()
    client.put(f"/api/user/llm/keys/{settings_providers.ok}", json={"api_key": GOOD_KEY}, headers=user.headers)
    everything = client.post("/api/user/llm/quote", json={"prompt": "hello"}, headers=user.headers).get_json()
    assert {r["mode"] for r in everything["routes"]} == {"member", "byok"}
    key = _api_key(client, user, mode="member", allow=["ollama"])
    routes = client.post("/api/user/llm/quote", json={"prompt": "hello"}, headers=key).get_json()["routes"]
    assert routes and {(r["mode"], r["provider"]) for r in routes} == {("member", "ollama")}
    # A model the key may not call is refused as the gateway refuses it.
    resp = client.post("/api/user/llm/quote", json={"prompt": "hello", "model": "lmstudio/local-model"},
                       headers=key)
    assert_error_shape(resp, 403, "model_not_allowed")


def test_a_quote_for_a_model_prices_the_gateways_plan(client: FlaskClient, make_user: Any,
                                                      restore_catalog: psycopg.Connection) -> None:
    user = make_user()
    resp = client.post("/api/user/llm/quote", json={"prompt": "hello there", "max_tokens": 100,
                                                    "model": "ollama/llama3.2"}, headers=user.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    quote = resp.get_json()
    assert quote["model"] == "ollama/llama3.2"
    assert [(r["mode"], r["provider"], r["model"]) for r in quote["routes"]] == [("member", "ollama", "llama3.2")]
    # The gateway reserves for the prompt with its counting margin: a little more than the route's plain price.
    assert quote["reserve_credits_micro"] >= quote["routes"][0]["max_credits_micro"] > 0
    # A pin to a disabled provider is the gateway's error, naming it.
    restore_catalog.execute("update public.llm_providers set enabled = false where slug = 'ollama'")
    resp = client.post("/api/user/llm/quote", json={"prompt": "hi", "model": "ollama/llama3.2"},
                       headers=user.headers)
    err = assert_error_shape(resp, 404, "provider_disabled")
    assert "'ollama'" in err["message"] and resp.headers["X-Switchboard-Fallback"] == "ollama:disabled"
    err = assert_error_shape(client.post("/api/user/llm/quote", json={"prompt": "hi", "model": "bad model"},
                                         headers=user.headers), 422, "validation_error")
    assert "model" in err["fields"]


def test_switching_mode_redraws_what_is_offered_and_the_warnings(me: Session) -> None:
    assert me.post("/settings/overrides", overrides_form(("summarize", "ollama", "llama3.2"))).status_code == 200
    resp = me.post("/settings/mode", {"llm_mode": "byok"})
    assert resp.status_code == 200 and resp.headers["HX-Trigger"] == "mode-changed"
    # The overrides block (and the order) listen for it and fetch themselves again.
    page = html(me.client.get("/settings"))
    assert re.search(r'id="overrides" hx-get="/settings/overrides"\s+hx-trigger="[^"]*mode-changed from:body', page)
    text = assert_fragment(me.client.get("/settings/overrides", headers={"HX-Request": "true"}), "overrides")
    assert "Offered to you in BYOK mode: nothing (add a key first)." in text
    warnings = re.search(r'id="overrides-warnings"[^>]*>(.*?)</ul>', text, re.S)
    assert warnings and "summarize" in warnings.group(1) and "BYOK mode" in warnings.group(1)
    assert me.post("/settings/mode", {"llm_mode": "member"}).status_code == 200
    text = assert_fragment(me.client.get("/settings/overrides", headers={"HX-Request": "true"}), "overrides")
    assert 'id="overrides-warnings"' not in text and "Offered to you in member mode" in text


@pytest.mark.parametrize("field", ["model", "task"])
def test_a_quote_with_a_null_model_or_task_is_422(client: FlaskClient, make_user: Any, field: str) -> None:
    """null is not a model or a task: the document says string (schemathesis found `"task": null` accepted)."""
    resp = client.post("/api/user/llm/quote", json={"prompt": "hi", field: None}, headers=make_user().headers)
    assert resp.status_code == 422 and field in resp.get_json()["error"]["fields"]
