"""Hostile request bodies against every documented operation on a real server (the app on a loopback port, a real
user and a real admin), with a missing, a wrong and the right token. Schemathesis generates bodies that follow
JSON's grammar; these do not, or push it where parsers break: nesting tens of thousands of levels deep, NaN and
Infinity, numbers that overflow a double or Python's integer parsing, bytes that are not UTF-8 (or UTF-16 and
UTF-32 text), duplicate names, and the wrong content type.

No answer may be a 5xx or hold a stack trace. A JSON body the parser refuses is a 400 `invalid_json` in the area's
documented error shape whoever sends it: the body is judged before the token. With another content type the body
is not read, and the route answers as for a missing body (a GET or DELETE may succeed).
Budget: FUZZ_EXAMPLES examples per operation, as for the schemathesis run; FUZZ_SEED replays one."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import jsonschema_rs
import psycopg
import pytest
import requests
from hypothesis import strategies as st

from tests.fuzz.test_schemathesis import FETCH_MODELS, STACK_TRACE_MARKERS, NetworkGuard, _restore, _snapshot
from tests.support.live import serve
from webapp import create_app, jsonbody
from webapp.config import Settings
from webapp.services import openapi_doc

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
FUZZ_SEED = os.environ.get("FUZZ_SEED")
OPERATIONS = [(method, path, op["x-auth"]) for method, path, op in openapi_doc.operations()]
JSON_TYPES = ["application/json", "application/json; charset=utf-8", "application/merge-patch+json"]
OTHER_TYPES = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=zz",
               "application/octet-stream", "application/xml", ""]

pytestmark = pytest.mark.timeout(max(300, 60 + FUZZ_EXAMPLES * len(OPERATIONS)))


@dataclass
class Live:
    base_url: str
    tokens: dict[str, str]  # "user", "admin"
    path_values: dict[str, str]
    session: requests.Session


@pytest.fixture(scope="module")
def live(settings: Settings, make_user: Any, database_urls: tuple[str, str]) -> Iterator[Live]:
    user, admin = make_user(), make_user(admin=True)
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        row = conn.execute("select id::text from public.llm_providers where slug = 'lmstudio'").fetchone()
        snap = _snapshot(conn)  # the right admin token with an empty body retires, disables and re-prices presets
    assert row is not None
    app = create_app(settings.with_overrides(rate_limit_per_minute=0))
    session = requests.Session()
    session.trust_env = False
    try:
        with NetworkGuard(), serve(app) as base_url:
            yield Live(base_url, {"user": user.token, "admin": admin.token},
                       {"provider_id": row[0], "key_id": str(uuid.uuid4()), "user_id": user.id,
                        "request_id": str(uuid.uuid4()), "provider": "openai", "model_id": "lmstudio/local-model",
                        "slug": "no-such-team", "invitation_id": str(uuid.uuid4()),
                        "endpoint_id": str(uuid.uuid4()), "response_id": "resp_fuzz"}, session)
    finally:
        session.close()
        app.extensions["switchboard"].db.close()
        with psycopg.connect(database_urls[0], autocommit=True) as conn:
            _restore(conn, snap)


# -- bodies ---------------------------------------------------------------------------------------------------------

OPENERS = [("[", "]"), ('{"a":', "}"), ("[1,", "]"), ('{"messages":[', "]}"), ('{"x":{"y":', "}}")]
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e309", "-1E999", "1" * 1001, "-" + "7" * 4301, "9" * 6000]
BAD_BYTES = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"\xe2\x82"]
TEMPLATES = [
    {"model": "lmstudio/local-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
    {"multiplier": 1.5}, {"enabled": True}, {"amount": 1, "reason": "r"}, {"api_key": "sk-hostile-0001"},
    {"prompt": "hi", "max_tokens": 10}, {"first_name": "x", "task_overrides": {"t": {"provider": "p", "model": "m"}}},
    {"models": [{"model": "m", "input_rate": 1, "output_rate": 1, "context_window": 8192}]},
]


@st.composite
def deep_body(draw: st.DrawFn) -> bytes:
    """Nested past the limit: anywhere from just over it to hundreds of thousands of levels, closed or not."""
    levels = draw(st.one_of(st.integers(jsonbody.MAX_DEPTH + 1, 200), st.integers(201, 200_000)))
    opener, closer = draw(st.sampled_from(OPENERS))
    closed = draw(st.booleans())
    inner = opener * levels + "0" + (closer * levels if closed else "")
    return (draw(st.sampled_from(["", '{"model": "m", "messages": ', '{"settings": '])) + inner).encode()


def _embed(template: Any, literal: str, draw: st.DrawFn) -> str:
    """The template as JSON text with one value replaced by `literal` (which is not valid JSON or not finite)."""
    marker = "__HOSTILE__"
    obj = json.loads(json.dumps(template))
    target = obj
    while True:
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        key = draw(st.sampled_from(keys))
        if isinstance(target[key], dict | list) and target[key] and draw(st.booleans()):
            target = target[key]
            continue
        target[key] = marker
        break
    return json.dumps(obj).replace(f'"{marker}"', literal)


@st.composite
def bad_number_body(draw: st.DrawFn) -> bytes:
    return _embed(draw(st.sampled_from(TEMPLATES)), draw(st.sampled_from(BAD_NUMBERS)), draw).encode()


@st.composite
def not_utf8_body(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(st.sampled_from(TEMPLATES)))
    if draw(st.booleans()):
        return text.encode(draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "utf-32-le"])))
    raw = text.encode()
    at = draw(st.sampled_from([i + 1 for i, b in enumerate(raw) if b == ord('"')]))  # just inside a string
    return raw[:at] + draw(st.sampled_from(BAD_BYTES)) + raw[at:]


@st.composite
def duplicate_name_body(draw: st.DrawFn) -> bytes:
    template = draw(st.sampled_from(TEMPLATES))
    name = draw(st.sampled_from(list(template)))
    text = json.dumps(template)
    return ("{" + json.dumps(name) + ": " + json.dumps(template[name]) + ", " + text[1:]).encode()


HOSTILE = st.one_of(deep_body(), bad_number_body(), not_utf8_body(), duplicate_name_body())


# -- the run --------------------------------------------------------------------------------------------------------

def _validate_error(path: str, resp: requests.Response) -> dict[str, Any]:
    doc = openapi_doc.document()
    name = "OpenAIError" if path.startswith("/v1/") else "ApiError"
    if path.startswith("/v1/messages"):  # Anthropic's Messages API answers in Anthropic's error shape
        name = "AnthropicError"
    body = resp.json()
    jsonschema_rs.validate({**doc["components"]["schemas"][name], "components": doc["components"]}, body)
    error: dict[str, Any] = body["error"]
    return error


@pytest.mark.parametrize(("method", "path", "auth"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_hostile_bodies_are_a_4xx_before_auth(live: Live, method: str, path: str, auth: str) -> None:
    url = live.base_url + path.format(**live.path_values)

    @hypothesis.settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[p for p in hypothesis.Phase if p is not hypothesis.Phase.explain])
    @hypothesis.given(body=HOSTILE, who=st.sampled_from(["none", "wrong", "right"]),
                      content_type=st.sampled_from(JSON_TYPES * 3 + OTHER_TYPES))
    def run(body: bytes, who: str, content_type: str) -> None:
        # A fresh connection each time, closed with the response: no pooled socket is left for the garbage collector
        # to find unclosed (a ResourceWarning, an error in this suite) in whatever test runs next.
        headers = {"Content-Type": content_type, "Connection": "close"}
        if who == "wrong":
            headers["Authorization"] = "Bearer not-a-token"
        elif who == "right" and auth != "none":
            headers["Authorization"] = f"Bearer {live.tokens[auth]}"
        with live.session.request(method, url, data=body, headers=headers, timeout=30) as resp:
            text = resp.content.decode("utf-8", "replace")
        upstream_failed = path == FETCH_MODELS and resp.status_code == 502  # the engine it asks is not running
        assert resp.status_code < 500 or upstream_failed, f"{resp.status_code}: {text[:300]}"
        assert not [m for m in STACK_TRACE_MARKERS if m in text], text[:300]
        if method != "GET" and content_type in JSON_TYPES:  # every JSON body is parsed, before the token
            assert resp.status_code == 400, f"{resp.status_code}: {text[:300]}"
            assert _validate_error(path, resp)["code"] == "invalid_json"
        elif resp.status_code >= 400:  # another content type: the route answers as for a missing body
            _validate_error(path, resp)

    if FUZZ_SEED:
        run = hypothesis.seed(int(FUZZ_SEED))(run)
    run()
