"""Hostile JSON bodies on every route that reads one: a clear 400 `invalid_json` (OpenAI's shape under /v1, the API's
`{"error": {"code"}}` under /api), decided before the token is looked at, and never a 500.

Deep nesting used to raise RecursionError (a 500, before the token check on /v1); NaN, Infinity and 1e999 were
parsed into floats that neither Postgres nor an upstream JSON body can carry; a 5000-digit integer or a UTF-16 body
depended on what each view did with a parse failure."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from webapp import jsonbody

V1_CHAT = "/v1/chat/completions"
USER_SETTINGS = "/api/user/settings"
ANY_ID = "8d0c5c1e-2f1b-4a57-9a3c-0f6f0c4b7e11"  # no such provider or user: the body is judged first

# Every route that reads a JSON body, with the method, and whether it needs an admin token.
BODY_ROUTES = [
    ("POST", V1_CHAT, False),
    ("PUT", USER_SETTINGS, False),
    ("PUT", "/api/user/llm/keys/openai", False),
    ("POST", "/api/user/llm/quote", False),
    ("PUT", f"/api/admin/llm/providers/{ANY_ID}", True),
    ("POST", f"/api/admin/llm/providers/{ANY_ID}/keys", True),
    ("PUT", f"/api/admin/settings/providers/{ANY_ID}/enable", True),
    ("PUT", f"/api/admin/settings/providers/{ANY_ID}/multiplier", True),
    ("POST", f"/api/admin/users/{ANY_ID}/credits", True),
]
ROUTE_IDS = [f"{m} {p.replace(ANY_ID, '<id>')}" for m, p, _ in BODY_ROUTES]


def _deep(levels: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * levels + b"]" * levels
    return b'{"a":' * levels + b"1" + b"}" * levels


def _send(client: FlaskClient, method: str, path: str, data: bytes | str, headers: dict[str, str] | None = None,
          content_type: str = "application/json") -> Any:
    return client.open(path, method=method, data=data, headers={"Content-Type": content_type, **(headers or {})})


def _assert_invalid_json(resp: Any, path: str) -> None:
    assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
    error = resp.get_json()["error"]
    assert error["code"] == "invalid_json"
    if path.startswith("/v1/"):
        assert error["type"] == "invalid_request_error" and error["param"] == "body"
    else:
        assert error["fields"]["body"] == error["message"]
    assert "Traceback" not in resp.get_data(as_text=True)


@pytest.fixture()
def member(make_user: Any) -> Any:
    return make_user()


@pytest.fixture()
def admin(make_user: Any) -> Any:
    return make_user(admin=True)


@pytest.mark.parametrize(("kind", "levels"), [("array", 65), ("array", 10_000), ("array", 1_000_000),
                                             ("object", 65), ("object", 10_000), ("object", 500_000)])
def test_deep_nesting_on_chat_is_400_invalid_json_with_or_without_a_token(client: FlaskClient, member: Any,
                                                                         levels: int, kind: str) -> None:
    body = _deep(levels, kind)  # all within MAX_BODY_BYTES (4 MB): a larger body is a 413 before it is read
    assert len(body) < 4 * 1024 * 1024
    _assert_invalid_json(_send(client, "POST", V1_CHAT, body), V1_CHAT)
    _assert_invalid_json(_send(client, "POST", V1_CHAT, body, {"Authorization": "Bearer not-a-token"}), V1_CHAT)
    resp = _send(client, "POST", V1_CHAT, body, member.headers)
    _assert_invalid_json(resp, V1_CHAT)
    assert "64 levels" in resp.get_json()["error"]["message"]
    assert resp.headers["X-Request-Id"]


@pytest.mark.parametrize(("method", "path", "as_admin"), BODY_ROUTES, ids=ROUTE_IDS)
def test_deep_nesting_is_400_invalid_json_on_every_body_route(client: FlaskClient, member: Any, admin: Any,
                                                              method: str, path: str, as_admin: bool) -> None:
    for body in (_deep(100_000, "array"), b'{"models": ' + _deep(5_000, "object") + b"}"):
        _assert_invalid_json(_send(client, method, path, body), path)  # no token at all: judged before auth
        resp = _send(client, method, path, body, (admin if as_admin else member).headers)
        _assert_invalid_json(resp, path)


def test_nesting_up_to_the_limit_reaches_validation(client: FlaskClient, member: Any) -> None:
    """64 levels parse: the settings route then refuses the unknown value with a 422, not a 400."""
    inner = json.loads(_deep(jsonbody.MAX_DEPTH - 1, "array"))
    resp = client.put(USER_SETTINGS, json={"first_name": inner}, headers=member.headers)
    assert resp.status_code == 422, resp.get_data(as_text=True)[:300]
    assert "first_name" in resp.get_json()["error"]["fields"]
    inner = json.loads(_deep(jsonbody.MAX_DEPTH, "array"))
    _assert_invalid_json(client.put(USER_SETTINGS, json={"first_name": inner}, headers=member.headers),
                         USER_SETTINGS)


def test_brackets_inside_strings_do_not_count_as_nesting(client: FlaskClient, member: Any) -> None:
    text = '[{"\\"[' * 500 + '\\\\'
    resp = client.put(USER_SETTINGS, json={"first_name": text[:80]}, headers=member.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["settings"]["first_name"] == text[:80].strip()
    resp = _send(client, "POST", "/api/user/llm/quote", json.dumps({"prompt": text, "max_tokens": 10}),
                 member.headers)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1E400", "1" * 5000, "-" + "9" * 1001])
@pytest.mark.parametrize(("method", "path", "as_admin"), BODY_ROUTES, ids=ROUTE_IDS)
def test_non_finite_and_huge_numbers_are_refused_at_parse(client: FlaskClient, member: Any, admin: Any,
                                                          method: str, path: str, as_admin: bool,
                                                          literal: str) -> None:
    body = '{"max_tokens": %s, "multiplier": %s, "amount": %s, "enabled": %s}' % ((literal,) * 4)
    _assert_invalid_json(_send(client, method, path, body, (admin if as_admin else member).headers), path)


def test_numbers_within_bounds_still_parse(client: FlaskClient, member: Any) -> None:
    resp = _send(client, "POST", "/api/user/llm/quote",
                 '{"prompt": "hi", "max_tokens": 1' + "0" * 999 + "}", member.headers)
    assert resp.status_code == 422  # a valid 1000-digit integer, refused by the route's own range check
    assert "max_tokens" in resp.get_json()["error"]["fields"]


@pytest.mark.parametrize(("method", "path", "as_admin"), BODY_ROUTES, ids=ROUTE_IDS)
def test_duplicate_names_are_refused(client: FlaskClient, member: Any, admin: Any, method: str, path: str,
                                     as_admin: bool) -> None:
    body = '{"model": "a", "model": "b", "messages": []}'
    resp = _send(client, method, path, body, (admin if as_admin else member).headers)
    _assert_invalid_json(resp, path)
    assert "'model' appears twice" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("data", [
    b'{"first_name": "caf\xe9"}',  # Latin-1
    '{"first_name": "x"}'.encode("utf-16"),  # Python's json would have guessed UTF-16
    '{"first_name": "x"}'.encode("utf-32-le"),
    b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark
    b"\xff\xfe\x00",
    b'{"first_name": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: not UTF-8
], ids=["latin1", "utf16", "utf32", "bom", "garbage", "encoded-surrogate"])
@pytest.mark.parametrize("path", [USER_SETTINGS, V1_CHAT])
def test_body_that_is_not_utf8_is_400(client: FlaskClient, member: Any, data: bytes, path: str) -> None:
    method = "POST" if path == V1_CHAT else "PUT"
    _assert_invalid_json(_send(client, method, path, data, member.headers), path)


@pytest.mark.parametrize("data", ["", "{", "[1,]", '{"a" 1}', "nul", "'x'", "{}{}", '"\\x"'])
@pytest.mark.parametrize("path", [USER_SETTINGS, V1_CHAT])
def test_malformed_json_is_400(client: FlaskClient, member: Any, data: str, path: str) -> None:
    method = "POST" if path == V1_CHAT else "PUT"
    resp = _send(client, method, path, data, member.headers)
    if data == "":  # no body at all: the route says what it needs
        assert resp.status_code in (400, 422)
        assert resp.get_json()["error"]["code"] in ("invalid_json", "validation_error")
        return
    _assert_invalid_json(resp, path)


@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml",
    "application/octet-stream", "", "application/json; charset=latin-1", "application/vnd.api+json",
])
@pytest.mark.parametrize(("method", "path", "as_admin"), BODY_ROUTES, ids=ROUTE_IDS)
def test_wrong_content_types_are_a_4xx(client: FlaskClient, member: Any, admin: Any, method: str, path: str,
                                       as_admin: bool, content_type: str) -> None:
    for body in (b'{"enabled": true}', b"[" * 10_000, b"\xff\xfe garbage"):
        resp = _send(client, method, path, body, (admin if as_admin else member).headers, content_type)
        assert 400 <= resp.status_code < 500, (content_type, body[:20], resp.get_data(as_text=True)[:300])


def test_unknown_v1_and_api_paths_with_hostile_bodies_are_4xx(client: FlaskClient, member: Any) -> None:
    for path in ("/v1/embeddings", "/v1/chat/completions/x", "/api/user/nothing", "/nowhere"):
        resp = _send(client, "POST", path, _deep(200_000, "array"), member.headers)
        assert resp.status_code in (400, 404, 405), (path, resp.status_code)


def test_hostile_body_on_a_web_form_route_is_not_a_500(client: FlaskClient) -> None:
    resp = _send(client, "POST", "/auth/sign-in", _deep(100_000, "array"))
    assert resp.status_code == 400
    resp = _send(client, "POST", "/settings/profile", "NaN")
    assert resp.status_code == 400


def test_a_valid_chat_body_is_parsed_once_and_reaches_the_gateway(client: FlaskClient, member: Any) -> None:
    """The strict parse is invisible to valid bodies: an unknown model answers the gateway's own 404."""
    resp = client.post(V1_CHAT, json={"model": f"nobody/{uuid.uuid4().hex}", "temperature": 0.5,
                                      "messages": [{"role": "user", "content": "[{\"x\": 1e5}]"}]},
                       headers=member.headers)
    assert resp.status_code == 404, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["error"]["code"] == "model_not_found"
