"""Providers the admin fully owns, through /api/admin/llm/providers: create (every field validated, hostile values
never a 500), edit with PATCH, fetch a real model list from a loopback upstream, add and bulk-edit models, retire
(archive with history, delete without), and the audit row of each change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.admin import audit_rows, insert_log
from tests.support.upstreams import FakeUpstream, start_anthropic_upstream, start_openai_upstream

P = "/api/admin/llm/providers"


@pytest.fixture(scope="module")
def oa_up() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(api_key="sk-crud-openai-key-1234", models=["crud-a", "crud-b", "bad id", "x" * 300])
    yield up
    up.stop()


@pytest.fixture(scope="module")
def an_up() -> Iterator[FakeUpstream]:
    up = start_anthropic_upstream(api_key="sk-ant-crud-key-5678", models=["claude-crud-1", "claude-crud-2"])
    yield up
    up.stop()


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


def slug() -> str:
    return f"crud-{uuid.uuid4().hex[:8]}"


def create(client: FlaskClient, admin: Any, **fields: Any) -> Any:
    body = {"slug": slug(), "name": "Crud Co", "api_style": "openai", "base_url": "http://127.0.0.1:9/v1", **fields}
    return client.post(P, json=body, headers=admin.headers)


def errors_of(resp: Any) -> dict[str, str]:
    assert resp.status_code == 422, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["error"]["code"] == "validation_error"
    return dict(body["error"]["fields"])


# -- create -------------------------------------------------------------------------------------------------------

def test_create_provider_with_every_field_and_audit(client: FlaskClient, admin: Any,
                                                    admin_conn: psycopg.Connection) -> None:
    s = slug()
    resp = client.post(P, json={
        "slug": s, "name": "OpenRouter (test)", "api_style": "openai", "base_url": "HTTP://10.1.2.3:8080/api/v1/",
        "credit_multiplier": "1.25", "needs_key": True, "byok_allowed": False, "custom_base_url_allowed": True,
        "free_for_byok": False, "enabled": True, "sort_order": 5,
        "extra_headers": [{"name": "HTTP-Referer", "value": "https://switchboard.example"},
                          {"name": "X-Title", "value": "Switchboard"}]}, headers=admin.headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    p = resp.get_json()["provider"]
    assert p["slug"] == s and p["base_url"] == "http://10.1.2.3:8080/api/v1"  # private address: the operator may
    assert p["credit_multiplier"] == "1.25" and p["byok_allowed"] is False and p["custom_base_url_allowed"] is True
    assert p["extra_headers"] == [{"name": "HTTP-Referer", "value": "https://switchboard.example"},
                                  {"name": "X-Title", "value": "Switchboard"}]
    assert p["models"] == [] and p["default_model"] == "" and p["archived"] is False
    rows = audit_rows(admin_conn, f"provider:{s}")
    assert [r["action"] for r in rows] == ["provider.create"]
    assert rows[0]["before"] is None and rows[0]["after"]["name"] == "OpenRouter (test)"
    listed = client.get(P, headers=admin.headers).get_json()["providers"]
    assert s in [x["slug"] for x in listed]


def test_create_refuses_a_taken_slug(client: FlaskClient, admin: Any) -> None:
    resp = create(client, admin, slug="openai")
    assert "taken" in errors_of(resp)["slug"]


HOSTILE: list[tuple[str, Any]] = [
    ("slug", "UPPER"), ("slug", "a/b"), ("slug", "-lead"), ("slug", "x" * 41), ("slug", "ünï"), ("slug", 7),
    ("slug", None), ("slug", "a\x00b"), ("slug", ["a"]), ("slug", "under_score"),
    ("name", ""), ("name", "n" * 81), ("name", "a\x00b"), ("name", {"x": 1}), ("name", "\u202e"),
    ("api_style", "grpc"), ("api_style", None), ("api_style", 1),
    ("base_url", "ftp://x"), ("base_url", "javascript:alert(1)"), ("base_url", "http://"), ("base_url", "http://[::1"),
    ("base_url", "http://u:p@host/v1"), ("base_url", "http://host:99999"), ("base_url", "http://h/\x00"),
    ("base_url", "http://h/" + "a" * 600), ("base_url", 5),
    ("credit_multiplier", "0"), ("credit_multiplier", "-1"), ("credit_multiplier", "NaN"),
    ("credit_multiplier", "Infinity"), ("credit_multiplier", "1e309"), ("credit_multiplier", True),
    ("credit_multiplier", "1.00001"), ("credit_multiplier", "x"),
    ("needs_key", "maybe"), ("byok_allowed", 2), ("custom_base_url_allowed", []), ("free_for_byok", "yes please"),
    ("enabled", None), ("sort_order", -1), ("sort_order", "1e3"), ("sort_order", 10**20),
    ("default_model", "has space"), ("default_model", "m" * 201),
    ("extra_headers", [{"name": "Authorization", "value": "Bearer x"}]),
    ("extra_headers", [{"name": "x-api-key", "value": "k"}]), ("extra_headers", [{"name": "Host", "value": "h"}]),
    ("extra_headers", [{"name": "Content-Length", "value": "1"}]),
    ("extra_headers", [{"name": "Connection", "value": "close"}]),
    ("extra_headers", [{"name": "Proxy-Foo", "value": "1"}]),
    ("extra_headers", [{"name": "Bad Name", "value": "v"}]), ("extra_headers", [{"name": "X-A", "value": "a\r\nB: c"}]),
    ("extra_headers", [{"name": "X-A", "value": "é"}]), ("extra_headers", [{"name": "X-A", "value": "v" * 501}]),
    ("extra_headers", [{"name": "X-A", "value": ""}]),
    ("extra_headers", [{"name": f"X-{i}", "value": "v"} for i in range(11)]),
    ("extra_headers", [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]),
    ("extra_headers", "no colon here"), ("extra_headers", 12), ("extra_headers", [["X-A"]]),
    ("extra_headers", [{"name": "X-A", "value": 1}]), ("extra_headers", [{"nom": "X"}]),
    ("models", [{"model": "m", "input_rate": 1, "output_rate": 1}]), ("color", "blue"),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE)])
def test_create_refuses_hostile_values_beside_the_field(client: FlaskClient, admin: Any, field: str,
                                                        value: Any) -> None:
    resp = create(client, admin, **{field: value})
    assert field in errors_of(resp)


def test_create_requires_name_style_and_url_and_a_json_object(client: FlaskClient, admin: Any) -> None:
    fields = errors_of(client.post(P, json={"slug": slug()}, headers=admin.headers))
    assert {"name", "api_style", "base_url"} <= set(fields)
    for body in ([], "text", 5, None):
        resp = client.post(P, json=body, headers=admin.headers)
        assert resp.status_code == 422
    resp = client.post(P, data="{not json", headers={**admin.headers, "Content-Type": "application/json"})
    assert resp.status_code in (400, 422)


def test_a_member_cannot_create_edit_or_retire(client: FlaskClient, make_user: Any) -> None:
    member = make_user()
    assert client.post(P, json={"slug": slug()}, headers=member.headers).status_code == 403
    pid = str(uuid.uuid4())
    assert client.patch(f"{P}/{pid}", json={"name": "x"}, headers=member.headers).status_code == 403
    assert client.delete(f"{P}/{pid}", headers=member.headers).status_code == 403
    assert client.post(f"{P}/{pid}/models/fetch", headers=member.headers).status_code == 403


# -- edit ---------------------------------------------------------------------------------------------------------

def test_patch_edits_every_field_audited(client: FlaskClient, admin: Any, admin_conn: psycopg.Connection) -> None:
    p = create(client, admin).get_json()["provider"]
    changes = {"name": "Renamed", "api_style": "anthropic", "base_url": "https://api.example.test/v1",
               "credit_multiplier": "2", "needs_key": False, "byok_allowed": False, "custom_base_url_allowed": True,
               "free_for_byok": True, "enabled": False, "sort_order": 7, "default_model": "some-model",
               "extra_headers": "api-version: 2024-10-21\nX-Title: Switchboard"}
    resp = client.patch(f"{P}/{p['id']}", json=changes, headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    after = resp.get_json()["provider"]
    assert after["name"] == "Renamed" and after["api_style"] == "anthropic" and after["needs_key"] is False
    assert after["extra_headers"] == [{"name": "api-version", "value": "2024-10-21"},
                                      {"name": "X-Title", "value": "Switchboard"}]
    assert after["enabled"] is False and after["free_for_byok"] is True and after["default_model"] == "some-model"
    row = audit_rows(admin_conn, f"provider:{p['slug']}")[-1]
    assert row["action"] == "provider.update"
    assert set(row["after"]) >= {"name", "api_style", "needs_key", "extra_headers", "enabled"}
    assert row["before"]["name"] == "Crud Co"
    bad = client.patch(f"{P}/{p['id']}", json={"slug": "new-slug"}, headers=admin.headers)
    assert "slug" in errors_of(bad)  # the slug names the provider in every log row: it never changes


# -- fetch models, add, bulk edit -----------------------------------------------------------------------------------

def add_key(client: FlaskClient, admin: Any, pid: str, key: str) -> None:
    resp = client.post(f"{P}/{pid}/keys", json={"api_key": key}, headers=admin.headers)
    assert resp.status_code == 201, resp.get_data(as_text=True)


def test_fetch_models_from_the_openai_style_list_with_the_admin_key_and_headers(
        client: FlaskClient, admin: Any, oa_up: FakeUpstream) -> None:
    p = create(client, admin, base_url=oa_up.base_url,
               extra_headers=[{"name": "X-Title", "value": "Switchboard"}]).get_json()["provider"]
    missing = client.post(f"{P}/{p['id']}/models/fetch", headers=admin.headers)
    assert "fetch" in errors_of(missing)  # needs a key, none stored yet
    add_key(client, admin, p["id"], "sk-crud-openai-key-1234")
    assert oa_up.last_request.headers["x-title"] == "Switchboard"  # the key test carries the headers too
    oa_up.requests.clear()
    resp = client.post(f"{P}/{p['id']}/models/fetch", headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["models"] == [{"id": "crud-a", "offered": False}, {"id": "crud-b", "offered": False}]
    assert body["skipped"] == 2  # "bad id" and the 300-character id
    listing = oa_up.last_request
    assert listing.path == "/v1/models" and listing.headers["authorization"] == "Bearer sk-crud-openai-key-1234"
    assert listing.headers["x-title"] == "Switchboard"
    added = client.post(f"{P}/{p['id']}/models", json={"models": ["crud-a", "crud-b"], "input_rate": 150,
                                                       "output_rate": 600, "cached_input_rate": 75},
                        headers=admin.headers)
    assert added.status_code == 200, added.get_data(as_text=True)
    prov = added.get_json()["provider"]
    assert prov["default_model"] == "crud-a"
    assert [(m["model"], m["input_rate"], m["cached_input_rate"], m["input_per_million"]) for m in prov["models"]] \
        == [("crud-a", 150, 75, "0.15"), ("crud-b", 150, 75, "0.15")]
    again = client.post(f"{P}/{p['id']}/models/fetch", headers=admin.headers).get_json()
    assert all(m["offered"] for m in again["models"])


def test_fetch_models_from_anthropic_with_version_header(client: FlaskClient, admin: Any,
                                                         an_up: FakeUpstream) -> None:
    p = create(client, admin, api_style="anthropic", base_url=an_up.base_url).get_json()["provider"]
    add_key(client, admin, p["id"], "sk-ant-crud-key-5678")
    resp = client.post(f"{P}/{p['id']}/models/fetch", headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert [m["id"] for m in resp.get_json()["models"]] == ["claude-crud-1", "claude-crud-2"]
    req = an_up.last_request
    assert req.path == "/v1/models" and req.headers["x-api-key"] == "sk-ant-crud-key-5678"
    assert req.headers["anthropic-version"]


def test_fetch_models_failure_is_a_502_without_the_key(client: FlaskClient, admin: Any,
                                                       oa_up: FakeUpstream) -> None:
    p = create(client, admin, base_url=oa_up.base_url).get_json()["provider"]
    add_key(client, admin, p["id"], "sk-wrong-key-abcdef-999")
    resp = client.post(f"{P}/{p['id']}/models/fetch", headers=admin.headers)
    assert resp.status_code == 502
    text = resp.get_data(as_text=True)
    assert resp.get_json()["error"]["code"] == "model_list_failed" and "sk-wrong" not in text


def test_bulk_edit_sets_one_field_of_selected_models_audited(client: FlaskClient, admin: Any,
                                                             admin_conn: psycopg.Connection) -> None:
    p = create(client, admin, needs_key=False).get_json()["provider"]
    prov = client.post(f"{P}/{p['id']}/models", json={"models": ["m-1", "m-2", "m-3"], "input_rate": 10,
                                                      "output_rate": 20}, headers=admin.headers).get_json()["provider"]
    ids = {m["model"]: m["id"] for m in prov["models"]}
    resp = client.patch(f"{P}/{p['id']}/models", json={"rate_ids": [ids["m-1"], ids["m-2"]], "field": "output_rate",
                                                       "value": 999}, headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    rates = {m["model"]: m for m in resp.get_json()["provider"]["models"]}
    assert (rates["m-1"]["output_rate"], rates["m-2"]["output_rate"], rates["m-3"]["output_rate"]) == (999, 999, 20)
    off = client.patch(f"{P}/{p['id']}/models", json={"rate_ids": [ids["m-3"]], "field": "enabled", "value": False},
                       headers=admin.headers).get_json()["provider"]
    assert {m["model"]: m["enabled"] for m in off["models"]} == {"m-1": True, "m-2": True, "m-3": False}
    row = audit_rows(admin_conn, f"provider:{p['slug']}")[-1]
    assert row["action"] == "provider.models_bulk" and row["after"] == {"m-3": False}
    for bad in ({"rate_ids": [], "field": "input_rate", "value": 1},
                {"rate_ids": [ids["m-1"]], "field": "slug", "value": 1},
                {"rate_ids": [ids["m-1"]], "field": "input_rate", "value": -1},
                {"rate_ids": [ids["m-1"]], "field": "input_rate", "value": "1e3"},
                {"rate_ids": ["not-a-uuid"], "field": "input_rate", "value": 1},
                {"rate_ids": [str(uuid.uuid4())], "field": "input_rate", "value": 1},
                {"rate_ids": [ids["m-1"]], "field": "enabled", "value": "perhaps"}):
        assert client.patch(f"{P}/{p['id']}/models", json=bad, headers=admin.headers).status_code == 422, bad


def test_add_models_refuses_hostile_input(client: FlaskClient, admin: Any) -> None:
    p = create(client, admin, needs_key=False).get_json()["provider"]
    for bad in ({"models": [], "input_rate": 1, "output_rate": 1}, {"models": ["a b"], "input_rate": 1,
                                                                    "output_rate": 1},
                {"models": ["ok"], "input_rate": -1, "output_rate": 1}, {"models": ["ok"], "output_rate": 1},
                {"models": ["ok"], "input_rate": 1, "output_rate": 1, "cached_input_rate": "x"},
                {"models": [1], "input_rate": 1, "output_rate": 1}, {"models": ["m"] * 2001},
                {"models": ["ok"], "input_rate": 1, "output_rate": 1, "context_window": 0}, "nope"):
        resp = client.post(f"{P}/{p['id']}/models", json=bad, headers=admin.headers)
        assert resp.status_code == 422, (bad, resp.get_data(as_text=True))


# -- retire -------------------------------------------------------------------------------------------------------

def test_retire_without_history_deletes_audited(client: FlaskClient, admin: Any,
                                                admin_conn: psycopg.Connection) -> None:
    p = create(client, admin).get_json()["provider"]
    resp = client.delete(f"{P}/{p['id']}", headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["retired"] == {"slug": p["slug"], "name": "Crud Co", "archived": False,
                                          "users_notified": 0}
    assert admin_conn.execute("select 1 from public.llm_providers where id = %s", [p["id"]]).fetchone() is None
    row = audit_rows(admin_conn, f"provider:{p['slug']}")[-1]
    assert row["action"] == "provider.delete" and row["before"]["name"] == "Crud Co"
    assert client.delete(f"{P}/{p['id']}", headers=admin.headers).status_code == 404


def test_retire_with_history_archives_and_cleans_users_routing(client: FlaskClient, admin: Any, make_user: Any,
                                                               admin_conn: psycopg.Connection) -> None:
    p = create(client, admin, needs_key=False).get_json()["provider"]
    s = p["slug"]
    user = make_user()
    admin_conn.execute(
        """update public.user_preferences set default_provider = %s, provider_priorities = array['openai', %s],
               task_overrides = jsonb_build_object('summarize', jsonb_build_object('provider', %s::text, 'model', 'm'),
                                                   'code', jsonb_build_object('provider', 'openai', 'model', 'x'))
           where user_id = %s""", [s, s, s, user.id])
    insert_log(admin_conn, user.id, s)
    resp = client.delete(f"{P}/{p['id']}", headers=admin.headers)
    assert resp.status_code == 200
    assert resp.get_json()["retired"]["archived"] is True and resp.get_json()["retired"]["users_notified"] == 1
    row = admin_conn.execute("select enabled, archived_at is not null from public.llm_providers where id = %s",
                             [p["id"]]).fetchone()
    assert row == (False, True)
    prefs = admin_conn.execute("select default_provider, provider_priorities, task_overrides"
                               " from public.user_preferences where user_id = %s", [user.id]).fetchone()
    assert prefs == (None, ["openai"], {"code": {"provider": "openai", "model": "x"}})
    notes = admin_conn.execute("select kind, message from public.user_notices where user_id = %s",
                               [user.id]).fetchall()
    assert len(notes) == 1 and notes[0][0] == "provider.retired"
    assert "Crud Co was retired" in notes[0][1] and "task override summarize was removed" in notes[0][1]
    assert audit_rows(admin_conn, f"provider:{s}")[-1]["action"] == "provider.archive"
    # Archived: frozen, and the user's own reads no longer see it; the admin list still does.
    again = client.patch(f"{P}/{p['id']}", json={"enabled": True}, headers=admin.headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "provider_archived"
    assert client.delete(f"{P}/{p['id']}", headers=admin.headers).status_code == 409
    listed = {x["slug"]: x for x in client.get(P, headers=admin.headers).get_json()["providers"]}
    assert listed[s]["archived"] is True
    pricing = client.get("/api/pricing/providers").get_json()
    assert s not in str(pricing)
    assert create(client, admin, slug=s).status_code == 422  # its slug stays taken: logs name it


# -- effective on the next request in another worker ----------------------------------------------------------------

def test_create_disable_model_and_retire_reach_another_worker(settings: Any, admin: Any, make_user: Any,
                                                               oa_up: FakeUpstream) -> None:
    """Worker A (the admin's) and worker B (the member's): separate apps and catalog caches on one database. B
    has cached its catalog before each change and sees the change on its very next request."""
    from webapp import create_app
    from webapp.repos import credits as credits_repo

    a, b = create_app(settings), create_app(settings)
    try:
        member = make_user()
        with b.extensions["switchboard"].db.as_service() as conn:
            credits_repo.adjust(conn, member.id, 10_000_000, "test grant", None)
        admin_api, member_api = a.test_client(), b.test_client()

        def listed() -> set[str]:
            resp = member_api.get("/v1/models", headers=member.headers)
            assert resp.status_code == 200
            return {m["id"] for m in resp.get_json()["data"]}

        before = listed()  # B caches the catalog now
        p = create(admin_api, admin, base_url=oa_up.base_url, needs_key=False).get_json()["provider"]
        prov = admin_api.post(f"{P}/{p['id']}/models", json={"models": ["w-1", "w-2"], "input_rate": 1,
                                                             "output_rate": 1},
                              headers=admin.headers).get_json()["provider"]
        assert listed() - before == {f"{p['slug']}/w-1", f"{p['slug']}/w-2"}
        w2 = next(m["id"] for m in prov["models"] if m["model"] == "w-2")
        admin_api.patch(f"{P}/{p['id']}/models", json={"rate_ids": [w2], "field": "enabled", "value": False},
                        headers=admin.headers)
        assert listed() - before == {f"{p['slug']}/w-1"}  # a disabled model is not offered
        oa_up.requests.clear()
        refused = member_api.post("/v1/chat/completions", headers=member.headers, json={
            "model": f"{p['slug']}/w-2", "messages": [{"role": "user", "content": "hi"}]})
        assert 400 <= refused.status_code < 500 and oa_up.chat_requests() == []  # nor routed
        assert admin_api.delete(f"{P}/{p['id']}", headers=admin.headers).status_code == 200
        assert listed() == before
    finally:
        for app in (a, b):
            app.extensions["switchboard"].logs.flush()
            app.extensions["switchboard"].db.close()
