"""Cached, cache-write and reasoning tokens priced right, end to end: both wire formats (an Anthropic upstream
reporting cache reads and writes on top of input_tokens, an OpenAI one reporting cached and reasoning tokens inside
its counts), JSON and streams, through /v1/chat/completions and /v1/messages. Every charge is computed by hand,
multiplier included, and matches the balance, the ledger, the receipt and the log row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import anthropic
import psycopg
import pytest
import requests
from flask import Flask

from tests.api.test_settings_page import sign_in
from tests.e2e.conftest import CANARY, Gateway, _provider, balance, ledger_sum, log_row
from tests.support.upstreams import REPLY_WORDS
from webapp.config import Settings
from webapp.crypto import KeyRing

# micro-credits per 1K tokens: a token costs input 1,000 / cached 100 / cache write 1,250 / output 2,000 micro-credits
PROMPT = "one two three four five six seven eight nine ten"  # 10 prompt tokens for the fakes


@pytest.fixture(scope="module")
def split_providers(gateway: Gateway, settings: Settings, database_urls: tuple[str, str]) -> Iterator[None]:
    keyring = KeyRing(settings.encryption_keys)
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        _provider(conn, "split-an", "anthropic", gateway.an.base_url, "1.25", 20, keyring, CANARY["an"])
        _provider(conn, "split-oa", "openai", gateway.oa1.base_url, "1.5", 21, keyring, CANARY["oa1"])
        conn.execute("""update public.llm_model_rates set cached_input_rate = 100000, cache_write_rate = 1250000
                        where provider_id in (select id from public.llm_providers
                                              where slug in ('split-an', 'split-oa'))""")
    yield
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("update public.llm_providers set enabled = false where slug in ('split-an', 'split-oa')")


def _check(gw: Gateway, member: Any, db: Any, before: int, request_id: str, expected: int,
           split: tuple[int, int, int]) -> None:
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    row = log_row(db, request_id)
    assert row["credits"] == expected
    assert (row["cached_tokens"], row["cache_write_tokens"], row["reasoning_tokens"]) == split
    with requests.Session() as s:  # the user's receipt shows the split too
        s.trust_env = False
        receipt = s.get(f"{gw.url}/api/user/llm/receipts/{request_id}", timeout=30,
                        headers={"Authorization": f"Bearer {member.token}"}).json()["receipt"]
    assert (receipt["cached_tokens"], receipt["cache_write_tokens"], receipt["reasoning_tokens"]) == split
    assert receipt["credits_micro"] == expected


# Anthropic wire: input_tokens 10 + cache_read 4 + cache_creation 3 = 17 prompt tokens, 9 output.
# (10 x 1,000 + 4 x 100 + 3 x 1,250 + 9 x 2,000) = 10,000 + 400 + 3,750 + 18,000 = 32,150; x 1.25 = 40,187.5
# -> rounded up: 40,188
ANTHROPIC_CHARGE = 40_188
# OpenAI wire: prompt 10 of which 6 cached; completion 9 + 5 reasoning = 14.
# (4 x 1,000 + 6 x 100 + 14 x 2,000) = 4,000 + 600 + 28,000 = 32,600; x 1.5 = 48,900
OPENAI_CHARGE = 48_900


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_anthropic_wire(gw: Gateway, member: Any, db: Any, split_providers: None,
                                         stream: bool) -> None:
    gw.an.cache_read_tokens, gw.an.cache_creation_tokens = 4, 3
    before = balance(db, member.id)
    client = gw.client(member.token)
    messages = [{"role": "user", "content": PROMPT}]
    if stream:
        chunks = list(client.chat.completions.create(model="split-an/echo-1", messages=messages, stream=True,
                                                     stream_options={"include_usage": True}))
        receipt = chunks[-1].model_extra["switchboard"]
        assert (receipt["prompt_tokens"], receipt["cached_tokens"], receipt["cache_write_tokens"]) == (17, 4, 3)
        request_id = receipt["request_id"]
    else:
        raw = client.chat.completions.with_raw_response.create(model="split-an/echo-1", messages=messages)
        assert raw.headers["x-switchboard-credits"] == f"{ANTHROPIC_CHARGE / 1e6:.6f}"
        assert raw.parse().usage.prompt_tokens == 17
        request_id = raw.headers["x-request-id"]
    _check(gw, member, db, before, request_id, ANTHROPIC_CHARGE, (4, 3, 0))


def test_the_admin_log_and_its_csv_show_the_split(gw: Gateway, member: Any, make_user: Any,
                                                  split_providers: None) -> None:
    gw.oa1.cache_read_tokens, gw.oa1.reasoning_tokens = 6, 5
    raw = gw.client(member.token).chat.completions.with_raw_response.create(
        model="split-oa/echo-1", messages=[{"role": "user", "content": PROMPT}])
    request_id = raw.headers["x-request-id"]
    admin = make_user(admin=True)
    with requests.Session() as s:
        s.trust_env = False
        entry = s.get(f"{gw.url}/api/admin/logs/{request_id}", timeout=30,
                      headers={"Authorization": f"Bearer {admin.token}"}).json()["log"]
        assert (entry["cached_tokens"], entry["cache_write_tokens"], entry["reasoning_tokens"]) == (6, 0, 5)
        csv_text = s.get(f"{gw.url}/api/admin/logs", params={"format": "csv", "user": member.id}, timeout=30,
                         headers={"Authorization": f"Bearer {admin.token}"}).text
    header, *rows = csv_text.splitlines()
    cols = header.split(",")
    row = next(r.split(",") for r in rows if request_id in r)
    assert [row[cols.index(c)] for c in ("cached_tokens", "cache_write_tokens", "reasoning_tokens")] == ["6", "0", "5"]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_completions_openai_wire(gw: Gateway, member: Any, db: Any, split_providers: None,
                                      stream: bool) -> None:
    gw.oa1.cache_read_tokens, gw.oa1.reasoning_tokens = 6, 5
    before = balance(db, member.id)
    client = gw.client(member.token)
    messages = [{"role": "user", "content": PROMPT}]
    if stream:
        chunks = list(client.chat.completions.create(model="split-oa/echo-1", messages=messages, stream=True,
                                                     stream_options={"include_usage": True}))
        receipt = chunks[-1].model_extra["switchboard"]
        assert (receipt["completion_tokens"], receipt["cached_tokens"], receipt["reasoning_tokens"]) == (14, 6, 5)
        assert receipt["credits"] == f"{OPENAI_CHARGE / 1e6:.6f}"
        request_id = receipt["request_id"]
    else:
        raw = client.chat.completions.with_raw_response.create(model="split-oa/echo-1", messages=messages)
        body = raw.parse()
        assert body.usage.completion_tokens == REPLY_WORDS + 5
        assert body.usage.completion_tokens_details.reasoning_tokens == 5
        request_id = raw.headers["x-request-id"]
    _check(gw, member, db, before, request_id, OPENAI_CHARGE, (6, 0, 5))


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["split-an/echo-1", "split-oa/echo-1"])
def test_messages_api_shows_and_charges_the_split(gw: Gateway, member: Any, db: Any, split_providers: None,
                                                   model: str, stream: bool) -> None:
    gw.an.cache_read_tokens, gw.an.cache_creation_tokens = 4, 3
    gw.oa1.cache_read_tokens, gw.oa1.reasoning_tokens = 6, 5
    anthropic_wire = model.startswith("split-an")
    before = balance(db, member.id)
    with anthropic.Anthropic(base_url=gw.url, api_key=member.token, max_retries=0, timeout=30) as client:
        if stream:
            with client.messages.stream(model=model, max_tokens=100,
                                        messages=[{"role": "user", "content": PROMPT}]) as s:
                msg = s.get_final_message()
                request_id = s.response.headers["x-request-id"]
        else:
            raw = client.messages.with_raw_response.create(model=model, max_tokens=100,
                                                           messages=[{"role": "user", "content": PROMPT}])
            msg, request_id = raw.parse(), raw.headers["x-request-id"]
    usage = msg.usage
    if anthropic_wire:  # as Anthropic reports it: input_tokens excludes the cache reads and writes
        assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens,
                usage.output_tokens) == (10, 4, 3, REPLY_WORDS)
        _check(gw, member, db, before, request_id, ANTHROPIC_CHARGE, (4, 3, 0))
    else:
        assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens,
                usage.output_tokens) == (4, 6, 0, REPLY_WORDS + 5)
        _check(gw, member, db, before, request_id, OPENAI_CHARGE, (6, 0, 5))


def _platform_split(s: requests.Session, gw: Gateway, admin: Any) -> list[int]:
    totals = s.get(f"{gw.url}/api/admin/usage", timeout=30,
                   headers={"Authorization": f"Bearer {admin.token}"}).json()["totals"]
    return [totals[k] for k in ("cached_tokens", "cache_write_tokens", "reasoning_tokens")]


def test_usage_totals_and_the_settings_usage_section_show_the_split(gw: Gateway, member: Any, make_user: Any,
                                                                    app: Flask, split_providers: None) -> None:
    gw.an.cache_read_tokens, gw.an.cache_creation_tokens = 4, 3
    gw.oa1.cache_read_tokens, gw.oa1.reasoning_tokens = 6, 5
    admin = make_user(admin=True)
    client = gw.client(member.token)
    with requests.Session() as s:
        s.trust_env = False
        platform_before = _platform_split(s, gw, admin)
        for model in ("split-an/echo-1", "split-oa/echo-1"):
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT}])
        platform_after = _platform_split(s, gw, admin)
        body = s.get(f"{gw.url}/api/user/llm/usage", params={"group_by": "provider"}, timeout=30,
                     headers={"Authorization": f"Bearer {member.token}"}).json()
        csv_text = s.get(f"{gw.url}/api/user/llm/usage", params={"group_by": "provider", "format": "csv"},
                         timeout=30, headers={"Authorization": f"Bearer {member.token}"}).text
    split = ("cached_tokens", "cache_write_tokens", "reasoning_tokens")
    assert [after - before for before, after in zip(platform_before, platform_after, strict=True)] == [10, 3, 5]
    # Anthropic wire: 17 in (4 cached, 3 written), 9 out; OpenAI wire: 10 in (6 cached), 14 out (5 reasoning).
    totals = body["totals"]
    assert [totals[k] for k in ("requests", "tokens_in", "tokens_out", *split)] == [2, 27, 23, 10, 3, 5]
    assert totals["credits_micro"] == ANTHROPIC_CHARGE + OPENAI_CHARGE
    by_provider = {b["provider"]: [b[k] for k in split] for b in body["buckets"]}
    assert by_provider == {"split-an": [4, 3, 0], "split-oa": [6, 0, 5]}
    header, *rows = [line.split(",") for line in csv_text.splitlines()]
    assert sorted([r[header.index(k)] for k in split] for r in rows) == [["4", "3", "0"], ["6", "0", "5"]]
    page = sign_in(app, member).get("/settings/usage?range=7d", hx=True).get_data(as_text=True)
    line = " ".join(re.search(r'<p class="muted" id="usage-split">(.*?)</p>', page, re.S)[1].split())
    assert line == ("Of 27 tokens in, 10 cached (read from the provider's prompt cache) and 3 cache write; "
                    "of 23 tokens out, 5 reasoning.")


def test_the_quote_shows_each_rate_and_prices_the_prompt_at_the_dearest(gw: Gateway, member: Any,
                                                                        split_providers: None) -> None:
    with requests.Session() as s:
        s.trust_env = False
        quote = s.post(f"{gw.url}/api/user/llm/quote", timeout=30, headers={"Authorization": f"Bearer {member.token}"},
                       json={"prompt": PROMPT, "max_tokens": 100, "model": "split-an/echo-1"}).json()
    route = quote["routes"][0]
    assert route["rates"] == {"input_per_1k": "1.000000", "cached_input_per_1k": "0.100000",
                              "cache_write_per_1k": "1.250000", "output_per_1k": "2.000000"}
    # prompt tokens at the cache-write rate (1,250 a token) + 100 output at 2,000, x 1.25, rounded up
    assert route["max_credits_micro"] == -(-(route["prompt_tokens"] * 1250 + 100 * 2000) * 5 // 4)
    assert quote["reserve_credits_micro"] >= route["max_credits_micro"]
