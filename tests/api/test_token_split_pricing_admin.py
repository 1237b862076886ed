"""The admin sets a model's cache-write rate (bulk edit, like the cached-input rate): shown in the provider JSON,
emptied back to "the input rate", hostile values refused."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg
from flask.testing import FlaskClient

from tests.support.admin import audit_rows, hx_post, web_sign_in

P = "/api/admin/llm/providers"


def test_the_admin_sets_and_clears_the_cache_write_rate(client: FlaskClient, make_user: Any) -> None:
    admin = make_user(admin=True)
    created = client.post(P, json={"slug": "cw-" + uuid.uuid4().hex[:8], "name": "Cache Co", "api_style": "anthropic",
                                   "base_url": "http://127.0.0.1:9/v1", "needs_key": False}, headers=admin.headers)
    assert created.status_code == 201, created.get_data(as_text=True)
    pid = created.get_json()["provider"]["id"]
    prov = client.post(f"{P}/{pid}/models", json={"models": ["c-1", "c-2"], "input_rate": 3000, "output_rate": 15000},
                       headers=admin.headers).get_json()["provider"]
    ids = {m["model"]: m["id"] for m in prov["models"]}
    assert {m["cache_write_rate"] for m in prov["models"]} == {None}
    resp = client.patch(f"{P}/{pid}/models", json={"rate_ids": [ids["c-1"]], "field": "cache_write_rate",
                                                   "value": 3750}, headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    rates = {m["model"]: m["cache_write_rate"] for m in resp.get_json()["provider"]["models"]}
    assert rates == {"c-1": 3750, "c-2": None}
    cleared = client.patch(f"{P}/{pid}/models", json={"rate_ids": [ids["c-1"]], "field": "cache_write_rate",
                                                      "value": ""}, headers=admin.headers).get_json()["provider"]
    assert {m["cache_write_rate"] for m in cleared["models"]} == {None}
    for bad in (-1, "1e3", True, 10**13):
        resp = client.patch(f"{P}/{pid}/models", json={"rate_ids": [ids["c-1"]], "field": "cache_write_rate",
                                                       "value": bad}, headers=admin.headers)
        assert resp.status_code == 422, bad


def test_the_single_model_form_sets_keeps_and_clears_the_cache_write_rate(client: FlaskClient, make_user: Any,
                                                                          admin_conn: psycopg.Connection) -> None:
    admin = make_user(admin=True)
    created = client.post(P, json={"slug": "cwf-" + uuid.uuid4().hex[:8], "name": "Form Co", "api_style": "anthropic",
                                   "base_url": "http://127.0.0.1:9/v1", "needs_key": False}, headers=admin.headers)
    pid = created.get_json()["provider"]["id"]
    token = web_sign_in(client, admin)
    form = {"model": "f-1", "input_rate": "3000", "output_rate": "15000", "cached_input_rate": "300",
            "enabled": "true"}

    def saved() -> Any:
        row = admin_conn.execute("select cache_write_rate from public.llm_model_rates where provider_id = %s",
                                 [pid]).fetchone()
        return row and row[0]

    resp = hx_post(client, f"/admin/providers/{pid}/rates", token, {**form, "cache_write_rate": "3750"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    assert saved() == 3750 and f'id="rate-cache_write_rate-{pid}"' in html and "3,750 µcr/1K" in html
    for bad in ("-1", "1.5", "abc", str(10**13)):  # refused beside the field; the stored rate stays
        resp = hx_post(client, f"/admin/providers/{pid}/rates", token, {**form, "cache_write_rate": bad})
        html = resp.get_data(as_text=True)
        assert resp.status_code == 422, bad
        error = re.search(rf'<p class="error" id="rate-cache_write_rate-{pid}-error">([^<]*)</p>', html)
        assert error and "written to the prompt cache" in error[1], bad
        assert f'aria-describedby="rate-cache_write_rate-{pid}-error"' in html
        assert saved() == 3750
    # A JSON models list without the field keeps the rate of a model already offered.
    resp = client.patch(f"{P}/{pid}", json={"models": [{"model": "f-1", "input_rate": 3000, "output_rate": 15000}]},
                        headers=admin.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert saved() == 3750
    resp = hx_post(client, f"/admin/providers/{pid}/rates", token, {**form, "cache_write_rate": ""})
    assert resp.status_code == 200 and saved() is None  # empty: the input rate
    assert audit_rows(admin_conn, f"provider:{created.get_json()['provider']['slug']}")[-1]["after"][
        "cache_write_rate"] is None
