"""Helpers for the admin tests: web sign-in with CSRF, throwaway provider presets on loopback, log rows."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg
from flask.testing import FlaskClient

HX = {"HX-Request": "true"}
RATE_IN, RATE_OUT = 1_000_000, 2_000_000  # micro-credits per 1K tokens: 1000 per input token, 2000 per output


def csrf_token(client: FlaskClient, path: str = "/auth/sign-in") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, f"{path} carries a CSRF token"
    return match.group(1)


def web_sign_in(client: FlaskClient, user: Any) -> str:
    """Sign in through the real form; return a CSRF token valid for this session."""
    resp = client.post("/auth/sign-in", data={"email": user.email, "password": user.password,
                                              "csrf_token": csrf_token(client)})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    # Sign-in starts a new session (and CSRF secret). Any page in the frame carries a fresh token in its sign-out
    # form: an admin's panel, or the 403 page a member gets there.
    return csrf_token(client, "/admin/providers")


def hx_post(client: FlaskClient, path: str, token: str, data: dict[str, Any] | None = None) -> Any:
    """A POST as htmx sends it: CSRF token in the header (hx-headers on <body>) and in the form."""
    return client.post(path, data={**(data or {}), "csrf_token": token}, headers={**HX, "X-CSRFToken": token})


def insert_provider(conn: psycopg.Connection, slug: str, base_url: str, *, multiplier: str = "1.0",
                    models: tuple[str, ...] = ("adm-model",), enabled: bool = True, api_style: str = "openai") -> str:
    # Loopback stand-ins for remote vendors that check keys: marked free for BYOK at their own address, which a
    # keyless local engine is not by default.
    row = conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
               credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order, free_for_byok)
           values (%s, %s, %s, %s, %s, %s, %s, true, false, 950, true) returning id::text""",
        [slug, "Adm " + slug, api_style, base_url, models[0], enabled, multiplier]).fetchone()
    assert row is not None
    for model in models:
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window)
                        values (%s, %s, %s, %s, 8192)""", [row[0], model, RATE_IN, RATE_OUT])
    return str(row[0])


@contextmanager
def temp_providers(admin_url: str, *specs: tuple[str, str]) -> Iterator[list[tuple[str, str]]]:
    """(slug, id) for each (slug prefix, base URL); the rows (and their keys and rates) are gone afterwards."""
    made: list[tuple[str, str]] = []
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for prefix, base_url in specs:
            slug = f"{prefix}-{uuid.uuid4().hex[:6]}"
            made.append((slug, insert_provider(conn, slug, base_url)))
    try:
        yield made
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("delete from public.llm_providers where id = any(%s::uuid[])", [[i for _, i in made]])


def insert_log(conn: psycopg.Connection, user_id: str, provider: str | None, *, mode: str = "member",
               status: int = 200, tokens: tuple[int, int] = (10, 20), credits: int = 50_000,
               model: str = "adm-model", created_at: datetime | None = None, admin_key_id: str | None = None,
               key_source: str | None = None, error_code: str | None = None) -> str:
    """A request-log row (superuser connection, so created_at can be placed on any day)."""
    request_id = str(uuid.uuid4())
    conn.execute(
        """insert into public.llm_request_logs (request_id, user_id, mode, provider, model, key_source, admin_key_id,
               tokens_in, tokens_out, usage_source, credits, multiplier, status, error_code, latency_ms, created_at)
           values (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'measured', %s, 1.0, %s, %s, 12, coalesce(%s, now()))""",
        [request_id, user_id, mode, provider, model, key_source or ("admin_db" if mode == "member" else "byok_stored"),
         admin_key_id, tokens[0], tokens[1], credits, status,
         error_code or (None if status < 400 else "upstream_error"), created_at])
    return request_id


def audit_rows(conn: psycopg.Connection, target: str) -> list[dict[str, Any]]:
    rows = conn.execute("select row_to_json(a) from public.admin_audit_log a where target = %s order by id",
                        [target]).fetchall()
    return [dict(r[0]) for r in rows]


def close_app(app: Any) -> None:
    """Write the queued request-log rows, then close the app's pool (closing first would drop them)."""
    svc = app.extensions["switchboard"]
    svc.logs.flush()
    svc.db.close()
