"""CORS fits the official browser SDKs: every request header the pinned `openai` and `@anthropic-ai/sdk` packages
send (read here from their own sources in node_modules, as webapp/extensions.py was) passes the preflight, and
every receipt header the app sends (grepped from webapp/) can be read by browser code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from webapp import create_app
from webapp.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "node_modules"
ALLOWED = "https://app.example"
# Request headers a browser sends without asking (CORS-safelisted), so a preflight never names them.
SAFELISTED = {"accept", "accept-language", "content-language"}
_KEY = re.compile(r"""(?:'([A-Za-z][\w-]*)'|\b([A-Z][A-Za-z]*(?:-[A-Za-z]+)*))\s*:(?!:)""")


def _source(relative: str) -> str:
    path = MODULES / relative
    if not path.is_file():
        pytest.fail(f"node_modules/{relative} is missing: run `bash scripts/setup.sh` (npm ci) first.")
    return path.read_text(encoding="utf-8")


def _region(text: str, start: str, end: str) -> str:
    i = text.index(start)
    return text[i:text.index(end, i)]


def _keys(code: str) -> set[str]:
    code = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    code = re.sub(r"^\s*//.*$", "", code, flags=re.M)  # comments ("NOTE:") are not headers
    code = re.sub(r"`[^`]*`", "``", code)  # nor template-literal values (`Other:${platform}`)
    return {(quoted or bare) for quoted, bare in _KEY.findall(code)}


def sdk_request_headers() -> dict[str, set[str]]:
    """What each SDK puts on a request: its `buildHeaders` object and auth headers, its platform headers and the
    helper-method headers its streaming helpers add."""
    openai_client = _source("openai/client.mjs")
    anthropic_client = _source("@anthropic-ai/sdk/client.mjs")
    openai_helpers = "".join(_source(f"openai/{f}") for f in (
        "lib/ChatCompletionStream.mjs", "lib/ChatCompletionRunner.mjs", "resources/chat/completions/completions.mjs"))
    helper_const = re.search(r"STAINLESS_HELPER_HEADER = '([\w-]+)'",
                             _source("@anthropic-ai/sdk/internal/stainless-helper-header.mjs"))
    assert helper_const is not None
    return {
        "openai": (_keys(_region(openai_client, "async buildHeaders(", "validateHeaders("))
                   | _keys(_region(openai_client, "async authHeaders(", "stringifyQuery("))
                   | _keys(_source("openai/internal/detect-platform.mjs"))
                   | set(re.findall(r"'(X-Stainless-Helper-Method)'", openai_helpers))),
        "anthropic": (_keys(_region(anthropic_client, "async buildHeaders(", "validateHeaders("))
                      | _keys(_region(anthropic_client, "async apiKeyAuth(", "stringifyQuery("))
                      | _keys(_source("@anthropic-ai/sdk/internal/detect-platform.mjs"))
                      | {helper_const.group(1)}),
    }


def _header_set(value: str | None) -> set[str]:
    return {h.strip().lower() for h in (value or "").split(",") if h.strip()}


@pytest.fixture()
def cors_client(test_env: dict[str, str]) -> Iterator[FlaskClient]:
    env = {**test_env, "CORS_ORIGINS": ALLOWED}
    app = create_app(load_settings(env))
    yield app.test_client()
    app.extensions["switchboard"].db.close()


def test_the_sdk_sources_are_read() -> None:
    """The extraction itself: it finds the headers known to be there (a parser that found nothing proves nothing)."""
    found = sdk_request_headers()
    assert {"Authorization", "X-Stainless-Lang", "X-Stainless-Retry-Count", "X-Stainless-Runtime",
            "X-Stainless-Helper-Method", "OpenAI-Organization"} <= found["openai"]
    assert {"Authorization", "anthropic-version", "anthropic-dangerous-direct-browser-access",
            "X-Stainless-Package-Version", "x-stainless-helper"} <= found["anthropic"]


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/models", "/api/user/settings"])
def test_preflight_allows_every_header_the_sdk_sends(cors_client: FlaskClient, sdk: str, path: str) -> None:
    wanted = {h.lower() for h in sdk_request_headers()[sdk]} - SAFELISTED
    resp = cors_client.options(path, headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST" if "chat" in path else "GET",
        "Access-Control-Request-Headers": ", ".join(sorted(wanted | {"content-type"}))})
    assert resp.status_code in (200, 204)
    assert resp.headers.get("Access-Control-Allow-Origin") == ALLOWED
    missing = wanted - _header_set(resp.headers.get("Access-Control-Allow-Headers"))
    assert missing == set(), f"{sdk} sends {sorted(missing)}, which the preflight refuses"
    assert int(resp.headers["Access-Control-Max-Age"]) > 0  # browsers reuse the answer instead of asking again
    assert "Access-Control-Allow-Credentials" not in resp.headers


def app_response_headers() -> set[str]:
    """Every X-Switchboard-* name written anywhere in webapp/, plus the request id and Retry-After."""
    names: set[str] = {"x-request-id", "retry-after"}
    for file in (ROOT / "webapp").rglob("*.py"):
        names |= {n.lower() for n in re.findall(r"X-Switchboard-[A-Za-z-]*[A-Za-z]", file.read_text("utf-8"))}
    return names


@pytest.mark.parametrize("path", ["/v1/models", "/v1/chat/completions", "/api/user/credits"])
def test_every_receipt_header_is_exposed(cors_client: FlaskClient, path: str) -> None:
    resp = cors_client.get(path, headers={"Origin": ALLOWED})
    assert resp.headers.get("Access-Control-Allow-Origin") == ALLOWED
    exposed = _header_set(resp.headers.get("Access-Control-Expose-Headers"))
    wanted = app_response_headers()
    assert {"x-switchboard-credits-reserved", "x-switchboard-output-limit"} <= wanted
    assert wanted - exposed == set()
    assert "*" not in exposed


def test_an_unlisted_origin_gets_nothing_even_with_sdk_headers(cors_client: FlaskClient) -> None:
    headers = ", ".join(sorted(sdk_request_headers()["openai"]))
    resp = cors_client.options("/v1/chat/completions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers})
    assert not any(name.lower().startswith("access-control-") for name, _ in resp.headers.items())
