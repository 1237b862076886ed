"""The /admin/providers panel's provider lifecycle as htmx sends it: add a provider (errors beside the fields, 422),
fetch the upstream's model list into a checklist and add the checked ones, bulk-edit, disable a model, retire; and
the user's notice on the settings page, dismissed by its owner only."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.support.admin import audit_rows, hx_post, insert_log, web_sign_in
from tests.support.upstreams import FakeUpstream, start_openai_upstream


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    up = start_openai_upstream(models=["panel-a", "panel-b", "panel-c"])
    yield up
    up.stop()


@pytest.fixture()
def admin_web(client: FlaskClient, make_user: Any) -> tuple[FlaskClient, str]:
    return client, web_sign_in(client, make_user(admin=True))


def add(web: tuple[FlaskClient, str], **fields: str) -> Any:
    client, token = web
    form = {"name": "Panel Co", "slug": f"panel-{uuid.uuid4().hex[:8]}", "api_style": "openai",
            "base_url": "http://127.0.0.1:9/v1", "credit_multiplier": "1", "enabled": "true", "needs_key": "true",
            "byok_allowed": "true", **fields}
    return hx_post(client, "/admin/providers", token, form), form["slug"]


def pid_of(admin_conn: psycopg.Connection, slug: str) -> str:
    row = admin_conn.execute("select id::text from public.llm_providers where slug = %s", [slug]).fetchone()
    assert row is not None
    return str(row[0])


def test_add_provider_from_the_panel(admin_web: Any, admin_conn: psycopg.Connection) -> None:
    resp, slug = add(admin_web, extra_headers="X-Title: Switchboard\r\nHTTP-Referer: https://sb.example")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200, html
    assert html.lstrip().startswith('<div id="providers-area">') and f'data-slug="{slug}"' in html
    assert "provider added" in html and 'hx-swap-oob' in html
    row = admin_conn.execute("select extra_headers, needs_key, custom_base_url_allowed, enabled from"
                             " public.llm_providers where slug = %s", [slug]).fetchone()
    assert row == ([["X-Title", "Switchboard"], ["HTTP-Referer", "https://sb.example"]], True, False, True)
    assert audit_rows(admin_conn, f"provider:{slug}")[0]["action"] == "provider.create"


@pytest.mark.parametrize(("field", "value"), [("slug", "Bad Slug"), ("base_url", "ftp://x"), ("name", ""),
                                              ("credit_multiplier", "-3"), ("extra_headers", "Authorization: x"),
                                              ("extra_headers", "no colon"), ("api_style", "soap")])
def test_add_provider_errors_beside_the_field(admin_web: Any, field: str, value: str) -> None:
    resp, _ = add(admin_web, **{field: value})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422, html
    assert '<details class="add-provider card" id="add-provider" open>' in html
    if field != "api_style":
        assert f'id="new-{field}-error"' in html
    else:
        assert "One of: openai, anthropic" in html


def test_fetch_models_checklist_then_add_checked_and_bulk_edit(admin_web: Any, upstream: FakeUpstream,
                                                               admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    _, slug = add(admin_web, base_url=upstream.base_url, needs_key="false")
    pid = pid_of(admin_conn, slug)
    resp = hx_post(client, f"/admin/providers/{pid}/models/fetch", token)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith(f'<div id="fetched-{pid}"')
    assert all(f'value="{m}"' in html for m in ("panel-a", "panel-b", "panel-c"))
    resp = client.post(f"/admin/providers/{pid}/models/add",
                       data={"csrf_token": token, "models": ["panel-a", "panel-c"], "input_rate": "2500",
                             "output_rate": "10000", "cached_input_rate": "1250"},
                       headers={"HX-Request": "true", "X-CSRFToken": token})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and html.lstrip().startswith(f'<tbody id="provider-{pid}"')
    assert "2,500 µcr/1K (2.5 credits/M tokens)" in html and "1,250 µcr/1K (1.25 credits/M tokens)" in html
    ids = dict(admin_conn.execute("select model, id::text from public.llm_model_rates where provider_id = %s",
                                  [pid]).fetchall())
    assert set(ids) == {"panel-a", "panel-c"}
    again = hx_post(client, f"/admin/providers/{pid}/models/fetch", token).get_data(as_text=True)
    assert re.search(r'value="panel-a"\s+disabled checked', again)  # already offered
    resp = client.post(f"/admin/providers/{pid}/models/bulk",
                       data={"csrf_token": token, "rate_ids": [ids["panel-a"], ids["panel-c"]], "field": "enabled",
                             "value": "false"}, headers={"HX-Request": "true", "X-CSRFToken": token})
    assert resp.status_code == 200
    assert admin_conn.execute("select bool_or(enabled) from public.llm_model_rates where provider_id = %s",
                              [pid]).fetchone() == (False,)
    bad = client.post(f"/admin/providers/{pid}/models/bulk",
                      data={"csrf_token": token, "field": "input_rate", "value": "1"},
                      headers={"HX-Request": "true", "X-CSRFToken": token})
    assert bad.status_code == 422 and "Select at least one model" in bad.get_data(as_text=True)


def test_fetch_without_a_key_says_so_beside_the_button(admin_web: Any, admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    _, slug = add(admin_web, base_url="https://api.example.test/v1")
    resp = hx_post(client, f"/admin/providers/{pid_of(admin_conn, slug)}/models/fetch", token)
    assert resp.status_code == 422 and "needs a key" in resp.get_data(as_text=True)


def test_rate_form_unchecked_enabled_disables_the_model(admin_web: Any, admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    _, slug = add(admin_web)
    pid = pid_of(admin_conn, slug)
    resp = hx_post(client, f"/admin/providers/{pid}/rates", token,
                   {"model": "one", "input_rate": "5", "output_rate": "6", "cached_input_rate": ""})
    assert resp.status_code == 200
    assert admin_conn.execute("select enabled, cached_input_rate from public.llm_model_rates where provider_id = %s",
                              [pid]).fetchone() == (False, None)


def test_retire_from_the_panel_and_the_user_sees_why(admin_web: Any, admin_conn: psycopg.Connection, app: Flask,
                                                     make_user: Any) -> None:
    client, token = admin_web
    _, slug = add(admin_web, name="Retire Me")
    pid = pid_of(admin_conn, slug)
    user = make_user()
    admin_conn.execute("update public.user_preferences set provider_priorities = array[%s] where user_id = %s",
                       [slug, user.id])
    insert_log(admin_conn, user.id, slug)
    resp = hx_post(client, f"/admin/providers/{pid}/retire", token)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and "retired, archived" in html and "1 user(s) notified" in html
    assert f'id="provider-{pid}"' not in html and 'id="retired-providers"' in html
    # The user's settings page shows the notice with a dismiss button; another user cannot dismiss it.
    user_client = app.test_client()
    user_token = web_sign_in(user_client, user)
    page = user_client.get("/settings").get_data(as_text=True)
    assert "Provider Retire Me was retired by an admin; it was removed from your provider order." in page
    notice_id = admin_conn.execute("select id::text from public.user_notices where user_id = %s",
                                   [user.id]).fetchone()[0]  # type: ignore[index]
    other = app.test_client()
    other_token = web_sign_in(other, make_user())
    assert hx_post(other, f"/settings/notices/{notice_id}/dismiss", other_token).status_code == 404
    assert hx_post(user_client, "/settings/notices/not-a-uuid/dismiss", user_token).status_code == 404
    resp = hx_post(user_client, f"/settings/notices/{notice_id}/dismiss", user_token)
    assert resp.status_code == 200 and resp.get_data(as_text=True).strip() == '<div id="notices">\n</div>'
    assert "was retired by an admin" not in user_client.get("/settings").get_data(as_text=True)


def test_settings_of_a_new_provider_without_a_default_model_save(admin_web: Any,
                                                                 admin_conn: psycopg.Connection) -> None:
    client, token = admin_web
    _, slug = add(admin_web)
    pid = pid_of(admin_conn, slug)
    resp = hx_post(client, f"/admin/providers/{pid}/settings", token,
                   {"name": "Panel Co 2", "base_url": "http://127.0.0.1:9/v1", "default_model": "", "sort_order": "3",
                    "api_style": "openai", "extra_headers": "api-version: 2024-10-21", "needs_key": "true"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    row = admin_conn.execute("select name, default_model, sort_order, extra_headers, byok_allowed"
                             " from public.llm_providers where id = %s", [pid]).fetchone()
    assert row == ("Panel Co 2", "", 3, [["api-version", "2024-10-21"]], False)  # unchecked box: off
