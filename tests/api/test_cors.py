"""CORS: explicit origins only, bearer tokens not cookies (never Allow-Credentials), pages never CORS-enabled."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from webapp import create_app
from webapp.config import load_settings

ALLOWED = "https://app.example"
REQUEST_HEADERS = "Authorization, Content-Type, X-BYOK-API-Key, X-BYOK-Provider, X-BYOK-Base-URL"
API_PATHS = [("/v1/chat/completions", "POST"), ("/api/user/settings", "PUT"), ("/api/user/settings", "GET")]


def _app(test_env: dict[str, str], origins: str | None) -> Flask:
    env = dict(test_env)
    env.pop("CORS_ORIGINS", None)
    if origins is not None:
        env["CORS_ORIGINS"] = origins
    return create_app(load_settings(env))


@pytest.fixture()
def cors_client(test_env: dict[str, str]) -> Iterator[FlaskClient]:
    app = _app(test_env, ALLOWED)
    yield app.test_client()
    app.extensions["switchboard"].db.close()


@pytest.fixture()
def closed_client(test_env: dict[str, str]) -> Iterator[FlaskClient]:
    app = _app(test_env, None)
    yield app.test_client()
    app.extensions["switchboard"].db.close()


def preflight(client: FlaskClient, path: str, method: str, origin: str) -> object:
    return client.options(path, headers={"Origin": origin, "Access-Control-Request-Method": method,
                                         "Access-Control-Request-Headers": REQUEST_HEADERS})


def _header_set(value: str | None) -> set[str]:
    return {h.strip().lower() for h in (value or "").split(",") if h.strip()}


def assert_no_wildcard_or_credentials(resp: object) -> None:
    headers = resp.headers  # type: ignore[attr-defined]
    assert headers.get("Access-Control-Allow-Origin") != "*"
    assert "Access-Control-Allow-Credentials" not in headers
    for name, value in headers.items():
        if name.lower().startswith("access-control-"):
            assert value.strip() != "*", f"{name} must not be a wildcard"


@pytest.mark.parametrize(("path", "method"), API_PATHS)
def test_preflight_from_allowed_origin(cors_client: FlaskClient, path: str, method: str) -> None:
    resp = preflight(cors_client, path, method, ALLOWED)
    assert resp.status_code in (200, 204)
    assert resp.headers.getlist("Access-Control-Allow-Origin") == [ALLOWED]
    allowed = _header_set(resp.headers.get("Access-Control-Allow-Headers"))
    assert {"authorization", "content-type", "x-byok-api-key", "x-byok-provider", "x-byok-base-url"} <= allowed
    assert method.lower() in _header_set(resp.headers.get("Access-Control-Allow-Methods"))
    assert "x-request-id" in _header_set(resp.headers.get("Access-Control-Expose-Headers"))
    assert resp.headers.get("Access-Control-Max-Age") == "600"
    assert_no_wildcard_or_credentials(resp)


def test_preflight_allows_only_listed_request_headers(cors_client: FlaskClient) -> None:
    resp = cors_client.options("/v1/chat/completions", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, X-Evil-Header, Cookie"})
    allowed = _header_set(resp.headers.get("Access-Control-Allow-Headers"))
    assert allowed == {"authorization"}


def test_actual_request_from_allowed_origin_exposes_headers(cors_client: FlaskClient) -> None:
    resp = cors_client.get("/api/user/settings", headers={"Origin": ALLOWED})
    assert resp.status_code == 401  # no token: CORS headers are still there so the browser can read the error
    assert resp.headers.get("Access-Control-Allow-Origin") == ALLOWED
    exposed = _header_set(resp.headers.get("Access-Control-Expose-Headers"))
    assert {"x-request-id", "retry-after", "x-switchboard-credits"} <= exposed
    assert_no_wildcard_or_credentials(resp)


@pytest.mark.parametrize("origin", ["https://evil.example", "http://app.example", "https://app.example.evil.test",
                                    "https://sub.app.example", "null"])
@pytest.mark.parametrize(("path", "method"), API_PATHS[:2])
def test_preflight_from_other_origin_gets_no_allow_origin(cors_client: FlaskClient, path: str, method: str,
                                                          origin: str) -> None:
    resp = preflight(cors_client, path, method, origin)
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Access-Control-Allow-Headers" not in resp.headers
    assert_no_wildcard_or_credentials(resp)


@pytest.mark.parametrize("path", ["/auth/sign-in", "/auth/sign-up", "/settings", "/healthz"])
def test_pages_get_no_cors_headers(cors_client: FlaskClient, path: str) -> None:
    for resp in (cors_client.get(path, headers={"Origin": ALLOWED}),
                 preflight(cors_client, path, "POST", ALLOWED)):
        cors = [name for name, _ in resp.headers.items() if name.lower().startswith("access-control-")]
        assert cors == [], f"{path} answered with {cors}"


@pytest.mark.parametrize(("path", "method"), API_PATHS)
@pytest.mark.parametrize("origin", [ALLOWED, "https://evil.example", "http://localhost:3000"])
def test_without_cors_origins_no_origin_is_allowed(closed_client: FlaskClient, path: str, method: str,
                                                   origin: str) -> None:
    for resp in (preflight(closed_client, path, method, origin),
                 closed_client.get("/api/user/settings", headers={"Origin": origin})):
        assert "Access-Control-Allow-Origin" not in resp.headers
        assert_no_wildcard_or_credentials(resp)


def test_without_cors_origins_and_without_origin_header_nothing_is_sent(closed_client: FlaskClient) -> None:
    resp = closed_client.get("/api/user/settings")
    assert "Access-Control-Allow-Origin" not in resp.headers
