"""/v1/embeddings end to end: the official openai SDK's `embeddings.create` -> Switchboard -> a fake OpenAI-style
provider on loopback. Member mode bills the input tokens at the model's input rate x multiplier, exactly; BYOK
spends nothing; a chat model and an Anthropic route are refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import psycopg
import pytest
import requests

from tests.e2e.conftest import CANARY, Gateway, balance, ledger_sum, log_row

EMBED_RATE = 500_000  # micro-credits per 1K input tokens: 500 micro-credits a token


@pytest.fixture()
def embed(gw: Gateway, database_urls: tuple[str, str]) -> Iterator[Gateway]:
    """`embed-1`, an embedding model of e2e-oa (x1) and e2e-oa2 (x1.5), and of e2e-an (which has no embeddings)."""
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window,
                               max_output_tokens, kind)
                        select id, 'embed-1', %s, 0, 100000, 1, 'embedding' from public.llm_providers
                        where slug in ('e2e-oa', 'e2e-oa2', 'e2e-an')
                        on conflict (provider_id, model) do nothing""", [EMBED_RATE])
        try:
            yield gw
        finally:
            conn.execute("delete from public.llm_model_rates where model = 'embed-1'")


def test_member_embeddings_charge_input_tokens_at_the_input_rate(embed: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    raw = embed.client(member.token).embeddings.with_raw_response.create(
        model="e2e-oa/embed-1", input=["the quick brown fox", "jumps"])
    result = raw.parse()
    assert [d.index for d in result.data] == [0, 1]
    assert result.data[0].embedding == [4.0, 0.5, 0.25]  # the SDK asked for base64 and decoded it
    assert result.usage.prompt_tokens == 5 and result.usage.total_tokens == 5
    expected = 5 * EMBED_RATE // 1000
    assert raw.headers["x-switchboard-credits"] == f"{expected / 1e6:.6f}"
    assert raw.headers["x-switchboard-usage"] == "measured"
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    sent = embed.oa1.requests[-1]
    assert sent.path == "/v1/embeddings" and sent.body["model"] == "embed-1"
    assert sent.body["input"] == ["the quick brown fox", "jumps"] and sent.body["encoding_format"] == "base64"
    assert sent.headers["authorization"] == f"Bearer {CANARY['oa1']}"
    embed.flush_logs()
    row = log_row(db, raw.headers["x-request-id"])
    assert (row["tokens_in"], row["tokens_out"], row["credits"], row["status"]) == (5, 0, expected, 200)


def test_multiplier_and_float_format_and_token_arrays(embed: Gateway, member: Any, db: Any) -> None:
    client = embed.client(member.token)
    before = balance(db, member.id)
    raw = client.embeddings.with_raw_response.create(model="e2e-oa2/embed-1", input=[[1, 2, 3], [4]],
                                                     encoding_format="float", dimensions=4)
    result = raw.parse()
    assert [d.embedding for d in result.data] == [[3.0, 0.5, 0.25, 0.125], [1.0, 0.5, 0.25, 0.125]]
    expected = -(-4 * EMBED_RATE * 3 // 2000)  # 4 tokens x 500 x 1.5
    assert raw.headers["x-switchboard-credits"] == f"{expected / 1e6:.6f}"
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)


def test_upstream_without_usage_is_billed_on_the_count(embed: Gateway, member: Any, db: Any) -> None:
    embed.oa1.behaviour = "no_usage"
    raw = embed.client(member.token).embeddings.with_raw_response.create(model="e2e-oa/embed-1", input="hello world")
    assert raw.headers["x-switchboard-usage"] == "estimated"
    counted = raw.parse().usage.prompt_tokens  # tiktoken: "hello world" is 2, plus a message's framing
    assert 2 <= counted <= 12 and raw.parse().usage.switchboard_estimated is True
    assert raw.headers["x-switchboard-credits"] == f"{counted * EMBED_RATE // 1000 / 1e6:.6f}"


def test_chat_model_and_anthropic_route_are_refused(embed: Gateway, member: Any, db: Any) -> None:
    client = embed.client(member.token)
    before = balance(db, member.id)
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="e2e-oa/echo-1", input="hi")
    assert err.value.body["code"] == "model_not_embedding" and err.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="e2e-an/embed-1", input="hi")
    assert err.value.body["code"] == "embeddings_not_supported"
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model="e2e-oa/embed-1", input="hi")
    assert err.value.body["code"] == "model_not_chat"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="e2e-oa/embed-1", messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["code"] == "model_not_chat" and err.value.body["param"] == "model"
    assert balance(db, member.id) == before == ledger_sum(db, member.id)
    assert [r for r in embed.oa1.requests if r.method == "POST"] == []


def test_hostile_inputs_are_refused_with_the_field(embed: Gateway, member: Any) -> None:
    headers = {"Authorization": f"Bearer {member.token}"}
    for body, param in (({"model": "e2e-oa/embed-1", "input": []}, "input"),
                        ({"model": "e2e-oa/embed-1", "input": [""]}, "input[0]"),
                        ({"model": "e2e-oa/embed-1", "input": [[-1]]}, "input[0][0]"),
                        ({"model": "e2e-oa/embed-1", "input": ["x"] * 2049}, "input"),
                        ({"model": "e2e-oa/embed-1", "input": "x", "dimensions": 0}, "dimensions"),
                        ({"model": "e2e-oa/embed-1", "input": True}, "input")):
        with requests.post(embed.url + "/v1/embeddings", json=body, headers=headers, timeout=10) as resp:
            assert resp.status_code == 400, body
            error = resp.json()["error"]
            assert error["code"] == "invalid_value" and error["param"] == param, (body, error)


@pytest.fixture()
def byok_url(settings: Any, embed: Gateway) -> Iterator[str]:
    """Switchboard allowing loopback BYOK base URLs (the e2e upstreams live there; only an operator may allow it)."""
    from tests.support.live import serve
    from webapp import create_app

    app = create_app(settings.with_overrides(byok_allow_private_urls=True))
    try:
        with serve(app) as url:
            yield url
            app.extensions["switchboard"].logs.flush()
    finally:
        app.extensions["switchboard"].db.close()


def test_byok_embeddings_spend_no_credits(embed: Gateway, byok_url: str, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    client = openai.OpenAI(base_url=byok_url + "/v1", api_key=member.token, max_retries=0, default_headers={
        "X-BYOK-API-Key": CANARY["byok"], "X-BYOK-Provider": "e2e-oa", "X-BYOK-Base-URL": embed.byok.base_url})
    raw = client.embeddings.with_raw_response.create(model="embed-1", input="one two three")
    assert raw.headers["x-switchboard-mode"] == "byok" and raw.headers["x-switchboard-credits"] == "0.000000"
    assert raw.parse().usage.prompt_tokens == 3
    assert embed.byok.requests[-1].headers["authorization"] == f"Bearer {CANARY['byok']}"
    assert embed.oa1.requests == []
    assert balance(db, member.id) == before == ledger_sum(db, member.id)
