"""/v1/responses end to end: the official openai SDK's `responses.create` (JSON, stream, tools) -> Switchboard on a
loopback port -> fake providers on loopback: one whose preset speaks the Responses API (passed through), an
OpenAI-compatible chat one and an Anthropic one (translated). Credits, receipts and log rows exact."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import openai
import psycopg
import pytest
import requests

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row
from tests.support.upstreams import REPLY, REPLY_WORDS

PROMPT = "say something nice"  # 3 words: the fakes count 3 input tokens
TOOL = {"type": "function", "name": "lookup", "description": "Look a thing up.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}


def cost(t_in: int, t_out: int, mult: float = 1.0) -> int:
    return int(-(-(t_in * 1000 + t_out * 2000) * mult // 1))


@pytest.fixture()
def passthrough(gw: Gateway, database_urls: tuple[str, str]) -> Iterator[Gateway]:
    """e2e-oa2 (x1.5) speaks the Responses API for the test."""
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("update public.llm_providers set responses_api = true where slug = 'e2e-oa2'")
        try:
            yield gw
        finally:
            conn.execute("update public.llm_providers set responses_api = false where slug = 'e2e-oa2'")


def create(gw: Gateway, user: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("model", "e2e-oa/echo-1")
    kwargs.setdefault("input", PROMPT)
    return gw.client(user.token).responses.with_raw_response.create(**kwargs)


def charged(raw: Any) -> int:
    return round(float(raw.headers["x-switchboard-credits"]) * 1_000_000)


# -- translated: OpenAI-compatible chat upstream ----------------------------------------------------------------

def test_translated_json_answer_charges_exact_credits(gw: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    raw = create(gw, member, instructions="be brief", max_output_tokens=50)
    response = raw.parse()
    assert response.output_text == REPLY
    assert response.status == "completed" and response.object == "response" and response.id.startswith("resp_")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, REPLY_WORDS)  # system + user words
    assert raw.headers["x-switchboard-provider"] == "e2e-oa" and raw.headers["x-switchboard-usage"] == "measured"
    expected = cost(5, REPLY_WORDS)
    assert charged(raw) == expected
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    sent = gw.oa1.chat_requests()[-1].body
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPT}]
    assert sent["max_tokens"] == 50 and "max_output_tokens" not in sent
    gw.flush_logs()
    row = log_row(db, raw.headers["x-request-id"])
    assert (row["credits"], row["tokens_in"], row["tokens_out"], row["status"]) == (expected, 5, REPLY_WORDS, 200)


def test_translated_stream_emits_typed_events_in_order(gw: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    stream = gw.client(member.token).responses.create(model="e2e-oa/echo-1", input=PROMPT, stream=True)
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == REPLY
    assert "response.output_text.done" in kinds and "response.output_item.done" in kinds
    final = events[-1].response
    assert final.output_text == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, REPLY_WORDS)
    receipt = (final.model_extra or {})["switchboard"]
    expected = cost(3, REPLY_WORDS)
    assert receipt["credits"] == f"{expected / 1e6:.6f}" and receipt["usage"] == "measured"
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)


def test_translated_function_tool_round_trip(gw: Gateway, member: Any) -> None:
    client = gw.client(member.token)
    first = client.responses.create(model="e2e-oa/echo-1", input=PROMPT, tools=[TOOL])
    call = first.output[0]
    assert call.type == "function_call" and call.name == "lookup"
    assert json.loads(call.arguments) == {"echo": PROMPT}
    sent = gw.oa1.chat_requests()[-1].body
    assert sent["tools"][0]["function"]["name"] == "lookup"
    second = client.responses.create(model="e2e-oa/echo-1", tools=[TOOL], input=[
        {"role": "user", "content": PROMPT},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}])
    assert second.output_text == REPLY
    messages = gw.oa1.chat_requests()[-1].body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}


def test_translated_stream_of_a_tool_call(gw: Gateway, member: Any) -> None:
    stream = gw.client(member.token).responses.create(model="e2e-oa/echo-1", input=PROMPT, tools=[TOOL],
                                                      stream=True)
    events = list(stream)
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(args) == {"echo": PROMPT}
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done and done[0].arguments == args
    final = events[-1].response
    assert final.output[0].type == "function_call" and final.output[0].arguments == args


def test_structured_output_becomes_response_format(gw: Gateway, member: Any) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
              "additionalProperties": False}
    create(gw, member, text={"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}})
    sent = gw.oa1.chat_requests()[-1].body
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "thing", "schema": schema, "strict": True}}


def test_hostile_output_limit_is_clamped_like_max_tokens(gw: Gateway, member: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        create(gw, member, max_output_tokens=10**9)
    assert err.value.body["param"] == "max_output_tokens"
    raw = create(gw, member, max_output_tokens=3)
    assert raw.parse().status == "incomplete"
    assert raw.parse().incomplete_details.reason == "max_output_tokens"
    assert raw.headers["x-switchboard-output-limit"] == "3"


def test_state_on_a_translated_route_is_refused_by_name(gw: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    for extra, param in (({"previous_response_id": "resp_123"}, "previous_response_id"), ({"store": True}, "store"),
                         ({"input": [{"type": "reasoning", "summary": []}]}, "input[0].type"),
                         ({"tools": [{"type": "web_search"}]}, "tools[0].type")):
        with pytest.raises(openai.BadRequestError) as err:
            create(gw, member, **extra)
        assert err.value.body["param"] == param, extra
        assert err.value.body["code"] in ("unsupported_parameter", "unpriceable_request")
    assert balance(db, member.id) == before == ledger_sum(db, member.id)
    assert gw.oa1.chat_requests() == []


def test_invalid_body_names_the_field(gw: Gateway, member: Any) -> None:
    url = gw.url + "/v1/responses"
    with requests.post(url, json={"model": "echo-1", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": 5}]}]}, headers={"Authorization": f"Bearer {member.token}"},
            timeout=10) as resp:
        assert resp.status_code == 400
        error = resp.json()["error"]
        assert error["param"] == "input[0].content[0].text" and error["code"] == "invalid_value"
        assert error["type"] == "invalid_request_error"


# -- translated: Anthropic upstream -------------------------------------------------------------------------------

def test_anthropic_route_answers_responses_json_and_stream(gw: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    client = gw.client(member.token)
    response = client.responses.create(model="e2e-an/echo-1", input=PROMPT, instructions="be brief")
    assert response.output_text == REPLY
    sent = gw.an.chat_requests()[-1].body
    assert sent["system"] in ("be brief", [{"type": "text", "text": "be brief"}])
    events = list(client.responses.create(model="e2e-an/echo-1", input=PROMPT, stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    assert events[-1].type == "response.completed"
    tool = client.responses.create(model="e2e-an/echo-1", input=PROMPT, tools=[TOOL])
    assert tool.output[0].type == "function_call" and json.loads(tool.output[0].arguments) == {"echo": PROMPT}
    assert balance(db, member.id) < before
    assert balance(db, member.id) == ledger_sum(db, member.id)


def test_structured_output_on_anthropic_is_a_forced_tool_answered_as_json_text(gw: Gateway, member: Any) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
    client = gw.client(member.token)
    text = {"format": {"type": "json_schema", "name": "thing", "schema": schema}}
    response = client.responses.create(model="e2e-an/echo-1", input=PROMPT, text=text)
    assert json.loads(response.output_text) == {"echo": PROMPT}
    assert [item.type for item in response.output] == ["message"]
    sent = gw.an.chat_requests()[-1].body
    assert sent["tools"][0]["name"] == "thing" and sent["tools"][0]["input_schema"] == schema
    assert sent["tool_choice"]["type"] == "tool" and sent["tool_choice"]["name"] == "thing"
    events = list(client.responses.create(model="e2e-an/echo-1", input=PROMPT, text=text, stream=True))
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert json.loads(streamed) == {"echo": PROMPT} and events[-1].response.output_text == streamed
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="e2e-an/echo-1", input=PROMPT, text=text, tools=[TOOL])
    assert "together with tools" in err.value.message


def test_image_input_reaches_anthropic_as_an_image_block(gw: Gateway, member: Any) -> None:
    gw.client(member.token).responses.create(model="e2e-an/echo-1", input=[{"role": "user", "content": [
        {"type": "input_text", "text": PROMPT},
        {"type": "input_image", "image_url": "https://example.com/cat.png"}]}])
    blocks = gw.an.chat_requests()[-1].body["messages"][0]["content"]
    assert {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}} in blocks


# -- passthrough: a preset that speaks the Responses API -----------------------------------------------------------

def test_passthrough_json_keeps_the_providers_object_and_charges_its_usage(passthrough: Gateway, member: Any,
                                                                           db: Any) -> None:
    gw = passthrough
    gw.oa2.cache_read_tokens = 2
    before = balance(db, member.id)
    raw = create(gw, member, model="e2e-oa2/echo-1", max_output_tokens=40, metadata={"task": "t1", "k": "v"})
    response = raw.parse()
    assert response.id == "resp_fake" and response.output_text == REPLY
    assert response.usage.input_tokens == 3 and response.usage.input_tokens_details.cached_tokens == 2
    sent = gw.oa2.requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.body["input"] == PROMPT and sent.body["max_output_tokens"] == 40 and sent.body["store"] is False
    assert sent.body["metadata"] == {"k": "v"}
    expected = cost(3, REPLY_WORDS, 1.5)  # no cached-input rate set: cached tokens cost the input rate
    assert charged(raw) == expected
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    gw.flush_logs()
    row = log_row(db, raw.headers["x-request-id"])
    assert (row["provider"], row["tokens_in"], row["tokens_out"], row["credits"]) == ("e2e-oa2", 3, REPLY_WORDS,
                                                                                      expected)
    assert row["cached_tokens"] == 2


def test_passthrough_stream_relays_provider_events_with_the_charge(passthrough: Gateway, member: Any,
                                                                   db: Any) -> None:
    gw = passthrough
    gw.oa2.reasoning_tokens = 4
    before = balance(db, member.id)
    events = list(gw.client(member.token).responses.create(model="e2e-oa2/echo-1", input=PROMPT, stream=True))
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
    final = events[-1]
    assert final.type == "response.completed" and final.response.id == "resp_fake"
    usage = final.response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (
        3, REPLY_WORDS + 4, 4)
    expected = cost(3, REPLY_WORDS + 4, 1.5)
    assert (final.response.model_extra or {})["switchboard"]["credits"] == f"{expected / 1e6:.6f}"
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    assert gw.oa2.requests[-1].body["stream"] is True


def test_passthrough_in_member_mode_refuses_provider_state(passthrough: Gateway, member: Any) -> None:
    for extra, param in (({"previous_response_id": "resp_1"}, "previous_response_id"), ({"store": True}, "store"),
                         ({"background": True}, "background"),
                         ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]},
                          "input[0].content[0].type"),
                         ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []},
                                     {"role": "user", "content": "go on"}]}, "input[0].type")):
        with pytest.raises(openai.BadRequestError) as err:
            create(passthrough, member, model="e2e-oa2/echo-1", **extra)
        assert err.value.body["param"] == param and err.value.body["code"] == "unsupported_parameter"
    assert passthrough.oa2.requests == []


def test_passthrough_stream_broken_midway_is_refunded(passthrough: Gateway, member: Any, db: Any) -> None:
    gw = passthrough
    before = balance(db, member.id)
    gw.oa2.behaviour = "error_event:4"
    events = list(gw.client(member.token).responses.create(model="e2e-oa2/echo-1", input=PROMPT, stream=True))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert balance(db, member.id) == before == ledger_sum(db, member.id)


def test_translated_stream_broken_midway_is_refunded(gw: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    gw.oa1.behaviour = "error_event:3"
    events = list(gw.client(member.token).responses.create(model="e2e-oa/echo-1", input=PROMPT, stream=True))
    assert [e.type for e in events][-2:] == ["error", "response.failed"]
    assert events[-2].code == "upstream_stream_interrupted"
    assert balance(db, member.id) == before == ledger_sum(db, member.id)


def test_trailing_slash_is_the_same_route(gw: Gateway, member: Any) -> None:
    with requests.post(gw.url + "/v1//responses/", json={"model": "e2e-oa/echo-1", "input": PROMPT},
                       headers={"Authorization": f"Bearer {member.token}"}, timeout=10) as resp:
        assert resp.status_code == 200 and resp.json()["output"][0]["content"][0]["text"] == REPLY



@pytest.mark.parametrize("model", ["e2e-oa/echo-1", "e2e-an/echo-1"])
def test_sdk_stream_helper_accumulates_our_events(gw: Gateway, member: Any, model: str) -> None:
    """The SDK's `responses.stream()` rebuilds the response from the events: they must be consistent."""
    client = gw.client(member.token)
    with client.responses.stream(model=model, input=PROMPT) as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == REPLY == final.output_text
    with client.responses.stream(model=model, input=PROMPT, tools=[TOOL]) as stream:
        final = stream.get_final_response()
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {"echo": PROMPT}


def test_client_leaving_a_responses_stream_is_billed_for_what_was_delivered(gw: Gateway, member: Any,
                                                                            db: Any) -> None:
    gw.oa1.behaviour = "drip:0.3"
    before = balance(db, member.id)
    resp = requests.post(gw.url + "/v1/responses", headers={"Authorization": f"Bearer {member.token}"},
                         stream=True, timeout=10, json={"model": "e2e-oa/echo-1", "input": PROMPT, "stream": True,
                                                        "max_output_tokens": 100})
    lines = resp.iter_lines()
    got: list[bytes] = []
    while b"event: response.output_text.delta" not in got and len(got) < 40:
        got.append(next(lines))
    assert b"event: response.output_text.delta" in got
    request_id = resp.headers["x-request-id"]
    resp.close()
    deadline = time.time() + 10
    row: dict[str, Any] = {}
    while time.time() < deadline:
        gw.flush_logs()
        with db.as_service() as conn:
            found = conn.execute("select row_to_json(l) from public.llm_request_logs l where request_id = %s",
                                 [request_id]).fetchone()
        if found and found[0]["status"] == 499:
            row = dict(found[0])
            break
        time.sleep(0.2)
    assert row and row["usage_source"] == "estimated" and row["tokens_out"] < REPLY_WORDS
    charged = before - balance(db, member.id)
    assert 0 < charged == row["credits"] < cost(20, REPLY_WORDS)
    assert balance(db, member.id) == ledger_sum(db, member.id)
