"""Providers: the /admin/providers panel (htmx fragments) and /api/admin/.../providers. Success, validation
failure (422 with the errors beside the fields / in error.fields), the audit row written with each change, and the
change reaching another worker on its next request (catalog_version, not a restart). Refusals of non-admins and
anonymous visitors for every route are in test_admin_guard.py."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import openai
import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.admin import HX, audit_rows, close_app, hx_post, temp_providers, web_sign_in
from tests.support.live import serve
from tests.support.upstreams import REPLY_WORDS, FakeUpstream, start_openai_upstream
from webapp import create_app
from webapp.config import Settings
from webapp.db import Database
from webapp.repos import credits as credits_repo


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(models=["adm-model"])
    yield up
    up.stop()


@pytest.fixture()
def prov(database_urls: tuple[str, str], upstream: FakeUpstream) -> Iterator[tuple[str, str]]:
    """(slug, id) of a fresh preset served by the fake upstream on loopback (no key needed: a local engine)."""
    with temp_providers(database_urls[0], ("adm-p", upstream.base_url)) as made:
        yield made[0]


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


@pytest.fixture()
def admin_web(client: FlaskClient, admin: Any) -> tuple[FlaskClient, str]:
    return client, web_sign_in(client, admin)


def provider_row(conn: psycopg.Connection, pid: str) -> dict[str, Any]:
    row = conn.execute("select row_to_json(p) from public.llm_providers p where id = %s", [pid]).fetchone()
    assert row is not None
    return dict(row[0])


# -- the panel ----------------------------------------------------------------------------------------------------

def test_providers_page_lists_every_preset_with_models_and_rates(admin_web: Any, prov: tuple[str, str],
                                                                 admin_conn: psycopg.Connection) -> None:
    client, _ = admin_web
    admin_conn.execute("update public.llm_providers set enabled = false where id = %s", [prov[1]])
    html = client.get("/admin/providers").get_data(as_text=True)
    assert 'id="providers"' in html and f'id="provider-{prov[1]}"' in html
    assert 'data-slug="openai"' in html and "https://api.openai.com/v1" in html and "gpt-4o-mini" in html
    assert f'aria-label="Adm {prov[0]} enabled"' in html and "is-disabled" in html, "disabled presets are listed"


def test_htmx_get_renders_only_the_providers_fragment(admin_web: Any) -> None:
    client, _ = admin_web
    resp = client.get("/admin/providers", headers=HX)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith('<table class="providers" id="providers">')
    assert "<html" not in html and "HX-Request" in resp.headers["Vary"]


def test_toggle_disables_provider_and_records_audit(admin_web: Any, prov: tuple[str, str], admin: Any,
                                                    admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    resp = hx_post(client, f"/admin/providers/{prov[1]}/enabled", token, {"enabled": "false"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert html.lstrip().startswith(f'<tbody id="provider-{prov[1]}"') and 'aria-checked="false"' in html
    assert 'id="flash" hx-swap-oob="innerHTML"' in html and "disabled" in html
    assert provider_row(admin_conn, prov[1])["enabled"] is False
    [entry] = audit_rows(admin_conn, f"provider:{prov[0]}")
    assert (entry["action"], entry["actor_id"]) == ("provider.disable", admin.id)
    assert (entry["before"], entry["after"]) == ({"enabled": True}, {"enabled": False})


@pytest.mark.parametrize("bad", ["0", "-1", "abc", "1000", "1.23456", "", "NaN", "Infinity"])
def test_invalid_multiplier_rerenders_row_with_error_beside_field(admin_web: Any, prov: tuple[str, str],
                                                                  admin_conn: psycopg.Connection, bad: str) -> None:
    client, token = admin_web
    resp = hx_post(client, f"/admin/providers/{prov[1]}/multiplier", token, {"multiplier": bad})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert f'id="multiplier-{prov[1]}-error"' in html and 'aria-invalid="true"' in html
    assert f'value="{bad}"' in html, "the typed value is kept for correction"
    assert provider_row(admin_conn, prov[1])["credit_multiplier"] == 1.0
    assert audit_rows(admin_conn, f"provider:{prov[0]}") == []


def test_multiplier_saved_inline(admin_web: Any, prov: tuple[str, str], admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    resp = hx_post(client, f"/admin/providers/{prov[1]}/multiplier", token, {"multiplier": "2.25"})
    assert resp.status_code == 200 and 'value="2.25"' in resp.get_data(as_text=True)
    assert provider_row(admin_conn, prov[1])["credit_multiplier"] == 2.25
    [entry] = audit_rows(admin_conn, f"provider:{prov[0]}")
    assert (entry["action"], entry["before"], entry["after"]) == (
        "provider.multiplier", {"credit_multiplier": "1"}, {"credit_multiplier": "2.25"})


def test_settings_form_saves_and_unchecked_boxes_mean_false(admin_web: Any, prov: tuple[str, str],
                                                            admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    resp = hx_post(client, f"/admin/providers/{prov[1]}/settings", token, {
        "name": "Renamed", "base_url": "http://127.0.0.1:9/v1/", "default_model": "adm-model",
        "api_style": "anthropic"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    row = provider_row(admin_conn, prov[1])
    assert (row["name"], row["base_url"], row["api_style"], row["byok_allowed"]) == (
        "Renamed", "http://127.0.0.1:9/v1", "anthropic", False)
    assert "<details open>" in resp.get_data(as_text=True), "the edited provider stays open"


def test_settings_form_errors_beside_fields(admin_web: Any, prov: tuple[str, str],
                                            admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    resp = hx_post(client, f"/admin/providers/{prov[1]}/settings", token, {
        "name": "", "base_url": "ftp://x", "default_model": "has space", "api_style": "soap"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    for field in ("name", "base_url", "default_model"):
        assert f'id="{field}-{prov[1]}-error"' in html
    assert 'value="ftp://x"' in html and "One of: openai, anthropic." in html
    assert provider_row(admin_conn, prov[1])["name"] == f"Adm {prov[0]}"


def test_model_rate_added_changed_and_removed(admin_web: Any, prov: tuple[str, str],
                                              admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    path = f"/admin/providers/{prov[1]}/rates"
    assert hx_post(client, path, token, {"model": "adm-new", "input_rate": "5", "output_rate": "7",
                                         "context_window": "1000"}).status_code == 200
    assert hx_post(client, path, token, {"model": "adm-new", "input_rate": "6", "output_rate": "8"}).status_code == 200
    rate = admin_conn.execute("select id::text, input_rate, output_rate, context_window from public.llm_model_rates"
                              " where provider_id = %s and model = 'adm-new'", [prov[1]]).fetchone()
    assert rate is not None and rate[1:] == (6, 8, 8192)
    bad = hx_post(client, path, token, {"model": "", "input_rate": "-1", "output_rate": "x"})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422 and f'id="rate-model-{prov[1]}-error"' in html
    assert f'id="rate-input_rate-{prov[1]}-error"' in html and f'id="rate-output_rate-{prov[1]}-error"' in html
    gone = hx_post(client, f"{path}/{rate[0]}/delete", token)
    assert gone.status_code == 200 and "adm-new" not in gone.get_data(as_text=True)
    actions = [e["action"] for e in audit_rows(admin_conn, f"provider:{prov[0]}")]
    assert actions == ["provider.rate", "provider.rate", "provider.rate_delete"]


def test_post_answers_with_its_fragment_even_without_htmx(admin_web: Any, prov: tuple[str, str]) -> None:
    client, token = admin_web
    resp = client.post(f"/admin/providers/{prov[1]}/multiplier", data={"multiplier": "1.5", "csrf_token": token})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith(f'<tbody id="provider-{prov[1]}"')


def test_unknown_provider_is_404_in_the_flash_area(admin_web: Any) -> None:
    client, token = admin_web
    resp = hx_post(client, "/admin/providers/00000000-0000-4000-8000-000000000000/multiplier", token,
                   {"multiplier": "2"})
    assert resp.status_code == 404 and resp.headers["HX-Retarget"] == "#flash"


# -- the JSON API -------------------------------------------------------------------------------------------------

def test_api_lists_providers_with_models_and_key_status(client: FlaskClient, admin: Any,
                                                        prov: tuple[str, str]) -> None:
    resp = client.get("/api/admin/llm/providers", headers=admin.headers)
    assert resp.status_code == 200
    by_slug = {p["slug"]: p for p in resp.get_json()["providers"]}
    mine = by_slug[prov[0]]
    assert mine["models"][0]["model"] == "adm-model" and mine["credit_multiplier"] == "1"
    assert mine["key_status"] == {"source": "local", "last4": None, "env_var": None, "member_ready": True}
    assert by_slug["openai"]["key_status"]["source"] == "missing"


def test_api_put_provider_updates_fields_and_replaces_models(client: FlaskClient, admin: Any, prov: tuple[str, str],
                                                             admin_conn: psycopg.Connection) -> None:
    body = {"name": "Via API", "credit_multiplier": 0.5, "byok_allowed": False, "sort_order": 5,
            "models": [{"model": "adm-a", "input_rate": 10, "output_rate": 20, "context_window": 4096},
                       {"model": "adm-b", "input_rate": 1, "output_rate": 2}]}
    resp = client.put(f"/api/admin/llm/providers/{prov[1]}", json=body, headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    p = resp.get_json()["provider"]
    assert (p["name"], p["credit_multiplier"], p["byok_allowed"], p["sort_order"]) == ("Via API", "0.5", False, 5)
    assert [m["model"] for m in p["models"]] == ["adm-a", "adm-b"]
    [entry] = audit_rows(admin_conn, f"provider:{prov[0]}")
    assert entry["action"] == "provider.update" and entry["before"]["models"][0]["model"] == "adm-model"
    assert set(entry["after"]) == {"name", "credit_multiplier", "byok_allowed", "sort_order", "models"}


def test_api_put_provider_validation_lists_every_field(client: FlaskClient, admin: Any, prov: tuple[str, str],
                                                       admin_conn: psycopg.Connection) -> None:
    body = {"name": "", "credit_multiplier": True, "api_style": "grpc", "enabled": "maybe", "slug": "x",
            "models": [{"model": "a"}, {"model": "a", "input_rate": 1, "output_rate": 1}]}
    resp = client.put(f"/api/admin/llm/providers/{prov[1]}", json=body, headers=admin.headers)
    assert resp.status_code == 422
    fields = resp.get_json()["error"]["fields"]
    assert set(fields) == {"name", "credit_multiplier", "api_style", "enabled", "slug", "models"}
    assert provider_row(admin_conn, prov[1])["name"] == f"Adm {prov[0]}"


def test_api_put_unknown_provider_is_404(client: FlaskClient, admin: Any) -> None:
    resp = client.put("/api/admin/llm/providers/00000000-0000-4000-8000-000000000000", json={"name": "x"},
                      headers=admin.headers)
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "provider_not_found"


def test_api_enable_and_multiplier_endpoints(client: FlaskClient, admin: Any, prov: tuple[str, str],
                                             admin_conn: psycopg.Connection) -> None:
    base = f"/api/admin/settings/providers/{prov[1]}"
    off = client.put(f"{base}/enable", json={"enabled": False}, headers=admin.headers)
    assert off.status_code == 200 and off.get_json()["provider"]["enabled"] is False
    mult = client.put(f"{base}/multiplier", json={"multiplier": "3.5"}, headers=admin.headers)
    assert mult.status_code == 200 and mult.get_json()["provider"]["credit_multiplier"] == "3.5"
    row = provider_row(admin_conn, prov[1])
    assert (row["enabled"], row["credit_multiplier"]) == (False, 3.5)
    assert [e["action"] for e in audit_rows(admin_conn, f"provider:{prov[0]}")] == [
        "provider.disable", "provider.multiplier"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("enable", {"enabled": "sometimes"}, "enabled"),
    ("enable", {}, "enabled"),
    ("multiplier", {"multiplier": 0}, "multiplier"),
    ("multiplier", {"multiplier": 100.5}, "multiplier"),
    ("multiplier", {"multiplier": "1e400"}, "multiplier"),
    ("multiplier", {"multiplier": None}, "multiplier"),
    ("multiplier", ["2"], "multiplier"),
])
def test_api_enable_and_multiplier_validation(client: FlaskClient, admin: Any, prov: tuple[str, str], path: str,
                                              body: Any, field: str) -> None:
    resp = client.put(f"/api/admin/settings/providers/{prov[1]}/{path}", json=body, headers=admin.headers)
    assert resp.status_code == 422
    error = resp.get_json()["error"]
    assert error["code"] == "validation_error" and field in error["fields"]


def test_multiplier_bounds_come_from_configuration(settings: Settings, admin: Any, prov: tuple[str, str]) -> None:
    app = create_app(settings.with_overrides(multiplier_min=0.5, multiplier_max=2.0))
    try:
        c = app.test_client()
        low = c.put(f"/api/admin/settings/providers/{prov[1]}/multiplier", json={"multiplier": 0.4},
                    headers=admin.headers)
        assert low.status_code == 422 and "between 0.5 and 2" in low.get_json()["error"]["fields"]["multiplier"]
        ok = c.put(f"/api/admin/settings/providers/{prov[1]}/multiplier", json={"multiplier": 2},
                   headers=admin.headers)
        assert ok.status_code == 200
        assert c.get("/api/admin/settings/providers", headers=admin.headers).get_json()["multiplier_bounds"] == {
            "min": 0.5, "max": 2.0}
    finally:
        close_app(app)


def test_settings_providers_shows_environment_keys_masked(settings: Settings, admin: Any) -> None:
    secret = "sk-env-key-never-shown-9z8y"
    app = create_app(settings.with_overrides(admin_env_keys={"openai": secret}))
    try:
        resp = app.test_client().get("/api/admin/settings/providers", headers=admin.headers)
    finally:
        close_app(app)
    openai_p = next(p for p in resp.get_json()["providers"] if p["slug"] == "openai")
    assert openai_p["key_status"] == {"source": "environment", "last4": "9z8y", "env_var": "OPENAI_API_KEY",
                                      "member_ready": True}
    assert openai_p["environment_key"]["source"] == "environment"
    assert secret not in resp.get_data(as_text=True)


# -- a change reaches every worker on its next request ------------------------------------------------------------

@pytest.fixture()
def two_workers(settings: Settings) -> Iterator[tuple[Flask, str]]:
    """Worker A (test client, the admin's) and worker B (served on loopback, the member's): separate apps, pools
    and catalog caches sharing one database, as gunicorn workers do."""
    a, b = create_app(settings), create_app(settings)
    with serve(b) as url:
        yield a, url
    for app in (a, b):
        close_app(app)


def test_admin_change_reaches_another_worker_on_next_request(two_workers: tuple[Flask, str], admin: Any,
                                                             make_user: Any, prov: tuple[str, str], db: Database,
                                                             upstream: FakeUpstream,
                                                             request: pytest.FixtureRequest) -> None:
    worker_a, url_b = two_workers
    member = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, member.id, 50_000_000, "test grant", None)
    sdk = openai.OpenAI(base_url=url_b + "/v1", api_key=member.token, max_retries=0, timeout=10)
    request.addfinalizer(sdk.close)  # its pooled socket is closed when the test ends, not by the collector
    model = f"{prov[0]}/adm-model"

    def models() -> set[str]:
        return {m.id for m in sdk.models.list().data}

    def charged() -> tuple[str, str]:
        raw = sdk.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": "one two three"}])
        return raw.headers["x-switchboard-multiplier"], raw.headers["x-switchboard-credits"]

    assert model in models()  # worker B has now cached the catalog
    assert charged() == ("1", f"{(3 * 1000 + REPLY_WORDS * 2000) / 1e6:.6f}")
    admin_api = worker_a.test_client()

    resp = admin_api.put(f"/api/admin/settings/providers/{prov[1]}/multiplier", json={"multiplier": "2.5"},
                         headers=admin.headers)
    assert resp.status_code == 200
    assert charged() == ("2.5", f"{Decimal(3 * 1000 + REPLY_WORDS * 2000) * Decimal('2.5') / 1000000:.6f}")

    assert admin_api.put(f"/api/admin/settings/providers/{prov[1]}/enable", json={"enabled": False},
                         headers=admin.headers).status_code == 200
    assert model not in models()
    assert admin_api.put(f"/api/admin/settings/providers/{prov[1]}/enable", json={"enabled": True},
                         headers=admin.headers).status_code == 200
    assert model in models()


# -- money settings: each model's maximum output, free for BYOK --------------------------------------------------

def test_panel_sets_max_output_and_free_for_byok(client: FlaskClient, admin: Any, prov: tuple[str, str],
                                                 admin_conn: psycopg.Connection) -> None:
    token = web_sign_in(client, admin)
    resp = hx_post(client, f"/admin/providers/{prov[1]}/rates", token,
                   {"model": "adm-model", "input_rate": "5", "output_rate": "7", "max_output_tokens": "321"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "321" in resp.get_data(as_text=True)
    row = admin_conn.execute("select max_output_tokens from public.llm_model_rates where provider_id = %s"
                             " and model = 'adm-model'", [prov[1]]).fetchone()
    assert row == (321,)
    bad = hx_post(client, f"/admin/providers/{prov[1]}/rates", token,
                  {"model": "adm-model", "input_rate": "5", "output_rate": "7", "max_output_tokens": "0"})
    assert bad.status_code == 422 and f'id="rate-max_output_tokens-{prov[1]}-error"' in bad.get_data(as_text=True)
    form = {"name": "Keyless", "base_url": "http://127.0.0.1:9/v1", "default_model": "adm-model",
            "api_style": "openai", "byok_allowed": "true"}
    assert hx_post(client, f"/admin/providers/{prov[1]}/settings", token, form).status_code == 200
    free = admin_conn.execute("select free_for_byok from public.llm_providers where id = %s", [prov[1]]).fetchone()
    assert free == (False,)  # an unchecked box is false
    assert hx_post(client, f"/admin/providers/{prov[1]}/settings", token,
                   {**form, "free_for_byok": "true"}).status_code == 200
    free = admin_conn.execute("select free_for_byok from public.llm_providers where id = %s", [prov[1]]).fetchone()
    assert free == (True,)


def test_api_sets_max_output_and_refuses_out_of_range(client: FlaskClient, admin: Any,
                                                      prov: tuple[str, str]) -> None:
    body = {"free_for_byok": False,
            "models": [{"model": "adm-model", "input_rate": 1, "output_rate": 2, "max_output_tokens": 64}]}
    resp = client.put(f"/api/admin/llm/providers/{prov[1]}", json=body, headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    p = resp.get_json()["provider"]
    assert p["free_for_byok"] is False and p["models"][0]["max_output_tokens"] == 64
    for bad in (0, -1, 10_000_001, "x", 1.5):
        body["models"][0]["max_output_tokens"] = bad
        resp = client.put(f"/api/admin/llm/providers/{prov[1]}", json=body, headers=admin.headers)
        assert resp.status_code == 422, (bad, resp.get_data(as_text=True))


def test_the_model_maximum_bounds_what_is_written_upstream(client: FlaskClient, admin: Any, make_user: Any,
                                                           db: Any, prov: tuple[str, str],
                                                           upstream: FakeUpstream) -> None:
    resp = client.put(f"/api/admin/llm/providers/{prov[1]}", headers=admin.headers, json={
        "models": [{"model": "adm-model", "input_rate": 1, "output_rate": 2, "max_output_tokens": 7}]})
    assert resp.status_code == 200
    member = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, member.id, 10_000_000, "test", None)
    for limit in (None, 100_000):  # no limit, and a client limit above the model's maximum
        body: dict[str, Any] = {"model": f"{prov[0]}/adm-model", "messages": [{"role": "user", "content": "hi"}]}
        if limit:
            body["max_tokens"] = limit
        resp = client.post("/v1/chat/completions", json=body, headers=member.headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert resp.headers["X-Switchboard-Output-Limit"] == "7"
        sent = upstream.chat_requests()[-1].body
        assert sent["max_tokens"] == sent["max_completion_tokens"] == 7
        assert resp.get_json()["usage"]["completion_tokens"] == 7
