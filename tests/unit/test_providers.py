"""Provider adapters against real loopback HTTP servers (tests/support/upstreams.py)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from tests.support.upstreams import (
    REPLY,
    REPLY_WORDS,
    AnthropicUpstream,
    FakeUpstream,
    OpenAIUpstream,
    start_anthropic_upstream,
    start_openai_upstream,
)
from webapp.providers import get_adapter, transport
from webapp.providers.anthropic import AnthropicAdapter, to_anthropic_request, translate_anthropic_events
from webapp.providers.base import Target, UpstreamFailure
from webapp.providers.openai_compat import OpenAICompatAdapter, translate_openai_events
from webapp.providers.sse import DONE, SSEError, SSEEvent, SSEParser, format_chunk, format_event, iter_sse
from webapp.providers.transport import check_base_url, check_peer, is_public_address

KEY = "sk-test-SECRET-0123456789abcdef"
PUBLIC_IP = "93.184.216.34"


@pytest.fixture()
def oai() -> Iterator[OpenAIUpstream]:
    up = start_openai_upstream()
    yield up
    up.stop()


@pytest.fixture()
def ant() -> Iterator[AnthropicUpstream]:
    up = start_anthropic_upstream()
    yield up
    up.stop()


@pytest.fixture(params=["openai", "anthropic"])
def upstream(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    up: FakeUpstream = start_openai_upstream() if request.param == "openai" else start_anthropic_upstream()
    yield up
    up.stop()


def target(up: FakeUpstream, *, key: str | None = KEY, read_timeout: float = 5.0, **kw: Any) -> Target:
    return Target(provider="fake", api_style=up.protocol, base_url=kw.pop("base_url", up.base_url), api_key=key,
                  connect_timeout=2.0, read_timeout=read_timeout, **kw)


def chat(text: str = "hello there world", model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def stream_body(text: str = "hello there world", model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return chat(text, model, stream=True, stream_options={"include_usage": True}, **extra)


def collect(up: FakeUpstream, body: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    stream = get_adapter(up.protocol).open_stream(target(up, **kw), body)
    try:
        return list(stream)
    finally:
        stream.close()


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def failure(fn: Callable[[], Any]) -> UpstreamFailure:
    with pytest.raises(UpstreamFailure) as info:
        fn()
    return info.value


# ---------------------------------------------------------------------------------------------------------------
# get_adapter

def test_get_adapter_returns_shared_singletons() -> None:
    assert isinstance(get_adapter("openai"), OpenAICompatAdapter)
    assert isinstance(get_adapter("anthropic"), AnthropicAdapter)
    assert get_adapter("openai") is get_adapter("openai")
    with pytest.raises(ValueError, match="unknown api_style"):
        get_adapter("gemini")


# ---------------------------------------------------------------------------------------------------------------
# OpenAI-compatible adapter

def test_openai_complete_passes_body_and_key(oai: OpenAIUpstream) -> None:
    body = chat("one two three four")
    result = get_adapter("openai").complete(target(oai), body)
    assert result["object"] == "chat.completion"
    assert result["choices"][0]["message"]["content"] == REPLY
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == {"prompt_tokens": 4, "completion_tokens": REPLY_WORDS, "total_tokens": 4 + REPLY_WORDS}
    req = oai.last_request
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.body == body


def test_openai_without_key_sends_no_authorization(oai: OpenAIUpstream) -> None:
    get_adapter("openai").complete(target(oai, key=None), chat())
    assert "authorization" not in oai.last_request.headers


def test_openai_tools_and_extras_pass_through_untouched(oai: OpenAIUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "description": "Look up",
                                               "parameters": {"type": "object",
                                                              "properties": {"q": {"type": "string"}}}}}]
    body = chat("find the fox", tools=tools, tool_choice="auto", parallel_tool_calls=False,
                response_format={"type": "json_object"}, seed=7, logit_bias={"50256": -100}, vendor_extra={"x": 1})
    result = get_adapter("openai").complete(target(oai), body)
    assert oai.last_request.body == body
    call = result["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "lookup", "arguments": json.dumps({"echo": "find the fox"})}
    assert result["choices"][0]["finish_reason"] == "tool_calls"


def test_openai_stream_yields_chunks_and_usage(oai: OpenAIUpstream) -> None:
    body = stream_body("a b c d e")
    chunks = collect(oai, body)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert text_of(chunks) == REPLY
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": REPLY_WORDS,
                                   "total_tokens": 5 + REPLY_WORDS}
    assert oai.last_request.body == body
    assert oai.last_request.headers["accept"] == "text/event-stream"


def test_openai_stream_without_usage(oai: OpenAIUpstream) -> None:
    chunks = collect(oai, stream_body(model="m@no_usage"))
    assert text_of(chunks) == REPLY
    assert all(not c.get("usage") for c in chunks)


def test_openai_stream_forces_stream_true(oai: OpenAIUpstream) -> None:
    chunks = collect(oai, chat())
    assert text_of(chunks) == REPLY
    assert oai.last_request.body["stream"] is True


def test_openai_stream_tool_call_fragments(oai: OpenAIUpstream) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    chunks = collect(oai, stream_body("where is it", tools=tools))
    args = "".join(tc["function"].get("arguments", "") for c in chunks if c["choices"]
                   for tc in c["choices"][0]["delta"].get("tool_calls", []))
    assert json.loads(args) == {"echo": "where is it"}
    assert chunks[-1]["usage"]["completion_tokens"] == len(json.dumps({"echo": "where is it"}).split())


def test_openai_stream_is_incremental(oai: OpenAIUpstream) -> None:
    # 9 words at 0.15 s each take ~1.4 s; the first word must arrive long before that.
    stream = get_adapter("openai").open_stream(target(oai), stream_body(model="m@drip:0.15"))
    started = time.monotonic()
    try:
        for chunk in stream:
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                break
        first = time.monotonic() - started
    finally:
        stream.close()
    assert first < 0.7


def test_openai_list_models(oai: OpenAIUpstream) -> None:
    assert get_adapter("openai").list_models(target(oai)) == ["fake-gpt-small", "fake-gpt-large"]
    assert (oai.last_request.method, oai.last_request.path) == ("GET", "/v1/models")
    assert oai.last_request.headers["authorization"] == f"Bearer {KEY}"


def test_openai_mid_stream_error_event_raises(oai: OpenAIUpstream) -> None:
    exc = failure(lambda: collect(oai, stream_body(model="m@error_event:2")))
    assert exc.kind == "protocol"
    assert exc.error_body is not None and "server had an error" in exc.error_body["error"]["message"]


def test_stream_answered_with_json_fails_at_open(oai: OpenAIUpstream) -> None:
    exc = failure(lambda: get_adapter("openai").open_stream(target(oai), stream_body(model="m@garbage")))
    assert exc.kind == "protocol"


def test_invalid_json_answer_is_protocol_error(upstream: FakeUpstream) -> None:
    exc = failure(lambda: get_adapter(upstream.protocol).complete(target(upstream), chat(model="m@garbage")))
    assert (exc.kind, exc.retryable) == ("protocol", False)


def test_connections_are_pooled(upstream: FakeUpstream) -> None:
    adapter = get_adapter(upstream.protocol)
    adapter.complete(target(upstream), chat())
    collect(upstream, stream_body())
    adapter.complete(target(upstream), chat())
    assert len({r.client_port for r in upstream.requests}) == 1


def test_openai_sdk_accepts_the_fake_upstream(oai: OpenAIUpstream) -> None:
    """The fake speaks the real protocol: the official client parses it."""
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=oai.base_url, api_key=KEY, max_retries=0)
    try:
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi you"}],
                                                stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
        assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 2
    finally:
        client.close()


# ---------------------------------------------------------------------------------------------------------------
# Anthropic adapter: request translation

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}},
         {"type": "function", "function": {"name": "noop"}}]


def test_anthropic_request_translation_recorded_by_server(ant: AnthropicUpstream) -> None:
    body = {
        "model": "claude-x",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "system", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ]},
            {"role": "assistant", "content": "Let me check the weather.",
             "tool_calls": [{"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
            {"role": "user", "content": "Thanks"},
        ],
        "max_completion_tokens": 100,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "fox",
        "tools": TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "user": "user-42",
        "stream_options": {"include_usage": True},
    }
    get_adapter("anthropic").complete(target(ant), body)
    req = ant.last_request
    assert (req.method, req.path) == ("POST", "/v1/messages")
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in req.headers
    assert req.body == {
        "model": "claude-x",
        "max_tokens": 100,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
            ]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check the weather."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny, 21 C"},
                {"type": "text", "text": "Thanks"},
            ]},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["fox"],
        "tools": [
            {"name": "get_weather", "description": "Weather for a city",
             "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
            {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-42"},
    }


def test_anthropic_defaults_and_named_tool_choice() -> None:
    out = to_anthropic_request(chat("hi", tools=TOOLS, tool_choice={"type": "function",
                                                                     "function": {"name": "noop"}}))
    assert out["max_tokens"] == 4096
    assert out["tool_choice"] == {"type": "tool", "name": "noop"}
    assert "system" not in out and "stream" not in out
    assert to_anthropic_request(chat("hi", max_tokens=12))["max_tokens"] == 12
    assert to_anthropic_request(chat("hi", stop=["a", "b"]))["stop_sequences"] == ["a", "b"]
    assert to_anthropic_request(chat("hi", tools=TOOLS, tool_choice="none"))["tool_choice"] == {"type": "none"}


@pytest.mark.parametrize("bad", [
    {"role": "function", "content": "x"},
    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}]},
    {"role": "assistant", "content": None,
     "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]},
])
def test_anthropic_untranslatable_request_is_a_400(bad: dict[str, Any]) -> None:
    exc = failure(lambda: to_anthropic_request({"model": "m", "messages": [bad]}))
    assert (exc.kind, exc.status, exc.retryable) == ("status", 400, False)
    assert exc.error_body is not None and exc.error_body["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------------------------------------------
# Anthropic adapter: response translation

def test_anthropic_response_translation(ant: AnthropicUpstream) -> None:
    ant.cache_read_tokens, ant.cache_creation_tokens = 5, 2
    body = {"model": "claude-x", "messages": [{"role": "system", "content": "be brief"},
                                              {"role": "user", "content": "one two three"}]}
    result = get_adapter("anthropic").complete(target(ant), body)
    assert result["object"] == "chat.completion"
    assert result["id"] == "msg_fake" and result["model"] == "claude-x"
    assert isinstance(result["created"], int)
    assert result["choices"][0]["message"] == {"role": "assistant", "content": REPLY}
    assert result["choices"][0]["finish_reason"] == "stop"
    # prompt = 5 words (system + user) + 5 cache reads + 2 cache writes
    assert result["usage"]["prompt_tokens"] == 12
    assert result["usage"]["completion_tokens"] == REPLY_WORDS
    assert result["usage"]["total_tokens"] == 12 + REPLY_WORDS
    assert result["usage"]["prompt_tokens_details"] == {"cached_tokens": 5}


@pytest.mark.parametrize(("extra", "finish", "text"), [
    ({"max_tokens": 3}, "length", "The quick brown"),
    ({"stop": ["fox"]}, "stop", "The quick brown"),
])
def test_anthropic_finish_reasons(ant: AnthropicUpstream, extra: dict[str, Any], finish: str, text: str) -> None:
    result = get_adapter("anthropic").complete(target(ant), chat(**extra))
    assert result["choices"][0]["finish_reason"] == finish
    assert result["choices"][0]["message"]["content"] == text
    assert result["usage"]["completion_tokens"] == 3


def test_anthropic_tool_use_becomes_tool_calls(ant: AnthropicUpstream) -> None:
    result = get_adapter("anthropic").complete(target(ant), chat("weather in Paris", tools=TOOLS))
    message = result["choices"][0]["message"]
    assert result["choices"][0]["finish_reason"] == "tool_calls"
    assert message["content"] is None
    assert message["tool_calls"] == [{"id": "toolu_fake_1", "type": "function", "function": {
        "name": "get_weather", "arguments": json.dumps({"echo": "weather in Paris"})}}]


def test_anthropic_tool_round_trip_is_accepted(ant: AnthropicUpstream) -> None:
    """The fake validates like the real API (tool_result must follow its tool_use), so a translated
    conversation with a tool turn that it accepts is well formed."""
    adapter = get_adapter("anthropic")
    first = adapter.complete(target(ant), chat("weather in Paris", tools=TOOLS))
    call = first["choices"][0]["message"]["tool_calls"][0]
    messages = [{"role": "user", "content": "weather in Paris"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}]
    second = adapter.complete(target(ant), {"model": "m", "messages": messages, "tools": TOOLS})
    assert second["choices"][0]["message"]["content"] == REPLY


def test_anthropic_stream_translation(ant: AnthropicUpstream) -> None:
    chunks = collect(ant, stream_body("a b c d"))
    assert ant.last_request.body["stream"] is True
    assert "stream_options" not in ant.last_request.body
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text_of(chunks) == REPLY
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 4
    assert chunks[-1]["usage"]["completion_tokens"] == REPLY_WORDS
    assert chunks[-1]["usage"]["total_tokens"] == 4 + REPLY_WORDS
    assert {c["id"] for c in chunks} == {"msg_fake"}


def test_anthropic_stream_tool_use(ant: AnthropicUpstream) -> None:
    chunks = collect(ant, stream_body("weather in Paris", tools=TOOLS))
    calls = [tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0]["id"] == "toolu_fake_1" and calls[0]["function"]["name"] == "get_weather"
    assert {tc["index"] for tc in calls} == {0}
    assert json.loads("".join(tc["function"]["arguments"] for tc in calls)) == {"echo": "weather in Paris"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_anthropic_stream_without_usage(ant: AnthropicUpstream) -> None:
    chunks = collect(ant, stream_body(model="m@no_usage"))
    assert text_of(chunks) == REPLY
    assert all("usage" not in c for c in chunks)


def test_anthropic_stream_error_event_raises(ant: AnthropicUpstream) -> None:
    stream = get_adapter("anthropic").open_stream(target(ant), stream_body(model="m@error_event:3"))
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamFailure) as info:
        for chunk in stream:
            got.append(chunk)
    stream.close()
    assert got  # the error came after some chunks
    assert info.value.kind == "protocol" and info.value.retryable
    assert info.value.error_body == {"error": {"message": "Overloaded", "type": "overloaded_error"}}


def _events(*items: dict[str, Any]) -> list[SSEEvent]:
    return [SSEEvent(str(item["type"]), json.dumps(item)) for item in items]


def test_anthropic_event_translation_maps_block_indexes() -> None:
    events = _events(
        {"type": "message_start", "message": {"id": "msg_1", "model": "c", "usage": {
            "input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"a"'}},
        {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ": 1}"}},
        {"type": "content_block_start", "index": 3, "content_block": {
            "type": "tool_use", "id": "toolu_2", "name": "g", "input": {}}},
        {"type": "ping"},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}},
        {"type": "message_stop"},
    )
    chunks = list(translate_anthropic_events(events, created=123))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Hi"}
    assert deltas[2]["tool_calls"][0] == {"index": 0, "id": "toolu_1", "type": "function",
                                          "function": {"name": "f", "arguments": ""}}
    assert [d["tool_calls"][0]["function"]["arguments"] for d in deltas[3:5]] == ['{"a"', ": 1}"]
    assert deltas[5]["tool_calls"][0]["index"] == 1
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"] == {"prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20,
                                   "prompt_tokens_details": {"cached_tokens": 3}}
    assert all(c["created"] == 123 for c in chunks)


def test_anthropic_event_translation_needs_an_end() -> None:
    start = {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {"input_tokens": 1}}}
    with pytest.raises(UpstreamFailure, match="before message_stop"):
        list(translate_anthropic_events(_events(start)))
    # A finished message whose message_stop got lost is still complete.
    done = {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}}
    chunks = list(translate_anthropic_events(_events(start, done)))
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 2


def test_openai_event_translation_needs_done_or_finish() -> None:
    piece = {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
    with pytest.raises(UpstreamFailure, match=r"before \[DONE\]"):
        list(translate_openai_events([SSEEvent("message", json.dumps(piece))]))
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    assert len(list(translate_openai_events([SSEEvent("message", json.dumps(e)) for e in (piece, end)]))) == 2
    with pytest.raises(UpstreamFailure, match="not JSON"):
        list(translate_openai_events([SSEEvent("message", "{oops")]))


def test_anthropic_list_models(ant: AnthropicUpstream) -> None:
    assert get_adapter("anthropic").list_models(target(ant)) == ["claude-fake-haiku", "claude-fake-sonnet"]
    req = ant.last_request
    assert (req.method, req.path) == ("GET", "/v1/models")
    assert req.headers["x-api-key"] == KEY and req.headers["anthropic-version"] == "2023-06-01"


# ---------------------------------------------------------------------------------------------------------------
# Error mapping

@pytest.mark.parametrize(("status", "retryable"), [(429, True), (500, True), (503, True), (529, True),
                                                   (400, False), (401, False), (403, False), (404, False)])
@pytest.mark.parametrize("op", ["complete", "open_stream", "list_models"])
def test_status_errors(upstream: FakeUpstream, status: int, retryable: bool, op: str) -> None:
    upstream.behaviour = str(status)
    adapter = get_adapter(upstream.protocol)
    calls: dict[str, Callable[[], Any]] = {
        "complete": lambda: adapter.complete(target(upstream), chat()),
        "open_stream": lambda: adapter.open_stream(target(upstream), stream_body()),
        "list_models": lambda: adapter.list_models(target(upstream)),
    }
    exc = failure(calls[op])
    assert (exc.kind, exc.status, exc.retryable) == ("status", status, retryable)
    assert exc.error_body is not None and exc.error_body["error"]["message"]
    assert f"HTTP {status}" in str(exc)


def test_anthropic_error_body_is_normalised(ant: AnthropicUpstream) -> None:
    ant.behaviour = "529"
    exc = failure(lambda: get_adapter("anthropic").complete(target(ant), chat()))
    assert exc.error_body == {"error": {"message": "fake upstream error 529", "type": "overloaded_error"}}


def test_connect_refused(upstream: FakeUpstream) -> None:
    upstream.behaviour = "refuse"
    exc = failure(lambda: get_adapter(upstream.protocol).complete(target(upstream), chat()))
    assert (exc.kind, exc.retryable) == ("connect", True)
    upstream.behaviour = None  # listening again on the same port
    assert get_adapter(upstream.protocol).complete(target(upstream), chat())["choices"]


def test_connection_dropped_without_answer(upstream: FakeUpstream) -> None:
    exc = failure(lambda: get_adapter(upstream.protocol).complete(target(upstream), chat(model="m@drop")))
    assert (exc.kind, exc.retryable) == ("connect", True)


@pytest.mark.parametrize("op", ["complete", "open_stream"])
def test_read_timeout(upstream: FakeUpstream, op: str) -> None:
    adapter = get_adapter(upstream.protocol)
    tgt = target(upstream, read_timeout=0.3)
    started = time.monotonic()
    if op == "complete":
        exc = failure(lambda: adapter.complete(tgt, chat(model="m@hang")))
    else:
        exc = failure(lambda: adapter.open_stream(tgt, stream_body(model="m@hang")))
    assert (exc.kind, exc.retryable) == ("timeout", True)
    assert time.monotonic() - started < 3


def test_stream_stalling_midway_times_out_during_iteration(upstream: FakeUpstream) -> None:
    stream = get_adapter(upstream.protocol).open_stream(target(upstream, read_timeout=0.3),
                                                        stream_body(model="m@stall:3"))
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamFailure) as info:
        for chunk in stream:
            got.append(chunk)
    stream.close()
    assert got
    assert (info.value.kind, info.value.retryable) == ("timeout", True)


def test_stream_cut_midway_raises_during_iteration(upstream: FakeUpstream) -> None:
    stream = get_adapter(upstream.protocol).open_stream(target(upstream), stream_body(model="m@cut:4"))
    got: list[dict[str, Any]] = []
    with pytest.raises(UpstreamFailure) as info:
        for chunk in stream:
            got.append(chunk)
    stream.close()
    assert got and text_of(got) != REPLY
    assert info.value.kind == "protocol"


def test_stream_close_midway_then_reuse(upstream: FakeUpstream) -> None:
    adapter = get_adapter(upstream.protocol)
    stream = adapter.open_stream(target(upstream), stream_body(model="m@drip:0.02"))
    it = iter(stream)
    next(it)
    next(it)
    stream.close()
    stream.close()  # idempotent
    assert adapter.complete(target(upstream), chat())["choices"][0]["message"]["content"] == REPLY


@pytest.mark.parametrize("op", ["complete", "open_stream"])
def test_redirect_is_not_followed(upstream: FakeUpstream, op: str) -> None:
    adapter = get_adapter(upstream.protocol)
    if op == "complete":
        exc = failure(lambda: adapter.complete(target(upstream), chat(model="m@redirect")))
    else:
        exc = failure(lambda: adapter.open_stream(target(upstream), stream_body(model="m@redirect")))
    assert (exc.kind, exc.status, exc.retryable) == ("status", 302, False)
    assert [r.path for r in upstream.requests] == [upstream.chat_path]


# ---------------------------------------------------------------------------------------------------------------
# The key never leaks

def _failures(up: FakeUpstream, key: str) -> list[UpstreamFailure]:
    adapter = get_adapter(up.protocol)
    out: list[UpstreamFailure] = []

    def run(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except UpstreamFailure as exc:
            out.append(exc)

    tgt = target(up, key=key, read_timeout=0.3)
    def complete(model: str) -> None:
        adapter.complete(tgt, chat(model=model))

    def stream(model: str) -> None:
        list(adapter.open_stream(tgt, stream_body(model=model)))

    for model in ("m@401", "m@429", "m@500", "m@redirect", "m@garbage", "m@drop", "m@hang"):
        run(partial(complete, model))
    for model in ("m@401", "m@cut:2", "m@stall:2", "m@error_event:2", "m@hang"):
        run(partial(stream, model))
    run(lambda: adapter.complete(target(up, key=key, allow_private=False), chat()))
    up.behaviour = "401"
    run(lambda: adapter.list_models(tgt))
    # A key in the base URL's query string must not reach the message either.
    run(lambda: adapter.complete(target(up, key=key, base_url=f"{up.base_url}?key={key}"), chat()))
    up.behaviour = "refuse"
    run(lambda: adapter.complete(tgt, chat()))
    return out


def test_key_never_appears_in_failures(upstream: FakeUpstream) -> None:
    failures = _failures(upstream, KEY)
    assert len(failures) == 16
    kinds = {f.kind for f in failures}
    assert kinds == {"status", "protocol", "connect", "timeout", "blocked_address"}
    for exc in failures:
        for text in (str(exc), repr(exc), exc.message, json.dumps(exc.error_body), str(exc.args)):
            assert KEY not in text
            assert "?" not in str(exc)
    # The fake really echoed the key, so the redaction was exercised.
    assert any("[redacted]" in json.dumps(f.error_body) for f in failures)


def test_malformed_key_does_not_leak_through_header_errors(oai: OpenAIUpstream) -> None:
    # requests quotes an invalid header value in its own error; that text must not surface.
    bad = KEY + "\n"
    exc = failure(lambda: get_adapter("openai").complete(target(oai, key=bad), chat()))
    assert KEY not in str(exc) and KEY not in repr(exc)
    assert exc.retryable is False


def test_target_repr_hides_key() -> None:
    assert KEY not in repr(Target("p", "openai", "https://x.test/v1", KEY))


# ---------------------------------------------------------------------------------------------------------------
# Guarded transport

def test_guarded_transport_refuses_loopback_and_unguarded_connects(upstream: FakeUpstream) -> None:
    adapter = get_adapter(upstream.protocol)
    exc = failure(lambda: adapter.complete(target(upstream, allow_private=False), chat()))
    assert (exc.kind, exc.retryable) == ("blocked_address", False)
    assert upstream.requests == []
    assert adapter.complete(target(upstream, allow_private=True), chat())["choices"]


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:7f00:1]", "[::ffff:127.0.0.1]", "169.254.169.254",
                                  "10.1.2.3", "[::1]", "localhost", "0.0.0.0"])  # noqa: S104
def test_guarded_transport_refuses_private_hosts(host: str) -> None:
    tgt = Target("p", "openai", f"http://{host}:9/v1", KEY, allow_private=False, connect_timeout=1.0)
    exc = failure(lambda: get_adapter("openai").complete(tgt, chat()))
    assert (exc.kind, exc.retryable) == ("blocked_address", False)


def test_guard_connects_to_the_checked_address_not_a_second_dns_answer(oai: OpenAIUpstream,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the lookup says "public"; the connection goes to that public address (pinned), never to
    127.0.0.1 where the name would point on a second lookup."""
    monkeypatch.setattr(transport, "_resolve", lambda host, port: [PUBLIC_IP])
    exc = failure(lambda: get_adapter("openai").complete(target(oai, allow_private=False), chat()))
    assert exc.kind == "connect"  # the pinned public address is not reachable from the test machine
    assert oai.requests == []


def _ipv6_loopback_mapping_works(port: int) -> bool:
    try:
        with socket.create_connection(("::ffff:127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_guard_normalises_ipv4_mapped_peer(oai: OpenAIUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _ipv6_loopback_mapping_works(oai.port):
        pytest.skip("no IPv6 socket support here")
    url = f"http://[::ffff:7f00:1]:{oai.port}/v1"
    assert get_adapter("openai").complete(target(oai, base_url=url), chat())["choices"]  # unguarded: connects
    exc = failure(lambda: get_adapter("openai").complete(target(oai, base_url=url, allow_private=False), chat()))
    assert exc.kind == "blocked_address"  # refused before connecting: the mapped address is 127.0.0.1
    assert len(oai.requests) == 1


class _FakeSocket:
    def __init__(self, peer: tuple[Any, ...]) -> None:
        self.peer = peer
        self.closed = False

    def getpeername(self) -> tuple[Any, ...]:
        return self.peer

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize(("peer", "allowed"), [
    (("::ffff:127.0.0.1", 80, 0, 0), False),
    (("::ffff:169.254.169.254", 80, 0, 0), False),
    (("fe80::1%eth0", 80, 0, 2), False),
    (("127.0.0.1", 80), False),
    (("::ffff:93.184.216.34", 80, 0, 0), True),
    ((PUBLIC_IP, 443), True),
])
def test_check_peer(peer: tuple[Any, ...], allowed: bool) -> None:
    sock = _FakeSocket(peer)
    if allowed:
        check_peer(sock, "h")  # type: ignore[arg-type]
        assert not sock.closed
    else:
        assert failure(lambda: check_peer(sock, "h")).kind == "blocked_address"  # type: ignore[arg-type]
        assert sock.closed


@pytest.mark.parametrize(("ip", "public"), [
    ("8.8.8.8", True), ("1.1.1.1", True), (PUBLIC_IP, True), ("100.63.255.255", True), ("100.128.0.1", True),
    ("172.32.0.1", True), ("2606:4700:4700::1111", True), ("2001:4860:4860::8888", True),
    ("::ffff:8.8.8.8", True), ("[2606:4700:4700::1111]", True),
    ("127.0.0.1", False), ("127.255.255.254", False), ("10.0.0.1", False), ("172.16.5.4", False),
    ("172.31.255.255", False), ("192.168.1.1", False), ("169.254.169.254", False), ("169.254.0.1", False),
    ("100.64.0.1", False), ("100.127.255.255", False), ("0.0.0.0", False), ("0.1.2.3", False),  # noqa: S104
    ("224.0.0.1", False), ("239.255.255.250", False), ("240.0.0.1", False), ("255.255.255.255", False),
    ("192.0.2.1", False), ("198.18.0.1", False), ("203.0.113.9", False),
    ("::1", False), ("::", False), ("fd00::1", False), ("fc00::1", False), ("fdff:ffff::1", False),
    ("fe80::1", False), ("fe80::1%eth0", False), ("fec0::1", False), ("ff02::1", False), ("2001:db8::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:7f00:1", False), ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False), ("::ffff:a9fe:a9fe", False), ("::127.0.0.1", False),
    ("64:ff9b::7f00:1", False), ("64:ff9b::a9fe:a9fe", False), ("2002:7f00:1::", False), ("2002:a9fe:a9fe::", False),
    ("not an ip", False), ("", False), ("127.1", False), ("2130706433", False),
])
def test_is_public_address(ip: str, public: bool) -> None:
    assert is_public_address(ip) is public


@pytest.mark.parametrize(("url", "message"), [
    ("ftp://example.com/v1", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("example.com/v1", "http:// or https://"),
    ("http:///v1", "no host"),
    ("http://user:pw@93.184.216.34/v1", "user name or password"),
    ("http://93.184.216.34:99999/v1", "invalid port"),
    ("http://127.0.0.1:8080/v1", "non-public"),
    ("http://[::ffff:7f00:1]/v1", "non-public"),
    ("http://169.254.169.254/latest", "non-public"),
    ("http://2130706433/v1", "non-public"),  # decimal spelling of 127.0.0.1
    ("http://localhost:11434/v1", "non-public"),
])
def test_check_base_url_rejects(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_base_url(url)


def test_check_base_url_accepts_public(monkeypatch: pytest.MonkeyPatch) -> None:
    check_base_url(f"https://{PUBLIC_IP}/v1")
    check_base_url("https://[2606:4700:4700::1111]:8443/v1")
    monkeypatch.setattr(transport, "_resolve", lambda host, port: [PUBLIC_IP, "2606:4700:4700::1111"])
    check_base_url("https://api.example.com/v1")


def test_check_base_url_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_resolve", lambda host, port: [PUBLIC_IP, "10.0.0.5"])
    with pytest.raises(ValueError, match="non-public") as info:
        check_base_url("https://mixed.example.com/v1")
    assert "10.0.0.5" not in str(info.value)

    def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(transport, "_resolve", nxdomain)
    with pytest.raises(ValueError, match="could not be resolved"):
        check_base_url("https://nowhere.example.com/v1")


def test_join_and_safe_url() -> None:
    assert transport.join_url("https://h.test/v1/", "/models") == "https://h.test/v1/models"
    assert transport.join_url("https://h.test/openai?api-version=1", "chat/completions") == \
        "https://h.test/openai/chat/completions?api-version=1"
    assert transport.safe_url("https://u:p@h.test:8443/v1/x?key=s#f") == "https://h.test:8443/v1/x"


# ---------------------------------------------------------------------------------------------------------------
# SSE helper

RAW_SSE = (b": keep-alive comment\r\n"
           b"event: message_start\r\ndata: {\"a\": 1}\r\n\r\n"
           b"data: line one\ndata: line two\nid: 7\n\n"
           b"event: ping\rdata: {}\r\r"
           b"data: caf\xc3\xa9\n\n"
           b"data:no-space\n\n"
           b"event: lonely\n\n"  # no data: not dispatched
           b"data: [DONE]\n\n")
EXPECTED_SSE = [SSEEvent("message_start", '{"a": 1}'), SSEEvent("message", "line one\nline two", "7"),
                SSEEvent("ping", "{}", "7"), SSEEvent("message", "café", "7"), SSEEvent("message", "no-space", "7"),
                SSEEvent("message", "[DONE]", "7")]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(RAW_SSE)])
def test_sse_parser_any_chunking(size: int) -> None:
    chunks = [RAW_SSE[i:i + size] for i in range(0, len(RAW_SSE), size)]
    assert list(iter_sse(chunks)) == EXPECTED_SSE


def test_sse_parser_incremental_and_eof() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: x") == []
    assert parser.feed(b"\n") == []
    assert parser.feed(b"\n") == [SSEEvent("message", "x")]
    assert parser.feed(b"data: tail") == []
    assert parser.close() == [SSEEvent("message", "tail")]


def test_sse_parser_limits_line_size() -> None:
    with pytest.raises(SSEError):
        list(iter_sse([b"data: " + b"x" * 100], max_line_bytes=50))


def test_sse_format() -> None:
    chunk = {"id": "c1", "choices": [{"delta": {"content": "line\nbreak é"}}]}
    raw = format_chunk(chunk)
    assert raw.startswith(b"data: ") and raw.endswith(b"\n\n") and raw.count(b"\n") == 2
    assert [json.loads(e.data) for e in iter_sse([raw])] == [chunk]
    assert DONE == b"data: [DONE]\n\n"
    assert list(iter_sse([format_event("a\nb", "x")])) == [SSEEvent("x", "a\nb")]
