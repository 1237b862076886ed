"""The admin sets a model's cache-write rate (bulk edit, like the cached-input rate): shown in the provider JSON,
emptied back to "the input rate", hostile values refused."""

from __future__ import annotations

import uuid
from typing import Any

from flask.testing import FlaskClient

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
