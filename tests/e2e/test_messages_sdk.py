"""POST /v1/messages and /v1/messages/count_tokens with the official `anthropic` SDK, against Switchboard served on
loopback and real fake providers of both wire formats (an Anthropic-style upstream and an OpenAI-compatible one):
JSON, streams with Anthropic's event types, tools (tool_use and tool_result), stop reasons, errors in Anthropic's
shape, the hostile max_tokens clamp, credits and receipts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import psycopg
import pytest
import requests

from tests.e2e.conftest import RATE_IN, RATE_OUT, Gateway, balance, ledger_sum, log_row
from tests.support.upstreams import REPLY, REPLY_WORDS

MODELS = ["e2e-an/echo-1", "e2e-oa/echo-1"]  # an Anthropic-style upstream, an OpenAI-compatible one (both x1.0)
WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture()
def client(gw: Gateway, member: Any) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gw.url, api_key=member.token, max_retries=0, timeout=30) as c:
        yield c


def _cost(prompt: int, completion: int) -> int:
    return (prompt * RATE_IN + completion * RATE_OUT) // 1000


@pytest.mark.parametrize("model", MODELS)
def test_messages_create_json_is_charged_and_logged(gw: Gateway, client: anthropic.Anthropic, member: Any, db: Any,
                                                    model: str) -> None:
    before = balance(db, member.id)
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=200, system="be brief",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]}])
    msg = raw.parse()
    assert msg.type == "message" and msg.role == "assistant" and msg.id.startswith("msg_")
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == REPLY
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    # The fake counts words: system (2) + user (2) = 4 prompt tokens, the reply 9.
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, REPLY_WORDS)
    charged = _cost(4, REPLY_WORDS)
    assert raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"
    assert balance(db, member.id) == before - charged
    assert ledger_sum(db, member.id) == balance(db, member.id)
    row = log_row(db, raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["credits"], row["status"]) == (4, REPLY_WORDS, charged, 200)
    upstream = (gw.an if "an" in model else gw.oa1).chat_requests()[-1].body
    if "an" in model:
        assert upstream["system"] == "be brief" and upstream["messages"][0]["role"] == "user"
    else:
        assert upstream["messages"][0] == {"role": "system", "content": "be brief"}


@pytest.mark.parametrize("model", MODELS)
def test_messages_stream_has_anthropic_events_and_settles(gw: Gateway, client: anthropic.Anthropic, member: Any,
                                                          db: Any, model: str) -> None:
    before = balance(db, member.id)
    stream = client.messages.create(model=model, max_tokens=200, stream=True,
                                    messages=[{"role": "user", "content": "hello there"}])
    with stream:
        events = list(stream)
    kinds = [e.type for e in events]  # the SDK skips `ping` events (the raw stream test below sees them)
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == REPLY
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "end_turn" and delta.usage.output_tokens == REPLY_WORDS
    assert balance(db, member.id) == before - _cost(2, REPLY_WORDS) == ledger_sum(db, member.id)
    # The helper that accumulates a stream gets the same message.
    with client.messages.stream(model=model, max_tokens=200,
                                messages=[{"role": "user", "content": "hello there"}]) as s:
        assert "".join(s.text_stream) == REPLY
        final = s.get_final_message()
    assert final.stop_reason == "end_turn" and final.content[0].text == REPLY


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tools_round_trip(gw: Gateway, client: anthropic.Anthropic, model: str, stream: bool) -> None:
    ask = [{"role": "user", "content": "Paris"}]
    if stream:
        with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER], messages=ask) as s:
            msg = s.get_final_message()
    else:
        msg = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=ask)
    assert msg.stop_reason == "tool_use"
    call = next(b for b in msg.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"echo": "Paris"} and call.id
    up = gw.an if "an" in model else gw.oa1
    sent = up.chat_requests()[-1].body
    if "an" in model:
        assert sent["tools"][0]["input_schema"] == WEATHER["input_schema"]
    else:
        assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    # The tool's result goes back; the model answers in text.
    follow = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=[
        *ask, {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name,
                                                  "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert follow.stop_reason == "end_turn" and follow.content[0].text == REPLY
    sent = up.chat_requests()[-1].body
    if "an" in model:
        result = sent["messages"][-1]["content"][0]
        assert result == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}
    else:
        assert sent["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
        assert sent["messages"][-2]["tool_calls"][0]["id"] == call.id


@pytest.mark.parametrize("model", MODELS)
def test_stop_reasons_max_tokens_and_stop_sequence(gw: Gateway, client: anthropic.Anthropic, model: str) -> None:
    cut = client.messages.create(model=model, max_tokens=3, messages=[{"role": "user", "content": "hi"}])
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "The quick brown"
    stopped = client.messages.create(model=model, max_tokens=100, stop_sequences=["fox"],
                                     messages=[{"role": "user", "content": "hi"}])
    assert stopped.content[0].text == "The quick brown"
    if "an" in model:  # an Anthropic provider says which sequence matched
        assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "fox")
    else:  # a chat completion only says "stop"
        assert stopped.stop_reason == "end_turn"


@pytest.mark.parametrize("model", MODELS)
def test_hostile_max_tokens_is_clamped_to_the_model(gw: Gateway, client: anthropic.Anthropic, model: str) -> None:
    msg = client.messages.create(model=model, max_tokens=200_000, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == REPLY
    up = gw.an if "an" in model else gw.oa1
    sent = up.chat_requests()[-1].body
    limits = [v for k, v in sent.items() if k in ("max_tokens", "max_completion_tokens")]
    assert limits and max(limits) <= 4096  # the model's maximum output, not the client's number


@pytest.mark.parametrize("model", MODELS)
def test_count_tokens(gw: Gateway, client: anthropic.Anthropic, model: str) -> None:
    small = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hello"}])
    big = client.messages.count_tokens(model=model, system="You are terse.", tools=[WEATHER],
                                       messages=[{"role": "user", "content": "hello " * 50}])
    assert 0 < small.input_tokens < big.input_tokens
    assert gw.an.chat_requests() == [] and gw.oa1.chat_requests() == []  # counted here, offline


def test_errors_take_anthropics_shape(gw: Gateway, client: anthropic.Anthropic, member: Any, make_user: Any) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=MODELS[0], max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                               thinking={"type": "enabled", "budget_tokens": 1024})
    assert bad.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "code": "untranslatable",
        "message": "`thinking` (extended thinking) cannot be translated for this route; leave it out."}}
    with pytest.raises(anthropic.BadRequestError) as doc:
        client.messages.create(model=MODELS[1], max_tokens=10, messages=[{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}]}])
    assert "messages[0].content[0].type" in doc.value.message
    with anthropic.Anthropic(base_url=gw.url, api_key="not-a-token", max_retries=0) as anon, \
            pytest.raises(anthropic.AuthenticationError) as unauth:
        anon.messages.create(model=MODELS[0], max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert unauth.value.body["type"] == "error" and unauth.value.body["error"]["type"] == "authentication_error"
    poor = make_user()  # no credits
    with anthropic.Anthropic(base_url=gw.url, api_key=poor.token, max_retries=0) as broke, \
            pytest.raises(anthropic.APIStatusError) as paid:
        broke.messages.create(model=MODELS[0], max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert paid.value.status_code == 402 and paid.value.body["error"]["type"] == "billing_error"
    gw.an.behaviour = "500"
    with pytest.raises(anthropic.APIStatusError) as failed:
        client.messages.create(model=MODELS[0], max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert failed.value.status_code == 502 and failed.value.body["error"]["code"] == "upstream_error"


def test_authorization_bearer_and_doubled_slashes_are_accepted(gw: Gateway, member: Any) -> None:
    with requests.Session() as s:
        s.trust_env = False
        resp = s.post(gw.url + "/v1//messages/", json={"model": MODELS[1], "max_tokens": 20, "messages": [
            {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {member.token}",
                                                          "anthropic-version": "2023-06-01"}, timeout=30)
        assert resp.status_code == 200 and resp.json()["type"] == "message"
        missing = s.post(gw.url + "/v1/messages", json={"model": MODELS[1]}, timeout=30)
        assert missing.status_code == 401 and missing.json()["type"] == "error"
        wrong = s.get(gw.url + "/v1/messages", headers={"x-api-key": member.token}, timeout=30)
        assert wrong.status_code == 405 and wrong.json()["error"]["type"] == "invalid_request_error"
        extra = s.post(gw.url + "/v1/messages", json={"model": MODELS[1], "max_tokens": 5, "nope": 1,
                                                      "messages": [{"role": "user", "content": "hi"}]},
                       headers={"x-api-key": member.token}, timeout=30)
        assert extra.status_code == 400 and "nope" in extra.json()["error"]["message"]


def test_the_raw_stream_names_every_event_and_ends_with_the_receipt(gw: Gateway, member: Any) -> None:
    with requests.Session() as s:
        s.trust_env = False
        resp = s.post(gw.url + "/v1/messages", stream=True, timeout=30, headers={"x-api-key": member.token},
                      json={"model": MODELS[1], "max_tokens": 50, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]})
        with resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            text = resp.content.decode()
    names = [line[len("event: "):] for line in text.splitlines() if line.startswith("event: ")]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names) == {"message_start", "ping", "content_block_start", "content_block_delta",
                          "content_block_stop", "message_delta", "message_stop"}
    assert ": switchboard {" in text and "[DONE]" not in text


def _log_by_request(gw: Gateway, db: Any, request_id: str, status: int) -> dict[str, Any]:
    deadline = time.time() + 10
    while True:
        gw.flush_logs()
        try:
            row = log_row(db, request_id)
        except AssertionError:
            row = None
        if (row and row["status"] == status) or time.time() > deadline:
            assert row is not None and row["status"] == status, row
            return row
        time.sleep(0.2)


def test_a_client_that_leaves_mid_stream_pays_for_what_it_got(gw: Gateway, member: Any, db: Any) -> None:
    gw.oa1.behaviour = "drip:0.3"
    before = balance(db, member.id)
    with requests.Session() as s:
        s.trust_env = False
        resp = s.post(gw.url + "/v1/messages", stream=True, timeout=30, headers={"x-api-key": member.token},
                      json={"model": MODELS[1], "max_tokens": 100, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]})
        request_id = resp.headers["x-request-id"]
        lines = resp.iter_lines()
        got = [next(lines) for _ in range(8)]
        assert b"event: message_start" in got
        resp.close()
    row = _log_by_request(gw, db, request_id, 499)
    assert row["usage_source"] == "estimated" and row["tokens_out"] < REPLY_WORDS
    assert before - balance(db, member.id) == row["credits"] < _cost(50, REPLY_WORDS)
    assert balance(db, member.id) == ledger_sum(db, member.id)


@pytest.mark.parametrize("model", MODELS)
def test_an_upstream_failure_mid_stream_is_an_error_event_and_refunded(gw: Gateway, member: Any, db: Any,
                                                                       model: str) -> None:
    (gw.an if "an" in model else gw.oa1).behaviour = "cut:3"
    before = balance(db, member.id)
    with requests.Session() as s:
        s.trust_env = False
        resp = s.post(gw.url + "/v1/messages", stream=True, timeout=30, headers={"x-api-key": member.token},
                      json={"model": model, "max_tokens": 100, "stream": True,
                            "messages": [{"role": "user", "content": "hi"}]})
        with resp:
            text = resp.content.decode()
    assert "event: error" in text and '"type":"error"' in text and "event: message_stop" not in text
    row = _log_by_request(gw, db, resp.headers["x-request-id"], 502)
    assert row["credits"] == 0 and balance(db, member.id) == before == ledger_sum(db, member.id)


def test_byok_per_request_through_the_messages_api_spends_no_credits(settings: Any, gw: Gateway, member: Any,
                                                                     db: Any) -> None:
    from tests.e2e.conftest import CANARY
    from tests.support.live import serve
    from webapp import create_app

    app = create_app(settings.with_overrides(byok_allow_private_urls=True))  # the fakes live on loopback
    headers = {"X-BYOK-API-Key": CANARY["byok"], "X-BYOK-Provider": "e2e-oa", "X-BYOK-Base-URL": gw.byok.base_url}
    try:
        with serve(app) as url, anthropic.Anthropic(base_url=url, api_key=member.token, max_retries=0,
                                                    default_headers=headers) as client:
            before = balance(db, member.id)
            raw = client.messages.with_raw_response.create(model="echo-1", max_tokens=50,
                                                           messages=[{"role": "user", "content": "hi"}])
            assert raw.parse().content[0].text == REPLY
            assert raw.headers["x-switchboard-mode"] == "byok" and raw.headers["x-switchboard-credits"] == "0.000000"
            assert balance(db, member.id) == before
            assert gw.byok.chat_requests()[-1].headers["authorization"] == f"Bearer {CANARY['byok']}"
            assert gw.oa1.chat_requests() == []
            app.extensions["switchboard"].logs.flush()
    finally:
        app.extensions["switchboard"].db.close()


def test_an_anthropic_provider_receives_the_body_as_sent_but_the_model_and_limit(gw: Gateway,
                                                                                 client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    messages = [{"role": "user", "content": "Paris"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                   "input": {"city": "Paris"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                              "content": [{"type": "text", "text": "no such city"}]}]}]
    client.messages.create(model=MODELS[0], max_tokens=100_000, system=system, messages=messages,
                           tools=[{**WEATHER, "cache_control": {"type": "ephemeral"}}],
                           metadata={"user_id": "u-1"}, extra_body={"metadata": {"user_id": "u-1", "task": "t1"}})
    sent = gw.an.chat_requests()[-1].body
    assert sent["system"] == system and sent["messages"] == messages
    assert sent["tools"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["metadata"] == {"user_id": "u-1"}  # Switchboard's own task is not forwarded
    assert sent["model"] == "echo-1" and sent["max_tokens"] <= 4096  # the route's model, the clamped limit
    # An OpenAI-compatible provider gets the chat translation of the same request.
    client.messages.create(model=MODELS[1], max_tokens=100, system=system, messages=messages, tools=[WEATHER])
    chat = gw.oa1.chat_requests()[-1].body
    assert chat["messages"][0] == {"role": "system", "content": "You are terse."}
    assert chat["messages"][-1] == {"role": "tool", "tool_call_id": "toolu_1", "content": "[tool error] no such city"}


@pytest.fixture()
def embedding_model(gw: Gateway, database_urls: tuple[str, str]) -> Iterator[None]:
    """`embed-msg-1`: an embedding model of the OpenAI-style and the Anthropic-style fake."""
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window,
                               max_output_tokens, kind)
                        select id, 'embed-msg-1', 500000, 0, 100000, 1, 'embedding' from public.llm_providers
                        where slug in ('e2e-oa', 'e2e-an') on conflict (provider_id, model) do nothing""")
        try:
            yield
        finally:
            conn.execute("delete from public.llm_model_rates where model = 'embed-msg-1'")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["e2e-oa/embed-msg-1", "e2e-an/embed-msg-1"])
def test_an_embedding_model_is_refused_in_anthropics_shape(gw: Gateway, client: anthropic.Anthropic, member: Any,
                                                          db: Any, embedding_model: None, model: str,
                                                          stream: bool) -> None:
    before = balance(db, member.id)
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                               stream=stream)
    assert bad.value.status_code == 400
    assert bad.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "code": "model_not_chat",
        "message": f"{model} is an embedding model; call /v1/embeddings."}}
    assert balance(db, member.id) == before == ledger_sum(db, member.id)
    assert gw.an.chat_requests() == [] and gw.oa1.chat_requests() == []  # nothing went upstream


@pytest.mark.parametrize("model", ["e2e-oa/embed-msg-1", "e2e-an/embed-msg-1", "embed-msg-1"])
def test_count_tokens_refuses_an_embedding_model(gw: Gateway, client: anthropic.Anthropic, embedding_model: None,
                                                 model: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "hi"}])
    assert bad.value.status_code == 400
    assert bad.value.body == {"type": "error", "error": {
        "type": "invalid_request_error", "code": "model_not_chat",
        "message": f"{model} is an embedding model; call /v1/embeddings."}}
    counted = client.messages.count_tokens(model=MODELS[0], messages=[{"role": "user", "content": "hi"}])
    assert counted.input_tokens > 0  # a chat model next to it is still counted
