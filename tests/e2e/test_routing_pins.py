"""Routing that does what the user said, end to end: the official openai SDK -> Switchboard on loopback -> fake
providers on loopback, real Postgres. A pin (`provider/model`) is served by that provider only; a disabled pinned
provider is a clear error naming it; a fallback never costs more than the reserved route unless the user allows
dearer fallbacks (and the reservation is for the first route, to the micro-credit); every failed answer names the
provider(s) tried and carries X-Switchboard-Fallback; a stream without include_usage ends with its receipt as an SSE
comment the SDK skips; cached input tokens are charged at the model's cached-input rate."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import psycopg
import pytest
import requests

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row
from tests.support.upstreams import REPLY, REPLY_WORDS, FakeUpstream, start_anthropic_upstream, start_openai_upstream
from webapp.config import Settings
from webapp.crypto import KeyRing, admin_aad
from webapp.services import budget, tokens

MSG = [{"role": "user", "content": "say something nice"}]  # the fake upstreams count 3 prompt tokens
RATE_IN, RATE_OUT, RATE_CACHED = 1_000_000, 2_000_000, 250_000  # micro-credits per 1K tokens


@dataclass
class Routing:
    ollama: FakeUpstream  # "rt-ollama" and "rt-lms" both offer rt-shared
    lms: FakeUpstream
    cheap: FakeUpstream  # "rt-cheap" (1x) and "rt-dear" (2x) both offer rt-fb
    dear: FakeUpstream
    an: FakeUpstream  # "rt-an" (Anthropic wire) offers rt-cache with a cached-input rate; rt-oac (OpenAI) too
    oac: FakeUpstream
    ids: dict[str, str]

    def all(self) -> list[FakeUpstream]:
        return [self.ollama, self.lms, self.cheap, self.dear, self.an, self.oac]


def _provider(conn: psycopg.Connection, keyring: KeyRing, slug: str, name: str, style: str, up: FakeUpstream,
              mult: str, order: int, models: list[str], cached_rate: int | None = None) -> str:
    row = conn.execute(
        """insert into public.llm_providers (slug, name, api_style, base_url, default_model, enabled,
               credit_multiplier, byok_allowed, custom_base_url_allowed, sort_order)
           values (%s, %s, %s, %s, %s, true, %s, true, false, %s) returning id::text""",
        [slug, name, style, up.base_url, models[0], mult, order]).fetchone()
    assert row is not None
    for model in models:
        conn.execute("""insert into public.llm_model_rates (provider_id, model, input_rate, output_rate, context_window)
                        values (%s, %s, %s, %s, 8192)""", [row[0], model, RATE_IN, RATE_OUT])
        if cached_rate is not None:
            conn.execute("update public.llm_model_rates set cached_input_rate = %s where provider_id = %s",
                         [cached_rate, row[0]])
    assert up.api_key
    ciphertext, kid = keyring.encrypt(up.api_key, admin_aad(row[0]))
    conn.execute("""insert into public.llm_admin_keys (provider_id, ciphertext, key_id, last4, label)
                    values (%s, %s, %s, %s, 'routing')""", [row[0], ciphertext, kid, up.api_key[-4:]])
    return str(row[0])


@pytest.fixture(scope="module")
def routing(gateway: Gateway, settings: Settings, database_urls: tuple[str, str]) -> Iterator[Routing]:
    def key(tag: str) -> str:
        return f"sk-routing-{tag}-{uuid.uuid4().hex[:12]}"

    ups = Routing(start_openai_upstream(api_key=key("ollama")), start_openai_upstream(api_key=key("lms")),
                  start_openai_upstream(api_key=key("cheap")), start_openai_upstream(api_key=key("dear")),
                  start_anthropic_upstream(api_key="sk-ant-" + key("an")), start_openai_upstream(api_key=key("oac")),
                  {})
    keyring = KeyRing(settings.encryption_keys)
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        ups.ids = {
            "rt-ollama": _provider(conn, keyring, "rt-ollama", "RT Ollama", "openai", ups.ollama, "1.0", 901,
                                   ["rt-shared"]),
            "rt-lms": _provider(conn, keyring, "rt-lms", "RT LM Studio", "openai", ups.lms, "1.0", 902, ["rt-shared"]),
            "rt-cheap": _provider(conn, keyring, "rt-cheap", "RT Cheap", "openai", ups.cheap, "1.0", 903, ["rt-fb"]),
            "rt-dear": _provider(conn, keyring, "rt-dear", "RT Dear", "openai", ups.dear, "2.0", 904, ["rt-fb"]),
            "rt-an": _provider(conn, keyring, "rt-an", "RT Anthropic", "anthropic", ups.an, "1.0", 905, ["rt-cache"],
                               RATE_CACHED),
            "rt-oac": _provider(conn, keyring, "rt-oac", "RT OpenAI cached", "openai", ups.oac, "1.5", 906,
                                ["rt-cache-oa"], RATE_CACHED),
        }
    yield ups
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        conn.execute("delete from public.llm_providers where id = any(%s::uuid[])", [list(ups.ids.values())])
    for up in ups.all():
        up.stop()


@pytest.fixture()
def rt(routing: Routing, gw: Gateway, admin_conn: psycopg.Connection) -> Iterator[Routing]:
    for up in routing.all():
        up.reset()
        up.cache_read_tokens = up.cache_creation_tokens = 0
    yield routing
    admin_conn.execute("update public.llm_providers set enabled = true where id = any(%s::uuid[])",
                       [list(routing.ids.values())])
    for up in routing.all():
        up.reset()
        up.cache_read_tokens = up.cache_creation_tokens = 0


def put_settings(gw: Gateway, user: Any, **values: Any) -> None:
    resp = requests.put(gw.url + "/api/user/settings", json=values, headers=user.headers, timeout=10)
    assert resp.status_code == 200, resp.text


def cost(t_in: int, t_out: int, mult: float = 1.0) -> int:
    return math.ceil((t_in * RATE_IN + t_out * RATE_OUT) * mult / 1000)


# -- pins ------------------------------------------------------------------------------------------------------

def test_a_pin_is_served_by_its_provider_only_even_when_it_fails(gw: Gateway, rt: Routing, member: Any,
                                                                 db: Any) -> None:
    put_settings(gw, member, allow_dearer_fallbacks=True, provider_priorities=["rt-lms", "rt-ollama"])
    client = gw.client(member.token)
    raw = client.chat.completions.with_raw_response.create(model="rt-ollama/rt-shared", messages=MSG)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-provider"] == "rt-ollama" and raw.headers["x-switchboard-fallback"] == \
        "rt-ollama:ok"
    assert rt.lms.chat_requests() == []
    # The pinned provider fails: the answer says so; the other provider offering the model is never asked.
    rt.ollama.behaviour = "500"
    before = balance(db, member.id)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="rt-ollama/rt-shared", messages=MSG)
    assert err.value.response.status_code == 502
    assert err.value.response.headers["x-switchboard-fallback"] == "rt-ollama:500"
    assert "RT Ollama (rt-ollama)" in err.value.message and "rt-ollama:500" in err.value.message
    assert rt.lms.chat_requests() == []
    assert balance(db, member.id) == before == ledger_sum(db, member.id)  # refunded in full
    # A bare model follows the user's order and falls back.
    raw = client.chat.completions.with_raw_response.create(model="rt-shared", messages=MSG)
    assert raw.headers["x-switchboard-provider"] == "rt-lms"
    rt.ollama.behaviour, rt.lms.behaviour = None, "503"
    raw = client.chat.completions.with_raw_response.create(model="rt-shared", messages=MSG)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-fallback"] == "rt-lms:503 > rt-ollama:ok"


def test_a_pin_to_a_disabled_provider_is_refused_naming_it(gw: Gateway, rt: Routing, member: Any, db: Any,
                                                           admin_conn: psycopg.Connection) -> None:
    admin_conn.execute("update public.llm_providers set enabled = false where slug = 'rt-ollama'")
    client = gw.client(member.token)
    before = balance(db, member.id)
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as err:
            client.chat.completions.create(model="rt-ollama/rt-shared", messages=MSG, stream=stream)
        assert err.value.code == "provider_disabled"
        assert "'rt-ollama'" in err.value.message and "never served by another provider" in err.value.message
        headers = err.value.response.headers
        assert headers["x-switchboard-fallback"] == "rt-ollama:disabled"
        assert headers["x-switchboard-provider"] == "rt-ollama" and headers["x-request-id"]
    assert rt.lms.chat_requests() == [] and rt.ollama.chat_requests() == []
    assert balance(db, member.id) == before
    # The same model, unpinned, is served by the provider that still offers it.
    raw = client.chat.completions.with_raw_response.create(model="rt-shared", messages=MSG)
    assert raw.headers["x-switchboard-provider"] == "rt-lms"
    # ...and /v1/models no longer lists the disabled provider's model.
    ids = {m.id for m in client.models.list()}
    assert "rt-lms/rt-shared" in ids and "rt-ollama/rt-shared" not in ids


def test_a_task_override_is_a_pin_too(gw: Gateway, rt: Routing, member: Any) -> None:
    put_settings(gw, member, allow_dearer_fallbacks=True,
                 task_overrides={"summarize": {"provider": "rt-cheap", "model": "rt-fb"}})
    rt.cheap.behaviour = "429"
    with pytest.raises(openai.RateLimitError) as err:
        gw.client(member.token).chat.completions.create(model="rt-shared", messages=MSG,
                                                        extra_headers={"X-Switchboard-Task": "summarize"})
    assert err.value.response.headers["x-switchboard-fallback"] == "rt-cheap:429"
    assert rt.dear.chat_requests() == [] and rt.lms.chat_requests() == []


def test_byok_header_cannot_move_a_pin_to_another_provider(gw: Gateway, rt: Routing, member: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        gw.client(member.token).chat.completions.create(
            model="rt-ollama/rt-shared", messages=MSG,
            extra_headers={"X-BYOK-API-Key": "sk-my-own-key-123456", "X-BYOK-Provider": "rt-lms"})
    assert err.value.code == "byok_provider_mismatch"
    assert rt.lms.chat_requests() == [] and rt.ollama.chat_requests() == []


# -- dearer fallbacks ------------------------------------------------------------------------------------------

def _reserved(db: Any, request_id: str) -> int:
    with db.as_service() as conn:
        row = conn.execute("select amount from public.credit_reservations where request_id = %s",
                           [request_id]).fetchone()
    assert row is not None
    return int(row[0])


def _expected_reservation(mult: float, max_tokens: int) -> int:
    prompt = budget.reserved_prompt(tokens.count_messages(MSG, "rt-fb"))
    return cost(prompt, max_tokens, mult)


def test_no_dearer_fallback_unless_allowed_and_the_reservation_is_the_first_routes(
        gw: Gateway, rt: Routing, member: Any, db: Any) -> None:
    put_settings(gw, member, provider_priorities=["rt-cheap", "rt-dear"])
    client = gw.client(member.token)
    # Off (the default): the reservation is for the cheap first route, to the micro-credit.
    raw = client.chat.completions.with_raw_response.create(model="rt-fb", messages=MSG, max_tokens=50)
    assert raw.headers["x-switchboard-provider"] == "rt-cheap"
    assert _reserved(db, raw.headers["x-request-id"]) == _expected_reservation(1.0, 50)
    # The cheap route fails: the dearer one is not tried, and the answer says what was.
    rt.cheap.behaviour = "500"
    before = balance(db, member.id)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="rt-fb", messages=MSG, max_tokens=50)
    assert err.value.response.headers["x-switchboard-fallback"] == "rt-cheap:500"
    assert "RT Cheap (rt-cheap)" in err.value.message
    assert rt.dear.chat_requests() == []
    assert balance(db, member.id) == before == ledger_sum(db, member.id)
    # On: reserved at the dearest route (2x), served by it, charged at its multiplier.
    put_settings(gw, member, allow_dearer_fallbacks=True)
    raw = client.chat.completions.with_raw_response.create(model="rt-fb", messages=MSG, max_tokens=50)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-provider"] == "rt-dear"
    assert raw.headers["x-switchboard-fallback"] == "rt-cheap:500 > rt-dear:ok"
    assert _reserved(db, raw.headers["x-request-id"]) == _expected_reservation(2.0, 50)
    assert raw.headers["x-switchboard-credits"] == f"{cost(3, REPLY_WORDS, 2.0) / 1e6:.6f}"


def test_a_quote_for_a_model_reserves_exactly_what_the_gateway_reserves(gw: Gateway, rt: Routing, member: Any,
                                                                        db: Any) -> None:
    put_settings(gw, member, provider_priorities=["rt-cheap", "rt-dear"])
    prompt = "how much will this cost me"
    for allow, first, served in ((False, "rt-cheap", ["rt-cheap"]), (True, "rt-cheap", ["rt-cheap", "rt-dear"])):
        put_settings(gw, member, allow_dearer_fallbacks=allow)
        quote = requests.post(gw.url + "/api/user/llm/quote", headers=member.headers, timeout=10,
                              json={"prompt": prompt, "max_tokens": 60, "model": "rt-fb"}).json()
        assert [r["provider"] for r in quote["routes"]] == served and quote["routes"][0]["provider"] == first
        raw = gw.client(member.token).chat.completions.with_raw_response.create(
            model="rt-fb", messages=[{"role": "user", "content": prompt}], max_tokens=60)
        assert _reserved(db, raw.headers["x-request-id"]) == quote["reserve_credits_micro"]
    # Pinned: the quote plans on the pinned provider alone, as the gateway does.
    quote = requests.post(gw.url + "/api/user/llm/quote", headers=member.headers, timeout=10,
                          json={"prompt": prompt, "model": "rt-dear/rt-fb"}).json()
    assert [r["provider"] for r in quote["routes"]] == ["rt-dear"]


def test_a_cheaper_fallback_is_kept_when_dearer_ones_are_not_allowed(gw: Gateway, rt: Routing, member: Any,
                                                                     db: Any) -> None:
    put_settings(gw, member, provider_priorities=["rt-dear", "rt-cheap"])
    rt.dear.behaviour = "refuse"
    raw = gw.client(member.token).chat.completions.with_raw_response.create(model="rt-fb", messages=MSG,
                                                                             max_tokens=40)
    assert raw.headers["x-switchboard-provider"] == "rt-cheap"
    assert raw.headers["x-switchboard-fallback"].startswith("rt-dear:") and \
        raw.headers["x-switchboard-fallback"].endswith("rt-cheap:ok")
    assert _reserved(db, raw.headers["x-request-id"]) == _expected_reservation(2.0, 40)
    assert raw.headers["x-switchboard-credits"] == f"{cost(3, REPLY_WORDS, 1.0) / 1e6:.6f}"


def test_every_failed_answer_names_the_providers_tried(gw: Gateway, rt: Routing, member: Any) -> None:
    put_settings(gw, member, allow_dearer_fallbacks=True, provider_priorities=["rt-cheap", "rt-dear"])
    rt.cheap.behaviour, rt.dear.behaviour = "500", "hang"
    rt.dear.hang_seconds = 5  # longer than the gateway's 2 s read timeout (tests/e2e/conftest.py)
    resp = requests.post(gw.url + "/v1/chat/completions", json={"model": "rt-fb", "messages": MSG},
                         headers=member.headers, timeout=30)
    assert resp.status_code == 504
    err = resp.json()["error"]
    assert err["code"] == "upstream_timeout"
    assert "RT Cheap (rt-cheap)" in err["message"] and "RT Dear (rt-dear)" in err["message"]
    assert resp.headers["X-Switchboard-Fallback"] == "rt-cheap:500 > rt-dear:timeout"
    assert resp.headers["X-Switchboard-Provider"] == "rt-dear"
    # A 4xx from the upstream (not retried) names its provider too.
    rt.cheap.behaviour = "400"
    resp = requests.post(gw.url + "/v1/chat/completions", json={"model": "rt-fb", "messages": MSG},
                         headers=member.headers, timeout=30)
    assert resp.status_code == 400 and resp.headers["X-Switchboard-Fallback"] == "rt-cheap:400"
    assert "rt-cheap" in resp.json()["error"]["message"]


# -- a stream's closing receipt --------------------------------------------------------------------------------

def test_a_stream_without_include_usage_ends_with_its_receipt_comment(gw: Gateway, rt: Routing, member: Any,
                                                                      db: Any) -> None:
    before = balance(db, member.id)
    resp = requests.post(gw.url + "/v1/chat/completions", headers=member.headers, timeout=30, stream=True,
                         json={"model": "rt-cheap/rt-fb", "messages": MSG, "stream": True})
    raw = b"".join(resp.iter_content(None)).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    comment = events[-2]
    assert comment.startswith(": switchboard {")
    receipt = json.loads(comment.removeprefix(": switchboard "))
    charged = cost(3, REPLY_WORDS)
    assert receipt["credits"] == f"{charged / 1e6:.6f}" and receipt["request_id"] == resp.headers["X-Request-Id"]
    assert (receipt["provider"], receipt["model"], receipt["fallback_path"]) == ("rt-cheap", "rt-fb", ["rt-cheap:ok"])
    assert (receipt["prompt_tokens"], receipt["completion_tokens"], receipt["usage"]) == (3, REPLY_WORDS, "measured")
    assert balance(db, member.id) == before - charged
    # The same charge from the receipt endpoint, by the answer's request id.
    gw.flush_logs()
    stored = requests.get(f"{gw.url}/api/user/llm/receipts/{receipt['request_id']}", headers=member.headers,
                          timeout=10).json()["receipt"]
    assert (stored["credits_micro"], stored["state"]) == (charged, "settled")
    chunks = [json.loads(e.removeprefix("data: ")) for e in events if e.startswith("data: {")]
    assert chunks and all(c.get("usage") is None for c in chunks), "usage was not asked for"


def test_an_interrupted_stream_ends_with_its_error_and_a_zero_receipt(gw: Gateway, rt: Routing, member: Any,
                                                                     db: Any) -> None:
    rt.cheap.behaviour = "cut:3"
    before = balance(db, member.id)
    resp = requests.post(gw.url + "/v1/chat/completions", headers=member.headers, timeout=30, stream=True,
                         json={"model": "rt-cheap/rt-fb", "messages": MSG, "stream": True})
    events = [e for e in b"".join(resp.iter_content(None)).decode().split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    error = json.loads(events[-3].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_stream_interrupted" and "RT Cheap (rt-cheap)" in error["message"]
    receipt = json.loads(events[-2].removeprefix(": switchboard "))
    assert receipt["credits"] == "0.000000" and receipt["fallback_path"] == ["rt-cheap:ok"]
    assert balance(db, member.id) == before == ledger_sum(db, member.id)


def test_the_openai_sdk_streams_past_the_receipt_comment(gw: Gateway, rt: Routing, member: Any, db: Any) -> None:
    stream = gw.client(member.token).chat.completions.create(model="rt-cheap/rt-fb", messages=MSG, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert all(c.usage is None for c in chunks)
    gw.flush_logs()
    request_id = stream.response.headers["x-request-id"]
    assert log_row(db, request_id)["credits"] == cost(3, REPLY_WORDS)


# -- cached input tokens ---------------------------------------------------------------------------------------

def _cached_cost(prompt: int, cached: int, completion: int, mult: float) -> int:
    return math.ceil(((prompt - cached) * RATE_IN + cached * RATE_CACHED + completion * RATE_OUT) * mult / 1000)


def test_cached_prompt_tokens_are_charged_at_the_cached_rate(gw: Gateway, rt: Routing, member: Any,
                                                             db: Any) -> None:
    client = gw.client(member.token)
    prompt = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]  # 10 tokens
    # OpenAI wire: prompt_tokens (10) includes prompt_tokens_details.cached_tokens (6).
    rt.oac.cache_read_tokens = 6
    before = balance(db, member.id)
    raw = client.chat.completions.with_raw_response.create(model="rt-oac/rt-cache-oa", messages=prompt)
    expected = _cached_cost(10, 6, REPLY_WORDS, 1.5)
    assert expected < cost(10, REPLY_WORDS, 1.5)
    assert raw.headers["x-switchboard-credits"] == f"{expected / 1e6:.6f}"
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    # Anthropic wire: input_tokens (10) excludes cache reads (4) and writes (2); writes cost the input rate.
    rt.an.cache_read_tokens, rt.an.cache_creation_tokens = 4, 2
    before = balance(db, member.id)
    stream = client.chat.completions.create(model="rt-an/rt-cache", messages=prompt, stream=True,
                                            stream_options={"include_usage": True})
    usage = [c.usage for c in stream if c.usage][-1]
    assert usage.prompt_tokens == 16
    expected = _cached_cost(16, 4, REPLY_WORDS, 1.0)
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)


def test_a_cached_count_an_upstream_cannot_mean_never_charges_more_or_less_than_it_should(
        gw: Gateway, rt: Routing, member: Any, db: Any) -> None:
    prompt = [{"role": "user", "content": "one two three four five"}]  # 5 tokens
    rt.oac.cache_read_tokens = 50  # more cached tokens than the prompt has: at most the whole prompt is cached
    before = balance(db, member.id)
    gw.client(member.token).chat.completions.create(model="rt-oac/rt-cache-oa", messages=prompt)
    assert balance(db, member.id) == before - _cached_cost(5, 5, REPLY_WORDS, 1.5)
