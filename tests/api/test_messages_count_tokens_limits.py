"""/v1/messages/count_tokens counts against the caller's per-minute limit (counting costs CPU), answered in
Anthropic's error shape; another user is unaffected."""

from __future__ import annotations

from typing import Any

from webapp import create_app
from webapp.config import Settings

BODY = {"model": "claude-x", "messages": [{"role": "user", "content": "hello"}]}


def test_count_tokens_is_rate_limited_per_user(settings: Settings, make_user: Any) -> None:
    app = create_app(settings.with_overrides(rate_limit_per_minute=3))
    try:
        client, user, other = app.test_client(), make_user(), make_user()
        codes = [client.post("/v1/messages/count_tokens", headers=user.headers, json=BODY).status_code
                 for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        resp = client.post("/v1/messages/count_tokens", headers=user.headers, json=BODY)
        body = resp.get_json()
        assert resp.status_code == 429 and resp.headers["Retry-After"]
        assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
        assert body["error"]["code"] == "rate_limited"
        ok = client.post("/v1/messages/count_tokens", headers=other.headers, json=BODY)
        assert ok.status_code == 200 and ok.get_json()["encoding"] == "cl100k_base"
        assert ok.get_json()["input_tokens"] > 0 and ok.get_json()["switchboard_estimated"] is True
    finally:
        app.extensions["switchboard"].db.close()
