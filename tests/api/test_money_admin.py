"""The money settings an admin owns: each model's maximum output (written upstream by the gateway) and whether a
keyless engine is free for BYOK. Panel (htmx, 422 beside the field) and JSON API, and their effect on the next
request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.admin import hx_post, temp_providers, web_sign_in
from tests.support.upstreams import FakeUpstream, start_openai_upstream
from webapp.repos import credits as credits_repo


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(models=["adm-model"])
    yield up
    up.stop()


@pytest.fixture()
def prov(database_urls: tuple[str, str], upstream: FakeUpstream) -> Iterator[tuple[str, str]]:
    with temp_providers(database_urls[0], ("adm-m", upstream.base_url)) as made:
        yield made[0]


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


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
