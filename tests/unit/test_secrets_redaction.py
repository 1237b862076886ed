"""A key Switchboard holds never reaches a client or a log line, not even in part: any run of 8+ characters of it,
in any case, in errors (redacted before they are cut), in successful bodies and in stream chunks (a fragment split
across two chunks included), from an upstream that echoes the key (real loopback servers)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.upstreams import (
    AnthropicUpstream,
    FakeUpstream,
    OpenAIUpstream,
    start_anthropic_upstream,
    start_openai_upstream,
)
from webapp.providers import get_adapter
from webapp.providers.base import Target, UpstreamFailure
from webapp.providers.transport import error_body
from webapp.redact import MIN_FRAGMENT, KeyRedactor, RedactingFilter, StreamRedactor, held_secrets, redact, redact_keys

KEY = "sk-proj-Zq8Lm2Xv9Rt4Wb7Nc1Yk5Hd3Gf6Js0Pa"


def fragments(key: str, n: int = MIN_FRAGMENT) -> list[str]:
    return [key[i:i + n] for i in range(len(key) - n + 1)]


def leaks(text: str, key: str = KEY) -> list[str]:
    """Every fragment of `key` (>= MIN_FRAGMENT characters, any case) still present in `text`."""
    low = text.lower()
    return [f for f in fragments(key.lower()) if f in low]


# -- the redactor -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("piece", [KEY, KEY[3:11], KEY[10:30], KEY[-8:], KEY.upper(), KEY[5:25].lower(),
                                   KEY[:20].swapcase()])
@pytest.mark.parametrize("template", ["{}", "invalid key: {}.", "x{}x", '{{"k":"{}"}}', "{} and again {}"])
def test_any_fragment_of_a_held_key_is_redacted_in_any_case(piece: str, template: str) -> None:
    out = redact_keys(template.format(piece, piece), KEY)
    assert leaks(out) == []
    assert "[redacted]" in out


def test_text_without_fragments_is_unchanged_and_short_pieces_survive() -> None:
    text = f"model gpt-4o answered; {KEY[:7]} is only a prefix; {KEY[9:16]}"
    assert redact_keys(text, KEY) == text


def test_neighbouring_text_is_kept_around_a_fragment() -> None:
    assert redact_keys(f"before {KEY[4:20]} after", KEY) == "before [redacted] after"


def test_error_body_redacts_before_it_truncates() -> None:
    # A non-JSON error body is cut to 300 characters: the key straddles the cut.
    raw = ("x" * 290 + " " + KEY + " tail").encode()
    body = error_body(raw, 500, KEY)
    assert leaks(json.dumps(body)) == []
    # A JSON message is cut to 1000 characters.
    raw = json.dumps({"error": {"message": "y" * 990 + KEY.upper()}}).encode()
    assert leaks(json.dumps(error_body(raw, 401, KEY))) == []


def test_redact_for_errors_catches_fragments_of_every_key_given() -> None:
    other = "gsk_AbCdEfGh1234567890IjKlMnOp"
    text = f"first {KEY[6:30]} second {other[4:20].upper()}"
    out = redact(text, KEY, other)
    assert leaks(out) == [] and leaks(out, other) == []


def test_log_lines_lose_fragments_of_keys_sent_upstream() -> None:
    held_secrets.add(KEY)
    record = logging.LogRecord("switchboard.x", logging.INFO, __file__, 1, "upstream said %s",
                               (f"bad key ...{KEY[12:30].upper()}",), None)
    RedactingFilter().filter(record)
    assert leaks(record.getMessage()) == []


# -- stream chunks ------------------------------------------------------------------------------------------------

def _chunk(content: str, index: int = 0) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": index, "delta": {"content": content}, "finish_reason": None}]}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13])
def test_key_split_across_stream_chunks_is_redacted(size: int) -> None:
    scrub = StreamRedactor([KEY])
    text = f"here it is: {KEY} done"
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    out = "".join(scrub.chunk(_chunk(p))["choices"][0]["delta"]["content"] for p in pieces)
    assert leaks(out) == []  # at most MIN_FRAGMENT - 1 characters went out before the rest turned [redacted]
    assert out.startswith("here it is: ") and out.endswith(" done") and "[redacted]" in out


def test_stream_tails_are_kept_per_choice() -> None:
    scrub = StreamRedactor([KEY])
    half = len(KEY) // 2
    first = scrub.chunk(_chunk(KEY[:half], index=0))
    other = scrub.chunk(_chunk("unrelated text", index=1))
    second = scrub.chunk(_chunk(KEY[half:], index=0))
    assert other["choices"][0]["delta"]["content"] == "unrelated text"
    sent = first["choices"][0]["delta"]["content"] + second["choices"][0]["delta"]["content"]
    assert leaks(sent) == []


def test_clean_chunk_is_returned_as_is() -> None:
    chunk = _chunk("The quick brown fox")
    assert StreamRedactor([KEY]).chunk(chunk) is chunk


def test_per_chunk_cost_is_small() -> None:
    """The hot path: a typical content chunk through a redactor bound to a 40-character key."""
    scrub = StreamRedactor([KEY])
    chunks = [_chunk(w) for w in (" The", " quick", " brown", " foxes", " jumped", " over")] * 500
    started = time.perf_counter()
    for c in chunks:
        scrub.chunk(c)
    per_chunk_us = (time.perf_counter() - started) / len(chunks) * 1e6
    assert per_chunk_us < 200, f"{per_chunk_us:.1f} µs per chunk"


def test_key_redactor_handles_repeated_blocks_and_short_keys() -> None:
    assert KeyRedactor("abcdabcdabcdXYZW").redact("..cdabcdabcdXY..") == "..[redacted].."
    assert redact_keys("my key is ABC123x!", "abc123x") == "my key is [redacted]!"


# -- real upstreams echoing the key -------------------------------------------------------------------------------

@pytest.fixture(params=["openai", "anthropic"])
def upstream(request: pytest.FixtureRequest) -> Iterator[FakeUpstream]:
    up: FakeUpstream = start_openai_upstream() if request.param == "openai" else start_anthropic_upstream()
    yield up
    up.stop()


def target(up: FakeUpstream) -> Target:
    return Target("fake", up.protocol, up.base_url, KEY, connect_timeout=2.0, read_timeout=5.0)


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **extra}


TOOLS = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}]


def test_completion_echoing_the_key_reaches_the_client_redacted(upstream: FakeUpstream) -> None:
    upstream.reply = f"Your key is {KEY.upper()} and its middle {KEY[9:25]}."
    body = get_adapter(upstream.protocol).complete(target(upstream), chat())
    assert leaks(json.dumps(body)) == []
    assert "[redacted]" in body["choices"][0]["message"]["content"]


def test_completion_tool_arguments_and_model_echoing_the_key_are_redacted(upstream: FakeUpstream) -> None:
    body = get_adapter(upstream.protocol).complete(
        target(upstream), {**chat(f"repeat {KEY}", tools=TOOLS), "model": f"fake-{KEY}"})
    assert leaks(json.dumps(body)) == []


def test_stream_echoing_the_key_reaches_the_client_redacted(upstream: FakeUpstream) -> None:
    upstream.reply = f"key {KEY} and {KEY.lower()}"
    with get_adapter(upstream.protocol).open_stream(target(upstream), chat(stream=True)) as stream:
        chunks = list(stream)
    assert leaks(json.dumps(chunks)) == []
    assert "[redacted]" in json.dumps(chunks)


def test_stream_tool_arguments_split_across_chunks_are_redacted(upstream: FakeUpstream) -> None:
    # The fake upstream sends the tool arguments {"echo": <user text>} in two halves: the key straddles them.
    text = "x" * 3 + KEY
    with get_adapter(upstream.protocol).open_stream(target(upstream), chat(text, tools=TOOLS, stream=True)) as s:
        chunks = list(s)
    args = "".join(call["function"].get("arguments") or "" for c in chunks for ch in c["choices"]
                   for call in (ch["delta"].get("tool_calls") or []))
    assert leaks(args) == [] and "[redacted]" in args


def test_upstream_error_echoing_the_key_in_upper_case_is_redacted(upstream: FakeUpstream) -> None:
    if isinstance(upstream, OpenAIUpstream | AnthropicUpstream):
        upstream.api_key = "the-right-key-0000"  # the request's key is refused, and echoed back
    tgt = Target("fake", upstream.protocol, upstream.base_url, KEY.upper(), connect_timeout=2.0, read_timeout=5.0)
    with pytest.raises(UpstreamFailure) as caught:
        get_adapter(upstream.protocol).complete(tgt, chat())
    exc = caught.value
    assert exc.status == 401
    assert leaks(exc.message + json.dumps(exc.error_body)) == []
