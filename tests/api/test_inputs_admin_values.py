"""Admin and settings values out of range: a 422 with the message beside the field (error.fields in JSON, the form
re-rendered on the panel), never a database error coming back as a 500, and never a value silently replaced.

Before: `base_url: "HTTP://..."` passed Python's check and broke the column's `^https?://` check (500);
`"http://[::1"` raised ValueError in urlsplit (500); `context_window: 0` was quietly stored as 8192; a model id
with non-ASCII letters or a URL with spaces was stored and later travelled into headers and upstream requests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient

from tests.support.admin import hx_post, temp_providers, web_sign_in

LOOPBACK = "http://127.0.0.1:9/v1"


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


@pytest.fixture()
def pid(database_urls: tuple[str, str]) -> Iterator[str]:
    with temp_providers(database_urls[0], ("inp-v", LOOPBACK)) as made:
        yield made[0][1]


def _row(conn: psycopg.Connection, pid: str) -> dict[str, Any]:
    cur = conn.execute("select * from public.llm_providers where id = %s", [pid])
    names = [d.name for d in cur.description or []]
    row = cur.fetchone()
    assert row is not None
    return dict(zip(names, row, strict=True))


def _rates(conn: psycopg.Connection, pid: str) -> list[tuple[str, int]]:
    return [(m, w) for m, w in conn.execute(
        "select model, context_window from public.llm_model_rates where provider_id = %s order by model", [pid])]


def _put(client: FlaskClient, admin: Any, pid: str, body: Any) -> Any:
    return client.put(f"/api/admin/llm/providers/{pid}", json=body, headers=admin.headers)


def test_upper_case_scheme_is_saved_lowercased_not_a_500(client: FlaskClient, admin: Any, pid: str,
                                                          admin_conn: psycopg.Connection) -> None:
    resp = _put(client, admin, pid, {"base_url": "HTTPS://api.example.com/v1/"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["provider"]["base_url"] == "https://api.example.com/v1"
    assert _row(admin_conn, pid)["base_url"] == "https://api.example.com/v1"


@pytest.mark.parametrize("url", [
    "http://[::1", "http://[::1/v1", "http://127.0.0.1:99999/v1", "http://127.0.0.1:port/v1", "http://a b/v1",
    "http://example.com/v1\tx", "http://exämple.com/v1", "http://user:pw@example.com/v1", "http://example.com/v1#x",
    "ftp://example.com", "http://", "https:///v1", "example.com/v1", "http://x/" + "a" * 500, "", 42, None, ["x"],
])
def test_bad_base_url_is_422_beside_the_field(client: FlaskClient, admin: Any, pid: str, url: Any,
                                              admin_conn: psycopg.Connection) -> None:
    before = _row(admin_conn, pid)["base_url"]
    resp = _put(client, admin, pid, {"base_url": url})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert set(resp.get_json()["error"]["fields"]) == {"base_url"}
    assert _row(admin_conn, pid)["base_url"] == before


@pytest.mark.parametrize("window", [0, -5, 2**31, 100_000_001, "0", "abc", 8192.5, True, "\uff11\uff12"])
def test_context_window_out_of_range_is_422_not_replaced_by_the_default(client: FlaskClient, admin: Any, pid: str,
                                                                        window: Any,
                                                                        admin_conn: psycopg.Connection) -> None:
    before = _rates(admin_conn, pid)
    resp = _put(client, admin, pid, {"models": [{"model": "adm-model", "input_rate": 1, "output_rate": 1,
                                                 "context_window": window}]})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert resp.get_json()["error"]["fields"] == {"models": "Model 1: Tokens: a whole number from 1 to 100,000,000."}
    assert _rates(admin_conn, pid) == before


def test_absent_or_blank_context_window_means_the_default(client: FlaskClient, admin: Any, pid: str,
                                                          admin_conn: psycopg.Connection) -> None:
    resp = _put(client, admin, pid, {"models": [{"model": "a-model", "input_rate": 1, "output_rate": 1},
                                                {"model": "b-model", "input_rate": 1, "output_rate": 1,
                                                 "context_window": ""},
                                                {"model": "c-model", "input_rate": 1, "output_rate": 1,
                                                 "context_window": "128000"}]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert _rates(admin_conn, pid) == [("a-model", 8192), ("b-model", 8192), ("c-model", 128000)]


@pytest.mark.parametrize("value", [0, -1, "-0.5", 1001, 10**6, "1e400", "1E+999999999", "NaN", "sNaN", "Infinity",
                                   "-Infinity", "0x10", "", None, True, [1], {"v": 1}, 10**999, "1.00001"])
def test_multiplier_out_of_range_is_422_on_both_routes(client: FlaskClient, admin: Any, pid: str, value: Any,
                                                       admin_conn: psycopg.Connection) -> None:
    before = _row(admin_conn, pid)["credit_multiplier"]
    resp = client.put(f"/api/admin/settings/providers/{pid}/multiplier", json={"multiplier": value},
                      headers=admin.headers)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert set(resp.get_json()["error"]["fields"]) == {"multiplier"}
    resp = _put(client, admin, pid, {"credit_multiplier": value})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert set(resp.get_json()["error"]["fields"]) == {"credit_multiplier"}
    assert _row(admin_conn, pid)["credit_multiplier"] == before


@pytest.mark.parametrize(("field", "value"), [
    ("sort_order", 2**31), ("sort_order", -1), ("sort_order", 100_001), ("sort_order", "\uff19"),
    ("sort_order", "9" * 5000), ("sort_order", 1.5), ("sort_order", "1e3"),
    ("name", "n" * 81), ("name", "   "), ("name", "tab\there"), ("name", "nul\x00"), ("name", "bell\x07"),
    ("name", 7), ("default_model", "modèle"), ("default_model", "two words"), ("default_model", "m" * 201),
    ("default_model", ""), ("api_style", ["openai"]), ("api_style", "OpenAI"), ("enabled", "maybe"),
    ("byok_allowed", None), ("custom_base_url_allowed", 2), ("slug", "renamed"), ("id", "x"),
    ("catalog_version", 1),
])
def test_provider_field_out_of_range_is_422_beside_it(client: FlaskClient, admin: Any, pid: str, field: str,
                                                      value: Any, admin_conn: psycopg.Connection) -> None:
    before = _row(admin_conn, pid)
    resp = _put(client, admin, pid, {field: value})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert set(resp.get_json()["error"]["fields"]) == {field}
    assert _row(admin_conn, pid) == before


@pytest.mark.parametrize("rate", [
    {"model": "modèle", "input_rate": 1, "output_rate": 1}, {"model": "a b", "input_rate": 1, "output_rate": 1},
    {"model": "m", "input_rate": -1, "output_rate": 1}, {"model": "m", "input_rate": 1, "output_rate": 10**13},
    {"model": "m", "input_rate": "1e3", "output_rate": 1}, {"model": "m", "input_rate": 1.5, "output_rate": 1},
    {"model": "m", "input_rate": 2**63, "output_rate": 1}, {"model": "m" * 201, "input_rate": 1, "output_rate": 1},
    "m", None,
])
def test_model_rate_out_of_range_is_422(client: FlaskClient, admin: Any, pid: str, rate: Any,
                                        admin_conn: psycopg.Connection) -> None:
    before = _rates(admin_conn, pid)
    resp = _put(client, admin, pid, {"models": [rate]})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert set(resp.get_json()["error"]["fields"]) == {"models"}
    assert _rates(admin_conn, pid) == before


def test_admin_key_label_out_of_range_is_422(client: FlaskClient, admin: Any, pid: str) -> None:
    for label in ("l" * 81, "é" * 81, 5, ["x"]):
        resp = client.post(f"/api/admin/llm/providers/{pid}/keys", json={"api_key": "sk-inputs-0001", "label": label},
                           headers=admin.headers)
        assert resp.status_code == 422, resp.get_data(as_text=True)
        assert set(resp.get_json()["error"]["fields"]) == {"label"}


def test_panel_forms_answer_422_beside_the_field_not_500(client: FlaskClient, admin: Any, pid: str,
                                                         admin_conn: psycopg.Connection) -> None:
    token = web_sign_in(client, admin)
    form = {"name": "Inputs", "api_style": "openai", "default_model": "adm-model", "credit_multiplier": "1",
            "sort_order": "950", "enabled": "true"}
    resp = hx_post(client, f"/admin/providers/{pid}/settings", token, {**form, "base_url": "http://[::1"})
    assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
    assert "without spaces or user:password" in resp.get_data(as_text=True)
    resp = hx_post(client, f"/admin/providers/{pid}/settings", token, {**form, "base_url": "HTTP://127.0.0.1:9/v1"})
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert _row(admin_conn, pid)["base_url"] == "http://127.0.0.1:9/v1"
    resp = hx_post(client, f"/admin/providers/{pid}/rates", token,
                   {"model": "adm-model", "input_rate": "1", "output_rate": "1", "context_window": "0"})
    assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
    assert "1 to 100,000,000" in resp.get_data(as_text=True)


@pytest.mark.parametrize("model", ["modèle", "two words", "m\x00", "m" * 201, "", 5])
def test_task_override_model_must_be_a_header_safe_model_id(client: FlaskClient, make_user: Any, model: Any) -> None:
    user = make_user()
    resp = client.put("/api/user/settings", headers=user.headers,
                      json={"task_overrides": {"t": {"provider": "lmstudio", "model": model}}})
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert set(resp.get_json()["error"]["fields"]) == {"task_overrides"}
    assert "name a model" in resp.get_json()["error"]["fields"]["task_overrides"]
