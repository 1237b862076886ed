"""Property tests of the Responses <-> chat translation (services/responses_translate.py): it never crashes on a
request the declaration accepts, and nothing is dropped silently — every text, image, call and output reaches the
chat body, and everything else is listed by its field path (a translated route then refuses it with a 400)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webapp.api.schemas import parse
from webapp.api.schemas.responses import ResponsesRequest
from webapp.errors import AppError
from webapp.services import responses_translate as tr
from webapp.services.responses_stream import StreamTranslator

TEXT = st.text(min_size=1, max_size=20)
KNOWN_PART_TYPES = st.sampled_from(["input_file", "input_audio", "computer_screenshot", "x"])
NAME = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)


@st.composite
def parts(draw: Any, role: str) -> list[dict[str, Any]]:
    choices = [st.builds(lambda t: {"type": "input_text", "text": t}, TEXT),
               st.builds(lambda t: {"type": "output_text", "text": t}, TEXT),
               st.builds(lambda t: {"type": "refusal", "refusal": t}, TEXT),
               st.builds(lambda u: {"type": "input_image", "image_url": "https://img.example/" + u}, NAME),
               st.builds(lambda k: {"type": k, "file_id": "file_1"}, KNOWN_PART_TYPES)]
    return draw(st.lists(st.one_of(choices), min_size=1, max_size=4))


@st.composite
def items(draw: Any) -> dict[str, Any]:
    kind = draw(st.sampled_from(["message", "bare_message", "function_call", "function_call_output", "other"]))
    if kind in ("message", "bare_message"):
        role = draw(st.sampled_from(["user", "assistant", "system", "developer"]))
        content = draw(st.one_of(TEXT, parts(role)))
        item = {"role": role, "content": content}
        return item if kind == "bare_message" else {"type": "message", **item}
    if kind == "function_call":
        return {"type": "function_call", "call_id": draw(NAME), "name": draw(NAME),
                "arguments": json.dumps({"q": draw(TEXT)})}
    if kind == "function_call_output":
        return {"type": "function_call_output", "call_id": draw(NAME), "output": draw(TEXT)}
    return {"type": draw(st.sampled_from(["reasoning", "item_reference", "web_search_call"])), "id": "x"}


@st.composite
def requests_(draw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "m", "input": draw(st.one_of(TEXT, st.lists(items(), min_size=1, max_size=6)))}
    if draw(st.booleans()):
        body["instructions"] = draw(TEXT)
    if draw(st.booleans()):
        body["tools"] = draw(st.lists(st.one_of(
            st.builds(lambda n: {"type": "function", "name": n, "parameters": {"type": "object"}}, NAME),
            st.builds(lambda k: {"type": k}, st.sampled_from(["web_search", "file_search", "code_interpreter"]))),
            max_size=3))
    if draw(st.booleans()):
        body["text"] = {"format": draw(st.sampled_from([
            {"type": "text"}, {"type": "json_object"},
            {"type": "json_schema", "name": "thing", "schema": {"type": "object"}, "strict": True}]))}
    for name, value in draw(st.dictionaries(st.sampled_from(["truncation", "include", "background", "zzz_new",
                                                             "store", "previous_response_id", "temperature"]),
                                            st.sampled_from([None, "disabled", [], False, True, "resp_1", 0.5]),
                                            max_size=3)).items():
        body[name] = value
    return body


def _texts_in_chat(chat: dict[str, Any]) -> str:
    return json.dumps(chat["messages"], ensure_ascii=False)


def _expect_carried(item: dict[str, Any], blob: str) -> None:
    def has(text: str) -> None:
        assert json.dumps(text, ensure_ascii=False)[1:-1] in blob, text

    if "role" in item:
        content = item["content"]
        if isinstance(content, str):
            has(content)
            return
        for part in content:
            if part["type"] in ("input_text", "output_text"):
                has(part["text"])
            elif part["type"] == "refusal":
                has(part["refusal"])
            elif part["type"] == "input_image" and item["role"] == "user":
                has(part["image_url"])
    elif item["type"] == "function_call":
        has(item["arguments"])
        has(item["call_id"])
    elif item["type"] == "function_call_output":
        has(item["output"])


@settings(max_examples=300, deadline=None)
@given(requests_())
def test_translation_carries_everything_or_names_it(body: dict[str, Any]) -> None:
    try:
        req = parse(ResponsesRequest, body, v1=True)
    except AppError as err:
        assert err.status == 400 and err.code == "invalid_value"
        return
    try:
        translation = tr.to_chat(req)
    except AppError as err:  # only when nothing at all could be asked of a chat provider
        assert err.code == "unsupported_parameter" and err.field
        return
    chat, refused = translation.chat, dict(translation.refused)
    blob = _texts_in_chat(chat)
    if isinstance(body["input"], str):
        assert {"role": "user", "content": body["input"]} in chat["messages"]
    else:
        for i, item in enumerate(body["input"]):
            if item.get("type", "message") not in ("message", "function_call", "function_call_output"):
                assert f"input[{i}].type" in refused
                continue
            _expect_carried(item, blob)
            content = item.get("content")
            for j, part in enumerate(content if isinstance(content, list) else []):
                carried = part["type"] in ("input_text", "output_text", "refusal") or (
                    part["type"] == "input_image" and item["role"] == "user")
                assert carried or f"input[{i}].content[{j}].type" in refused
    if body.get("instructions"):
        assert chat["messages"][0] == {"role": "system", "content": body["instructions"]}
    for i, tool in enumerate(body.get("tools") or []):
        if tool["type"] == "function":
            assert chat["tools"][i]["function"]["name"] == tool["name"]
        else:
            assert f"tools[{i}].type" in refused
    for name in ("zzz_new",):
        if name in body:
            assert name in refused
    if body.get("previous_response_id") is not None:
        assert "previous_response_id" in refused
    if body.get("store") is True:
        assert "store" in refused
    for name, ok in (("truncation", (None, "disabled")), ("include", (None, [])), ("background", (None, False))):
        if name in body and body[name] not in ok:
            assert name in refused
    if not translation.refused:
        assert tr.refusal(translation) is None
    else:
        err = tr.refusal(translation)
        assert err is not None and err.status == 400 and err.field == translation.refused[0][0]


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                     max_size=3), max_leaves=12)
REQ = parse(ResponsesRequest, {"model": "m", "input": "hi"}, v1=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["choices", "model", "usage", "id"]), JSONISH, max_size=4),
       st.one_of(st.none(), st.text(max_size=30)))
def test_from_chat_never_crashes_and_keeps_the_text(completion: dict[str, Any], content: str | None) -> None:
    if content is not None:
        completion = {**completion, "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                                 "finish_reason": "stop"}]}
    out = tr.from_chat(completion, REQ, "resp_1", 0, tr.usage(1, 2))
    texts = [p["text"] for item in out["output"] if item["type"] == "message" for p in item["content"]
             if p["type"] == "output_text"]
    if content:
        assert texts == [content]
    assert out["object"] == "response" and out["usage"]["total_tokens"] == 3


@st.composite
def chunk_streams(draw: Any) -> list[Any]:
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["text", "call", "finish", "junk"]))
        if kind == "text":
            out.append({"choices": [{"index": 0, "delta": {"content": draw(st.text(max_size=6))}}]})
        elif kind == "call":
            call: dict[str, Any] = {"index": draw(st.integers(0, 2)), "function": {"arguments": draw(
                st.text(max_size=6))}}
            if draw(st.booleans()):
                call.update(id=draw(NAME), function={**call["function"], "name": draw(NAME)})
            out.append({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
        elif kind == "finish":
            out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": draw(
                st.sampled_from(["stop", "length", "tool_calls"]))}]})
        else:
            out.append(draw(st.dictionaries(st.sampled_from(["choices", "model", "x"]), JSONISH, max_size=2)))
    return out


@settings(max_examples=300, deadline=None)
@given(chunk_streams())
def test_stream_events_are_numbered_and_add_up(chunks: list[Any]) -> None:
    t = StreamTranslator(REQ, "resp_1", 0, "m")
    events = t.start()
    for chunk in chunks:
        events += t.chunk(chunk)
    events += t.complete(tr.usage(1, 1), {"credits": "0.000000"})
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] in ("response.completed", "response.incomplete")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    final = events[-1]["response"]
    final_text = "".join(p["text"] for item in final["output"] if item["type"] == "message"
                         for p in item["content"])
    assert final_text == text
    for item in final["output"]:
        if item["type"] == "function_call":
            deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
                             and e["item_id"] == item["id"])
            assert item["arguments"] == deltas
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    assert sorted(added) == list(range(len(final["output"])))


def test_failure_events_follow_the_stream() -> None:
    t = StreamTranslator(REQ, "resp_1", 0, "m")
    events = [*t.start(), *t.chunk({"choices": [{"index": 0, "delta": {"content": "hi"}}]})]
    events += t.fail({"code": "upstream_stream_interrupted", "message": "broke"}, None)
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "upstream_stream_interrupted"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
     "input[0].content[0].file_id"),
    ({"input": "x", "reasoning": {"summary": "auto"}}, "reasoning.summary"),
    ({"input": "x", "tool_choice": {"type": "web_search"}}, "tool_choice.type"),
    ({"input": [{"role": "assistant", "content": [{"type": "input_image", "image_url": "https://x/y.png"}]}]},
     "input[0].content[0].type"),
])
def test_untranslatable_parts_are_named(body: dict[str, Any], param: str) -> None:
    translation = tr.to_chat(parse(ResponsesRequest, {"model": "m", **body}, v1=True))
    err = tr.refusal(translation)
    assert err is not None and err.field == param and err.code == "unsupported_parameter"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(JSONISH, st.fixed_dictionaries({"type": st.sampled_from(["message", "function_call"]),
                                                          "content": JSONISH, "arguments": JSONISH,
                                                          "name": JSONISH})), max_size=4), JSONISH)
def test_a_hostile_passthrough_answer_never_crashes_the_accounting(output: list[Any], usage: Any) -> None:
    from webapp.providers.openai_responses import chat_shape

    shaped = chat_shape({"object": "response", "output": output, "usage": usage})
    message = shaped["choices"][0]["message"]
    assert isinstance(message["content"], str)
    assert shaped["usage"] is None or set(shaped["usage"]) >= {"prompt_tokens", "completion_tokens"}


EVENT_TYPES = st.sampled_from(["response.created", "response.output_text.delta", "response.function_call_arguments"
                               ".delta", "response.completed", "response.incomplete", "response.failed", "error",
                               "response.output_item.added", "x"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.builds(lambda t, d, r: json.dumps({"type": t, "delta": d, "response": r}), EVENT_TYPES, JSONISH, JSONISH),
    st.text(max_size=10), st.just("[DONE]")), max_size=8))
def test_a_hostile_passthrough_stream_is_relayed_or_refused_never_crashes(datas: list[str]) -> None:
    from webapp.providers.base import UpstreamFailure
    from webapp.providers.openai_responses import translate_responses_events
    from webapp.providers.sse import SSEEvent

    chunks = []
    try:
        for chunk in translate_responses_events([SSEEvent("message", d) for d in datas], "http://up/v1", None):
            chunks.append(chunk)
    except UpstreamFailure as exc:
        assert exc.kind == "protocol" and not exc.retryable
        return
    assert chunks and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")  # ended by its final event
    for chunk in chunks:
        assert isinstance(chunk["_event"], dict)
        for choice in chunk["choices"]:
            content = choice["delta"].get("content")
            assert content is None or isinstance(content, str)
