"""A provider's whole life, on real servers: an admin creates it over HTTP, adds its key, fetches its models from
the upstream's real /models endpoint and offers two; a member calls it through /v1 with the official openai SDK
(the admin's extra headers reach the upstream); the admin retires it; /v1/models, the member's settings (routing
cleaned, a notice saying why) and the request logs (which keep its name) reflect it. A second provider without
history is deleted outright."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import openai
import psycopg
import pytest
import requests

from tests.e2e.conftest import Gateway, log_row
from tests.support.admin import audit_rows, web_sign_in
from tests.support.upstreams import FakeUpstream, start_openai_upstream

SECRET = "sk-lifecycle-admin-key-9c8b7a6d5e"
HEADERS = [{"name": "HTTP-Referer", "value": "https://switchboard.example"},
           {"name": "X-Title", "value": "Switchboard lifecycle"}]


@pytest.fixture(scope="module")
def vendor() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(api_key=SECRET, models=["life-small", "life-large", "life-extra"])
    yield up
    up.stop()


def api(gw: Gateway, admin: Any, method: str, path: str, json: Any = None) -> Any:
    resp = requests.request(method, gw.url + "/api/admin/llm/providers" + path, json=json, headers=admin.headers,
                            timeout=30)
    assert resp.status_code < 300, (method, path, resp.status_code, resp.text)
    return resp.json()


def v1_models(gw: Gateway, token: str) -> set[str]:
    return {m.id for m in gw.client(token).models.list()}


def test_create_fetch_call_retire(gw: Gateway, vendor: FakeUpstream, make_user: Any, member: Any,
                                  admin_conn: psycopg.Connection) -> None:
    admin = make_user(admin=True)
    slug = f"life-{uuid.uuid4().hex[:6]}"
    # 1. Create, add the key, fetch the model list from the upstream, offer two of the three.
    p = api(gw, admin, "POST", "", {"slug": slug, "name": "Lifecycle AI", "api_style": "openai",
                                    "base_url": vendor.base_url, "credit_multiplier": "1.5",
                                    "extra_headers": HEADERS})["provider"]
    api(gw, admin, "POST", f"/{p['id']}/keys", {"api_key": SECRET})
    fetched = api(gw, admin, "POST", f"/{p['id']}/models/fetch")
    assert [m["id"] for m in fetched["models"]] == ["life-extra", "life-large", "life-small"]
    assert vendor.last_request.path == "/v1/models" and vendor.last_request.headers["x-title"] == HEADERS[1]["value"]
    api(gw, admin, "POST", f"/{p['id']}/models", {"models": ["life-small", "life-large"], "input_rate": 1000,
                                                  "output_rate": 2000, "context_window": 32000})
    assert {f"{slug}/life-small", f"{slug}/life-large"} <= v1_models(gw, member.token)
    assert f"{slug}/life-extra" not in v1_models(gw, member.token)

    # 2. The member routes a task to it and names it first, then calls it through the SDK.
    settings = requests.put(gw.url + "/api/user/settings", headers=member.headers, timeout=30, json={
        "provider_priorities": [slug, "e2e-oa"],
        "task_overrides": {"summarize": {"provider": slug, "model": "life-small"},
                           "chat": {"provider": "e2e-oa", "model": "echo-1"}}})
    assert settings.status_code == 200, settings.text
    vendor.requests.clear()
    answer = gw.client(member.token).chat.completions.with_raw_response.create(
        model=f"{slug}/life-small", messages=[{"role": "user", "content": "hello lifecycle"}], max_tokens=20)
    completion = answer.parse()
    assert completion.choices[0].message.content
    request_id = answer.headers["x-request-id"]
    chat = vendor.chat_requests()[-1]
    assert chat.headers["authorization"] == f"Bearer {SECRET}"
    assert chat.headers["http-referer"] == HEADERS[0]["value"] and chat.headers["x-title"] == HEADERS[1]["value"]
    gw.flush_logs()
    assert log_row(gw.app.extensions["switchboard"].db, request_id)["provider"] == slug

    # 3. Retire it: archived (it has history), gone from /v1/models, refused by the router, the member told.
    retired = api(gw, admin, "DELETE", f"/{p['id']}")["retired"]
    assert retired == {"slug": slug, "name": "Lifecycle AI", "archived": True, "users_notified": 1}
    assert not {m for m in v1_models(gw, member.token) if m.startswith(slug + "/")}
    vendor.requests.clear()
    with pytest.raises(openai.APIStatusError):
        gw.client(member.token).chat.completions.create(model=f"{slug}/life-small",
                                                        messages=[{"role": "user", "content": "again"}])
    assert vendor.chat_requests() == []
    prefs = requests.get(gw.url + "/api/user/settings", headers=member.headers, timeout=30).json()
    prefs = prefs.get("settings", prefs)
    assert slug not in prefs["provider_priorities"] and "summarize" not in prefs["task_overrides"]
    assert prefs["task_overrides"]["chat"] == {"provider": "e2e-oa", "model": "echo-1"}
    web = gw.app.test_client()
    web_sign_in(web, member)
    page = web.get("/settings").get_data(as_text=True)
    assert ("Provider Lifecycle AI was retired by an admin; it was removed from your provider order; "
            "your task override summarize was removed.") in page

    # 4. The logs and the receipt keep its name; the audit holds create, key, models and archive.
    logs = requests.get(gw.url + "/api/admin/logs", params={"provider": slug}, headers=admin.headers, timeout=30)
    assert logs.status_code == 200 and [e["provider"] for e in logs.json()["logs"]] == [slug]
    receipt = requests.get(gw.url + f"/api/admin/logs/{request_id}", headers=admin.headers, timeout=30).json()
    assert receipt["log"]["provider"] == slug
    actions = [r["action"] for r in audit_rows(admin_conn, f"provider:{slug}")]
    assert actions == ["provider.create", "key.add", "provider.models_add", "provider.archive"]
    assert SECRET not in gw.log_text.getvalue()


def test_provider_without_history_is_deleted(gw: Gateway, vendor: FakeUpstream, make_user: Any,
                                             admin_conn: psycopg.Connection) -> None:
    admin = make_user(admin=True)
    slug = f"gone-{uuid.uuid4().hex[:6]}"
    p = api(gw, admin, "POST", "", {"slug": slug, "name": "Short Lived", "api_style": "openai",
                                    "base_url": vendor.base_url, "needs_key": False})["provider"]
    api(gw, admin, "POST", f"/{p['id']}/models", {"models": ["life-small"], "input_rate": 1, "output_rate": 1})
    retired = api(gw, admin, "DELETE", f"/{p['id']}")["retired"]
    assert retired["archived"] is False
    assert admin_conn.execute("select count(*) from public.llm_providers where slug = %s", [slug]).fetchone() == (0,)
    assert admin_conn.execute("select count(*) from public.llm_model_rates where provider_id = %s",
                              [p["id"]]).fetchone() == (0,)
    assert [r["action"] for r in audit_rows(admin_conn, f"provider:{slug}")] == [
        "provider.create", "provider.models_add", "provider.delete"]
