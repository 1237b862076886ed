"""Property tests of the Messages ⇄ chat translation (services/messages_translate.py): it never crashes, and nothing
is dropped silently — every text, image, tool call and tool result of a valid request reaches the chat body, and
anything it cannot translate is refused with a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.errors import AppError
from webapp.services import messages_translate as mt

TEXT = st.text(min_size=1, max_size=30)
IDS = st.from_regex(r"toolu_[a-z0-9]{1,8}", fullmatch=True)
JSONS = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=3), max_leaves=8)

text_block = st.builds(lambda t: {"type": "text", "text": t}, TEXT)
image_block = st.one_of(
    st.builds(lambda d, m: {"type": "image", "source": {"type": "base64", "media_type": m, "data": d}},
              st.from_regex(r"[A-Za-z0-9+/]{4,20}", fullmatch=True),
              st.sampled_from(["image/png", "image/jpeg", "image/gif", "image/webp"])),
    st.builds(lambda p: {"type": "image", "source": {"type": "url", "url": f"https://img.example/{p}.png"}},
              st.from_regex(r"[a-z]{1,8}", fullmatch=True)))
tool_use = st.builds(lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a}, IDS,
                     st.from_regex(r"[a-z_]{1,12}", fullmatch=True), st.dictionaries(st.text(max_size=5), JSONS,
                                                                                   max_size=3))
tool_result = st.builds(lambda i, c, e: {"type": "tool_result", "tool_use_id": i, "content": c, "is_error": e},
                        IDS, st.one_of(TEXT, st.lists(text_block, min_size=1, max_size=3)), st.booleans())
user_turn = st.builds(lambda c: {"role": "user", "content": c},
                      st.one_of(TEXT, st.lists(st.one_of(text_block, image_block, tool_result), min_size=1,
                                               max_size=4)))
assistant_turn = st.builds(lambda c: {"role": "assistant", "content": c},
                           st.one_of(TEXT, st.lists(st.one_of(text_block, tool_use), min_size=1, max_size=3)))
tool = st.builds(lambda n, d: {"name": n, "description": d, "input_schema": {"type": "object"}},
                 st.from_regex(r"[a-z_]{1,12}", fullmatch=True), TEXT)
valid_request = st.fixed_dictionaries(
    {"model": st.just("m"), "max_tokens": st.integers(1, 4096),
     "messages": st.lists(st.one_of(user_turn, assistant_turn), min_size=1, max_size=5)},
    optional={"system": st.one_of(TEXT, st.lists(text_block, min_size=1, max_size=3)),
              "stop_sequences": st.lists(TEXT, max_size=3), "temperature": st.floats(0, 1),
              "top_k": st.integers(1, 100), "tools": st.lists(tool, min_size=1, max_size=3),
              "metadata": st.builds(lambda u: {"user_id": u}, TEXT), "stream": st.booleans()})


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@settings(max_examples=300, deadline=None)
@given(valid_request)
def test_nothing_of_a_valid_request_is_dropped(body: dict[str, Any]) -> None:
    chat = mt.to_chat(body)
    out = "\x00".join(_strings(chat))
    calls = iter([c for m in chat["messages"] for c in m.get("tool_calls") or []])
    for msg in body["messages"]:
        content = msg["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks:
            if block["type"] == "text":
                assert block["text"] in out
            elif block["type"] == "image":
                src = block["source"]
                assert (src.get("data") or src.get("url")) in out
            elif block["type"] == "tool_use":
                call = next(calls)  # in order
                assert (call["id"], call["function"]["name"]) == (block["id"], block["name"])
                assert json.loads(call["function"]["arguments"]) == block["input"]
            elif block["type"] == "tool_result":
                results = [m for m in chat["messages"] if m["role"] == "tool" and m["tool_call_id"] == block[
                    "tool_use_id"]]
                texts = [block["content"]] if isinstance(block["content"], str) else [
                    b["text"] for b in block["content"]]
                assert any(all(t in r["content"] for t in texts) for r in results)
                if block["is_error"]:
                    assert any(r["content"].startswith("[tool error]") for r in results)
    system = body.get("system")
    for text in [system] if isinstance(system, str) else [b["text"] for b in system or []]:
        assert text in chat["messages"][0]["content"]
    for name in ("temperature", "top_k", "stream"):
        assert chat.get(name) == body.get(name)
    assert chat.get("stop") == (body.get("stop_sequences") or None)
    assert [t["function"]["name"] for t in chat.get("tools", [])] == [t["name"] for t in body.get("tools", [])]
    if "metadata" in body:
        assert chat["user"] == body["metadata"]["user_id"]


UNKNOWN = st.from_regex(r"zz_[a-z]{1,6}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(valid_request, UNKNOWN, st.data())
def test_an_unknown_field_anywhere_is_refused_by_name(body: dict[str, Any], key: str, data: st.DataObject) -> None:
    targets: list[dict[str, Any]] = [body]
    for msg in body["messages"]:
        targets.append(msg)
        if isinstance(msg["content"], list):
            targets.extend(msg["content"])
    targets.extend(body.get("tools", []))
    target = data.draw(st.sampled_from(targets))
    target[key] = 1
    try:
        mt.to_chat(body)
    except AppError as exc:
        assert exc.status == 400 and key in exc.message and exc.field and key in exc.field
    else:
        raise AssertionError(f"{key} was dropped silently")


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSONS, st.dictionaries(st.sampled_from(sorted(mt.REQUEST_FIELDS)), JSONS, max_size=8),
                 valid_request.flatmap(lambda b: st.dictionaries(st.sampled_from(sorted(b)), JSONS, max_size=3)
                                       .map(lambda patch: {**b, **patch}))))
def test_any_body_is_translated_or_refused_with_a_400(body: Any) -> None:
    try:
        chat = mt.to_chat(body)
    except AppError as exc:
        assert exc.status == 400 and exc.field and exc.message
    else:
        assert isinstance(chat["messages"], list)


chunk = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.none(), TEXT), "choices": st.lists(st.fixed_dictionaries({}, optional={
        "index": st.integers(0, 2), "delta": st.one_of(JSONS, st.fixed_dictionaries({}, optional={
            "content": st.one_of(st.none(), TEXT),
            "tool_calls": st.lists(st.one_of(JSONS, st.fixed_dictionaries({}, optional={
                "index": st.integers(0, 3), "id": st.one_of(st.none(), IDS),
                "function": st.fixed_dictionaries({}, optional={"name": TEXT, "arguments": TEXT})})), max_size=2)})),
        "finish_reason": st.one_of(st.none(), st.sampled_from(["stop", "length", "tool_calls", "x"])),
        "stop_sequence": st.one_of(st.none(), TEXT)}), max_size=2),
    "error": st.one_of(JSONS, st.fixed_dictionaries({"message": TEXT}, optional={
        "code": st.just("upstream_stream_interrupted")}))})
RID = "00000000-0000-0000-0000-000000000001"
receipt = st.fixed_dictionaries({"request_id": st.just(RID), "prompt_tokens": st.integers(0, 100),
                                 "completion_tokens": st.integers(0, 100), "cached_tokens": st.integers(0, 10),
                                 "cache_write_tokens": st.integers(0, 10)})


@settings(max_examples=300, deadline=None)
@given(st.lists(chunk, max_size=8), receipt)
def test_the_stream_translation_never_crashes_and_keeps_every_delta(chunks: list[dict[str, Any]],
                                                                    final: dict[str, Any]) -> None:
    tr = mt.StreamTranslator("m", RID, 3)
    items = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks]
    items.append(b"data: " + json.dumps({"choices": [], "switchboard": final}).encode() + b"\n\n")
    items.append(b"data: [DONE]\n\n")
    events = [e for e in mt.translate_stream(iter(items), tr) if e.startswith(b"event: ")]
    parsed = [json.loads(e.split(b"\ndata: ", 1)[1]) for e in events]
    assert parsed[0]["type"] == "message_start"
    if not any(isinstance(c.get("error"), dict) and c["error"].get("code") for c in chunks):
        assert parsed[-1]["type"] == "message_stop" and parsed[-2]["type"] == "message_delta"
        sent = "".join(d["delta"]["content"] for c in chunks for d in c.get("choices", [])
                       if d.get("index", 0) == 0 and isinstance(d.get("delta"), dict)
                       and isinstance(d["delta"].get("content"), str))
        got = "".join(p["delta"]["text"] for p in parsed if p["type"] == "content_block_delta"
                      and p["delta"]["type"] == "text_delta")
        assert got == sent
    opened = [p["index"] for p in parsed if p["type"] == "content_block_start"]
    closed = [p["index"] for p in parsed if p["type"] == "content_block_stop"]
    assert opened == list(range(len(opened))) and closed == opened[:len(closed)]


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "choices", "usage"]), JSONS), receipt)
def test_any_chat_answer_becomes_a_message(body: dict[str, Any], final: dict[str, Any]) -> None:
    msg = mt.from_chat(body, "m", "00000000-0000-0000-0000-000000000001", final)
    assert msg["type"] == "message" and msg["stop_reason"] in {"end_turn", "max_tokens", "tool_use", "refusal",
                                                               "stop_sequence"}
    assert msg["usage"]["output_tokens"] == final["completion_tokens"]


def test_tool_arguments_that_are_not_an_object_travel_as_sent() -> None:
    body = {"choices": [{"message": {"content": None, "tool_calls": [
        {"id": "c1", "function": {"name": "f", "arguments": "not json"}}]}, "finish_reason": "tool_calls"}]}
    msg = mt.from_chat(body, "m", "00000000-0000-0000-0000-000000000001",
                       {"prompt_tokens": 1, "completion_tokens": 1})
    assert msg["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": {"arguments": "not json"}}]
    assert msg["stop_reason"] == "tool_use"


def test_a_null_system_is_no_system_as_the_document_allows() -> None:
    # The fuzzer's schema-valid {"system": null} met 400 ("`system` must be a string or an array of text blocks").
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "system": None}
    assert mt.to_chat(body)["messages"] == [{"role": "user", "content": "hi"}]
