"""Limits and headers: body size, messages, max_tokens ceiling, per-user rate and concurrent streams (shared
through Postgres, so they hold across workers), security headers on pages, trusted hosts."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from flask.testing import FlaskClient

from webapp import create_app
from webapp.config import Settings
from webapp.repos import context as context_repo

MSG = [{"role": "user", "content": "hi"}]


def _app(settings: Settings, **overrides: Any) -> Any:
    return create_app(settings.with_overrides(**overrides))


def test_oversized_body_is_413_in_openai_shape(settings: Settings, make_user: Any) -> None:
    app = _app(settings, max_body_bytes=2048)
    user = make_user()
    resp = app.test_client().post("/v1/chat/completions", headers=user.headers,
                                  json={"model": "x", "messages": [{"role": "user", "content": "a" * 5000}]})
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "payload_too_large"
    app.extensions["switchboard"].db.close()


def test_too_many_messages_and_max_tokens_ceiling(settings: Settings, make_user: Any) -> None:
    app = _app(settings, max_messages=3, max_tokens_ceiling=100)
    client, user = app.test_client(), make_user()
    resp = client.post("/v1/chat/completions", headers=user.headers, json={"model": "x", "messages": MSG * 4})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "messages"
    resp = client.post("/v1/chat/completions", headers=user.headers,
                       json={"model": "x", "messages": MSG, "max_tokens": 101})
    assert resp.status_code == 400 and resp.get_json()["error"]["param"] == "max_tokens"
    app.extensions["switchboard"].db.close()


def test_per_user_rate_limit_answers_429_with_retry_after(settings: Settings, make_user: Any) -> None:
    app = _app(settings, rate_limit_per_minute=3)
    client, user, other = app.test_client(), make_user(), make_user()
    codes = [client.post("/v1/chat/completions", headers=user.headers,
                         json={"model": "no-such-model", "messages": MSG}).status_code for _ in range(5)]
    assert codes[:3] == [404, 404, 404]
    limited = client.post("/v1/chat/completions", headers=user.headers, json={"model": "m", "messages": MSG})
    assert limited.status_code == 429
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another user is not affected.
    assert client.post("/v1/chat/completions", headers=other.headers,
                       json={"model": "no-such-model", "messages": MSG}).status_code == 404
    app.extensions["switchboard"].db.close()


def test_rate_limit_is_shared_between_workers(settings: Settings, make_user: Any) -> None:
    """Two app instances (as two gunicorn workers would be) count against the same window."""
    a, b = _app(settings, rate_limit_per_minute=4), _app(settings, rate_limit_per_minute=4)
    user = make_user()
    body = {"model": "no-such-model", "messages": MSG}
    codes = [app.test_client().post("/v1/chat/completions", headers=user.headers, json=body).status_code
             for app in (a, b, a, b, a, b)]
    assert codes == [404, 404, 404, 404, 429, 429]
    for app in (a, b):
        app.extensions["switchboard"].db.close()


def test_concurrent_stream_slots_are_exact_under_contention(db: Any, make_user: Any) -> None:
    user = make_user()
    admitted: list[bool] = []
    lock = threading.Lock()

    def one() -> None:
        with db.as_service() as conn:
            ctx = context_repo.load(conn, user.id, context_repo.Admission(0, 3, 900, str(uuid.uuid4())))
        with lock:
            admitted.append(bool(ctx.admit and ctx.admit["ok"]))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert admitted.count(True) == 3 and len(admitted) == 12
    with db.as_service() as conn:
        conn.execute("delete from public.active_streams where user_id = %s", [user.id])


def test_pages_carry_security_headers(client: FlaskClient) -> None:
    resp = client.get("/auth/sign-in")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Referrer-Policy"] == "same-origin"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_untrusted_host_is_refused(settings: Settings) -> None:
    app = _app(settings, trusted_hosts=("switchboard.example",))
    client = app.test_client()
    assert client.get("/healthz", headers={"Host": "switchboard.example"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    app.extensions["switchboard"].db.close()


def test_forwarded_headers_ignored_without_proxy_hops(client: FlaskClient) -> None:
    resp = client.get("/auth/sign-in", headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert resp.status_code == 200
    assert "evil.example" not in resp.get_data(as_text=True)
