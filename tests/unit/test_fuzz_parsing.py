"""Property tests (Hypothesis): no body, however malformed, makes the chat-request parser or the Anthropic
translation do anything but succeed or raise its own clear error."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webapp.errors import AppError
from webapp.providers.anthropic import AnthropicAdapter, to_anthropic_request, translate_anthropic_events
from webapp.providers.base import Target, UpstreamFailure
from webapp.providers.sse import SSEEvent
from webapp.services import chat_request

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function", "wizard", "", None])
parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=40)}),
    st.fixed_dictionaries({"type": st.just("image_url"),
                           "image_url": st.fixed_dictionaries({"url": st.sampled_from(
                               ["data:image/png;base64,iVBORw0KGgo=", "https://img.example/x.png", "nope", ""])})}),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
messages = st.lists(st.fixed_dictionaries(
    {"role": roles, "content": st.one_of(st.text(max_size=60), st.lists(parts, max_size=3), st.none(), json_values)},
    optional={"name": st.text(max_size=10), "tool_call_id": st.text(max_size=10), "tool_calls": json_values}),
    max_size=6)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"model": st.one_of(st.text(max_size=30), json_values), "messages": messages},
                          optional={"stream": json_values, "max_tokens": json_values,
                                    "max_completion_tokens": json_values, "stream_options": json_values,
                                    "metadata": json_values, "tools": json_values, "tool_choice": json_values,
                                    "temperature": json_values, "stop": json_values}),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, task=st.one_of(st.none(), st.text(max_size=80)))
def test_chat_body_parser_accepts_or_explains(body: Any, task: str | None) -> None:
    try:
        req = chat_request.parse(body, task)
    except AppError as exc:
        assert exc.status == 400 and exc.code and exc.message
        return
    assert req.model and isinstance(req.messages, list) and req.messages
    assert isinstance(req.stream, bool)
    assert req.max_tokens is None or req.max_tokens >= 1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
def test_anthropic_request_translation_never_crashes(body: Any) -> None:
    try:
        req = chat_request.parse(body, None)
    except AppError:
        return
    try:
        out = to_anthropic_request(req.body)
    except UpstreamFailure as exc:  # a request Anthropic cannot express is refused as a 400, never a crash
        assert exc.status == 400 and not exc.retryable
        return
    assert isinstance(out["messages"], list) and out["max_tokens"] >= 1
    assert all(m["role"] in ("user", "assistant") for m in out["messages"])
    json.dumps(out)


anthropic_events = st.lists(st.one_of(
    st.builds(lambda d: SSEEvent("message", json.dumps(d)), st.dictionaries(
        st.sampled_from(["type", "message", "index", "delta", "content_block", "usage", "error"]),
        json_values, max_size=4)),
    st.builds(lambda kind, text: SSEEvent(kind, json.dumps({"type": kind, "index": 0,
                                                            "delta": {"type": "text_delta", "text": text}})),
              st.sampled_from(["content_block_delta", "message_delta", "ping", "message_stop"]),
              st.text(max_size=10)),
    st.builds(lambda raw: SSEEvent("message", raw), st.text(max_size=20)),
), max_size=8)


@settings(max_examples=400, deadline=None)
@given(events=anthropic_events)
def test_anthropic_stream_translation_yields_chunks_or_protocol_error(events: list[SSEEvent]) -> None:
    try:
        for chunk in translate_anthropic_events(events, "https://api.anthropic.example/v1/messages", "sk-secret"):
            assert chunk["object"] == "chat.completion.chunk"
            json.dumps(chunk)
    except UpstreamFailure as exc:
        assert exc.kind == "protocol"
        assert "sk-secret" not in str(exc)


class _OneMessage:
    """A loopback upstream answering every POST with `payload` (set per example)."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        outer = self
        self.payload = b"{}"

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.payload)))
                self.end_headers()
                self.wfile.write(outer.payload)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.base_url = f"http://127.0.0.1:{self.server.server_port}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


_UPSTREAM: _OneMessage | None = None


def _upstream() -> _OneMessage:
    global _UPSTREAM
    if _UPSTREAM is None:
        _UPSTREAM = _OneMessage()
    return _UPSTREAM


def teardown_module() -> None:
    if _UPSTREAM is not None:
        _UPSTREAM.stop()


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(["id", "model", "content", "stop_reason", "usage", "role"]),
                            json_values, max_size=6))
def test_anthropic_response_translation_never_crashes(data: dict[str, Any]) -> None:
    """Through the adapter, against a loopback upstream answering with this (possibly malformed) message."""
    upstream = _upstream()
    upstream.payload = json.dumps({**data, "type": "message"}).encode()
    target = Target("anthropic", "anthropic", upstream.base_url, api_key="sk-ant-secret")
    try:
        out = AnthropicAdapter().complete(target, {"model": "m", "messages": [{"role": "user", "content": "x"}]})
    except UpstreamFailure as exc:
        assert exc.kind == "protocol" and "sk-ant-secret" not in str(exc)
        return
    assert out["object"] == "chat.completion"
    json.dumps(out)
