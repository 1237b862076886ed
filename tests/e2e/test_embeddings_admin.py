"""The admin side of issue 15's two columns: a model's kind (chat / embedding) and a provider's Responses API flag,
set from the providers panel and the admin JSON API, and what they change for /v1/embeddings and /v1/responses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.admin import hx_post, temp_providers, web_sign_in
from tests.support.upstreams import FakeUpstream, start_openai_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(models=["adm-model"])
    yield up
    up.stop()


@pytest.fixture()
def prov(database_urls: tuple[str, str], upstream: FakeUpstream) -> Iterator[tuple[str, str]]:
    with temp_providers(database_urls[0], ("emb-p", upstream.base_url)) as made:
        yield made[0]


@pytest.fixture()
def admin_web(client: FlaskClient, make_user: Any) -> tuple[FlaskClient, str, Any]:
    admin = make_user(admin=True)
    return client, web_sign_in(client, admin), admin


def test_panel_sets_a_models_kind_and_the_responses_flag(admin_web: Any, prov: tuple[str, str],
                                                         admin_conn: psycopg.Connection) -> None:
    client, token, _ = admin_web
    path = f"/admin/providers/{prov[1]}/rates"
    resp = hx_post(client, path, token, {"model": "emb-x", "input_rate": "20", "output_rate": "0",
                                         "kind": "embedding"})
    assert resp.status_code == 200 and "<td>embedding</td>" in resp.get_data(as_text=True)
    kind = admin_conn.execute("select kind from public.llm_model_rates where provider_id = %s and model = 'emb-x'",
                              [prov[1]]).fetchone()
    assert kind == ("embedding",)
    bad = hx_post(client, path, token, {"model": "emb-y", "input_rate": "1", "output_rate": "1", "kind": "audio"})
    assert bad.status_code == 422 and f'id="rate-kind-{prov[1]}-error"' in bad.get_data(as_text=True)
    resp = hx_post(client, f"/admin/providers/{prov[1]}/settings", token,
                   {"name": "Emb", "base_url": "http://127.0.0.1:9/v1", "api_style": "openai",
                    "responses_api": "true", "needs_key": "true", "enabled": "true"})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    flag = admin_conn.execute("select responses_api from public.llm_providers where id = %s", [prov[1]]).fetchone()
    assert flag == (True,)
    resp = hx_post(client, f"/admin/providers/{prov[1]}/settings", token,
                   {"name": "Emb", "base_url": "http://127.0.0.1:9/v1", "api_style": "anthropic",
                    "responses_api": "true", "needs_key": "true", "enabled": "true"})
    assert resp.status_code == 422 and "Responses API" in resp.get_data(as_text=True)


def test_admin_api_round_trips_kind_and_flag(client: FlaskClient, make_user: Any, prov: tuple[str, str]) -> None:
    admin = make_user(admin=True)
    headers = {"Authorization": f"Bearer {admin.token}"}
    resp = client.put(f"/api/admin/llm/providers/{prov[1]}", headers=headers, json={
        "responses_api": True, "models": [{"model": "emb-z", "input_rate": 20, "output_rate": 0,
                                           "kind": "embedding"},
                                          {"model": "chat-z", "input_rate": 1, "output_rate": 2}]})
    assert resp.status_code == 200, resp.get_json()
    provider = resp.get_json()["provider"]
    assert provider["responses_api"] is True
    assert {m["model"]: m["kind"] for m in provider["models"]} == {"emb-z": "embedding", "chat-z": "chat"}
    bad = client.put(f"/api/admin/llm/providers/{prov[1]}", headers=headers, json={
        "models": [{"model": "emb-z", "input_rate": 20, "output_rate": 0, "kind": 5}]})
    assert bad.status_code == 422 and "embedding" in bad.get_json()["error"]["fields"]["models"]
