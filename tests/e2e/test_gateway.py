"""The /v1 gateway end to end: the official openai SDK -> Switchboard on a loopback port -> fake providers
(OpenAI-compatible and Anthropic wire protocols) on loopback. Real Postgres underneath."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import openai
import pytest
import requests

from tests.e2e.conftest import CANARY, Gateway, balance, ledger_sum, log_row
from tests.support.upstreams import REPLY, REPLY_WORDS
from webapp.services import tokens

MSG = [{"role": "user", "content": "say something nice"}]  # the fake upstream counts 3 prompt tokens


def cost(t_in: int, t_out: int, mult: float = 1.0) -> int:
    return int(-(-(t_in * 1000 + t_out * 2000) * mult // 1))


def chat(gw: Gateway, user: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("messages", MSG)
    kwargs.setdefault("model", "echo-1")
    raw = gw.client(user.token).chat.completions.with_raw_response.create(**kwargs)
    return raw


# -- member mode -----------------------------------------------------------------------------------------------

def test_member_chat_charges_exact_credits_from_measured_usage(gw: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    raw = chat(gw, member)
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-mode"] == "member"
    assert raw.headers["x-switchboard-provider"] == "e2e-oa"
    assert raw.headers["x-switchboard-usage"] == "measured"
    assert raw.headers["x-switchboard-key-source"] == "admin_db"
    expected = cost(3, REPLY_WORDS)
    assert raw.headers["x-switchboard-credits"] == f"{expected / 1e6:.6f}"
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    gw.flush_logs()
    row = log_row(db, raw.headers["x-request-id"])
    assert (row["mode"], row["provider"], row["credits"], row["status"]) == ("member", "e2e-oa", expected, 200)
    assert (row["tokens_in"], row["tokens_out"], row["usage_source"]) == (3, REPLY_WORDS, "measured")
    assert gw.oa1.chat_requests()[-1].headers["authorization"] == f"Bearer {CANARY['oa1']}"


def test_member_stream_relays_chunks_and_settles_on_usage(gw: Gateway, member: Any, db: Any) -> None:
    before = balance(db, member.id)
    stream = gw.client(member.token).chat.completions.create(
        model="echo-1", messages=MSG, stream=True, stream_options={"include_usage": True})
    pieces, usage, receipt = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
            receipt = getattr(chunk, "switchboard", None) or (chunk.model_extra or {}).get("switchboard")
    assert "".join(pieces) == REPLY
    assert usage is not None and usage.prompt_tokens == 3 and usage.completion_tokens == REPLY_WORDS
    assert receipt["usage"] == "measured"
    expected = cost(3, REPLY_WORDS)
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)
    sent = gw.oa1.chat_requests()[-1].body
    assert sent["stream"] is True and sent["stream_options"]["include_usage"] is True


def test_stream_without_upstream_usage_is_estimated_with_tiktoken(gw: Gateway, member: Any, db: Any) -> None:
    gw.oa1.behaviour = "no_usage"
    before = balance(db, member.id)
    stream = gw.client(member.token).chat.completions.create(model="echo-1", messages=MSG, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == REPLY
    gw.flush_logs()
    rows = _latest_log(db, member.id)
    assert rows["usage_source"] == "estimated"
    prompt = tokens.count_messages(MSG, "echo-1")
    expected = cost(prompt, tokens.count_text(REPLY, "echo-1"))
    assert rows["credits"] == expected == before - balance(db, member.id)


def test_anthropic_provider_json_and_stream(gw: Gateway, member: Any, db: Any) -> None:
    raw = chat(gw, member, model="e2e-an/echo-1", max_tokens=50)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-provider"] == "e2e-an"
    sent = gw.an.chat_requests()[-1]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == CANARY["an"]
    assert sent.body["max_tokens"] == 50
    stream = gw.client(member.token).chat.completions.create(model="e2e-an/echo-1", messages=MSG, stream=True,
                                                             stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert chunks[-1].usage.completion_tokens == REPLY_WORDS


def test_insufficient_balance_is_402_and_nothing_is_spent(gw: Gateway, make_user: Any, db: Any) -> None:
    poor = make_user()
    with pytest.raises(openai.APIStatusError) as err:
        chat(gw, poor, max_tokens=1000)
    assert err.value.status_code == 402
    assert err.value.body["code"] == "insufficient_credits"
    assert balance(db, poor.id) == 0 == ledger_sum(db, poor.id)
    assert gw.oa1.chat_requests() == []


def allow_dearer_fallbacks(gw: Gateway, user: Any) -> None:
    """e2e-oa2 (1.5x) is dearer than e2e-oa (1x): a fallback to it needs the user's consent."""
    resp = requests.put(gw.url + "/api/user/settings", json={"allow_dearer_fallbacks": True}, headers=user.headers,
                        timeout=10)
    assert resp.status_code == 200


@pytest.mark.parametrize("trigger", ["429", "500", "503", "refuse", "hang"])
def test_fallback_to_next_provider_before_first_byte(gw: Gateway, member: Any, db: Any, trigger: str) -> None:
    allow_dearer_fallbacks(gw, member)
    gw.oa1.behaviour = trigger
    gw.oa1.hang_seconds = 5
    before = balance(db, member.id)
    raw = chat(gw, member)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-provider"] == "e2e-oa2"
    path = raw.headers["x-switchboard-fallback"]
    assert path.startswith("e2e-oa:") and path.endswith("e2e-oa2:ok")
    expected = cost(3, REPLY_WORDS, 1.5)  # charged at the provider that served it
    assert raw.headers["x-switchboard-multiplier"] == "1.5"
    assert balance(db, member.id) == before - expected == ledger_sum(db, member.id)


def test_stream_fallback_on_429(gw: Gateway, member: Any) -> None:
    allow_dearer_fallbacks(gw, member)
    gw.oa1.behaviour = "429"
    with gw.client(member.token).chat.completions.with_streaming_response.create(
            model="echo-1", messages=MSG, stream=True) as resp:
        assert resp.headers["x-switchboard-provider"] == "e2e-oa2"
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == REPLY


def test_no_fallback_when_user_turned_it_off_and_full_refund(gw: Gateway, member: Any, db: Any) -> None:
    resp = requests.put(gw.url + "/api/user/settings", json={"fallbacks_enabled": False}, headers=member.headers,
                        timeout=10)
    assert resp.status_code == 200
    gw.oa1.behaviour = "500"
    before = balance(db, member.id)
    with pytest.raises(openai.APIStatusError) as err:
        chat(gw, member)
    assert err.value.status_code == 502
    assert err.value.body["code"] == "upstream_error"
    assert balance(db, member.id) == before == ledger_sum(db, member.id)
    assert gw.oa2.chat_requests() == []


def test_non_retryable_upstream_error_does_not_fall_back(gw: Gateway, member: Any, db: Any) -> None:
    gw.oa1.behaviour = "400"
    before = balance(db, member.id)
    with pytest.raises(openai.BadRequestError) as err:
        chat(gw, member)
    assert err.value.body["code"] == "upstream_bad_request"
    assert gw.oa2.chat_requests() == []
    assert balance(db, member.id) == before


def test_stream_cut_midway_is_refunded_in_full(gw: Gateway, member: Any, db: Any) -> None:
    gw.oa1.behaviour = "cut:3"
    before = balance(db, member.id)
    stream = gw.client(member.token).chat.completions.create(model="echo-1", messages=MSG, stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    time.sleep(0.2)
    assert balance(db, member.id) == before == ledger_sum(db, member.id)
    gw.flush_logs()
    assert _latest_log(db, member.id)["error_code"] == "upstream_stream_interrupted"


def test_client_disconnect_mid_stream_is_billed_for_what_was_delivered(gw: Gateway, member: Any, db: Any) -> None:
    gw.oa1.behaviour = "drip:0.3"
    before = balance(db, member.id)
    resp = requests.post(gw.url + "/v1/chat/completions", headers=member.headers, stream=True, timeout=10,
                         json={"model": "echo-1", "messages": MSG, "stream": True, "max_tokens": 100})
    lines = resp.iter_lines()
    got = [next(lines) for _ in range(3)]
    assert any(line.startswith(b"data: ") for line in got)
    resp.close()
    deadline = time.time() + 10
    while time.time() < deadline:
        gw.flush_logs()
        row = _latest_log(db, member.id, required=False)
        if row and row["status"] == 499:
            break
        time.sleep(0.2)
    assert row and row["status"] == 499 and row["usage_source"] == "estimated"
    full = cost(3, REPLY_WORDS)
    charged = before - balance(db, member.id)
    assert 0 < charged < full + cost(tokens.count_messages(MSG, "echo-1") - 3, 0)
    assert row["tokens_out"] < REPLY_WORDS
    assert charged == row["credits"]
    assert balance(db, member.id) == ledger_sum(db, member.id)


def test_concurrent_streams_never_overspend_a_small_balance(gw: Gateway, make_user: Any, db: Any) -> None:
    from webapp.repos import credits as credits_repo

    user = make_user()
    prompt = tokens.count_messages(MSG, "echo-1")
    one = cost(prompt, 50, 1.5)  # the reservation is priced at the dearest candidate route (e2e-oa2, 1.5x)
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, one * 3 + one // 2, "small", None)
    outcomes: list[str] = []

    def run() -> None:
        try:
            stream = gw.client(user.token).chat.completions.create(model="echo-1", messages=MSG, stream=True,
                                                                   max_tokens=50)
            "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            outcomes.append("ok")
        except openai.APIStatusError as exc:
            outcomes.append(str(exc.status_code))

    gw.oa1.behaviour = "drip:0.05"
    threads = [threading.Thread(target=run) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(outcomes) == 10
    assert outcomes.count("ok") >= 3 and set(outcomes) <= {"ok", "402", "429"}
    final = balance(db, user.id)
    assert final >= 0 and final == ledger_sum(db, user.id)


def test_task_override_from_header_routes_to_its_provider(gw: Gateway, member: Any) -> None:
    resp = requests.put(gw.url + "/api/user/settings", headers=member.headers, timeout=10,
                        json={"task_overrides": {"summarize": {"provider": "e2e-an", "model": "echo-2"}}})
    assert resp.status_code == 200, resp.text
    raw = gw.client(member.token, default_headers={"X-Switchboard-Task": "summarize"}) \
        .chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.headers["x-switchboard-provider"] == "e2e-an"
    assert raw.headers["x-switchboard-model"] == "echo-2"
    raw = chat(gw, member, metadata={"task": "summarize"})
    assert raw.headers["x-switchboard-provider"] == "e2e-an"
    assert "metadata" not in gw.an.chat_requests()[-1].body


def test_user_priorities_choose_the_provider(gw: Gateway, member: Any) -> None:
    resp = requests.put(gw.url + "/api/user/settings", headers=member.headers, timeout=10,
                        json={"provider_priorities": ["e2e-an", "e2e-oa"]})
    assert resp.status_code == 200
    assert chat(gw, member).headers["x-switchboard-provider"] == "e2e-an"


# -- BYOK ---------------------------------------------------------------------------------------------------------

def _byok_headers(gw: Gateway, **extra: str) -> dict[str, str]:
    return {"X-BYOK-API-Key": CANARY["byok"], "X-BYOK-Provider": "e2e-oa", **extra}


def test_byok_header_key_never_spends_credits_or_uses_admin_key(settings: Any, member: Any, db: Any,
                                                                gw: Gateway) -> None:
    # The e2e upstreams live on loopback, which only an operator may allow for user-supplied URLs.
    from tests.support.live import serve
    from webapp import create_app

    app = create_app(settings.with_overrides(byok_allow_private_urls=True))
    try:
        with serve(app) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key=member.token, max_retries=0,
                                   default_headers=_byok_headers(gw, **{"X-BYOK-Base-URL": gw.byok.base_url}))
            before = balance(db, member.id)
            raw = client.chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
            assert raw.parse().choices[0].message.content == REPLY
            assert raw.headers["x-switchboard-mode"] == "byok"
            assert raw.headers["x-switchboard-credits"] == "0.000000"
            assert balance(db, member.id) == before
            sent = gw.byok.chat_requests()[-1]
            assert sent.headers["authorization"] == f"Bearer {CANARY['byok']}"
            assert gw.oa1.chat_requests() == [] and gw.oa2.chat_requests() == []
            # A failing BYOK upstream never falls back to member mode.
            gw.byok.behaviour = "500"
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(model="echo-1", messages=MSG)
            assert gw.oa1.chat_requests() == [] and gw.oa2.chat_requests() == []
            assert balance(db, member.id) == before
            client.close()
            app.extensions["switchboard"].logs.flush()
    finally:
        app.extensions["switchboard"].db.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:7f00:1]", "[::ffff:127.0.0.1]", "169.254.169.254",
                                  "10.0.0.8", "localhost", "[::1]"])
def test_byok_base_url_to_private_address_is_refused(gw: Gateway, member: Any, db: Any, host: str) -> None:
    port = gw.byok.port
    client = gw.client(member.token, default_headers=_byok_headers(
        gw, **{"X-BYOK-Base-URL": f"http://{host}:{port}/v1"}))
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.status_code in (400, 502)
    assert err.value.body["code"] in ("base_url_not_allowed", "upstream_unreachable")
    assert gw.byok.chat_requests() == []


def test_byok_stored_key_mode(gw: Gateway, settings: Any, member: Any, db: Any) -> None:
    resp = requests.put(gw.url + "/api/user/llm/keys/e2e-oa", headers=member.headers, timeout=10,
                        json={"api_key": CANARY["byok"]})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["key"]["last4"] == CANARY["byok"][-4:]
    assert CANARY["byok"] not in resp.text
    resp = requests.put(gw.url + "/api/user/settings", headers=member.headers, timeout=10,
                        json={"llm_mode": "byok"})
    assert resp.status_code == 200
    before = balance(db, member.id)
    # Stored key for e2e-oa, whose preset URL is the oa1 upstream: that upstream only accepts the admin key,
    # so a 401 proves the user's own key (not the admin's) was sent.
    with pytest.raises(openai.APIStatusError) as err:
        chat(gw, member)
    assert err.value.status_code == 400 and err.value.body["code"] == "upstream_auth_failed"
    assert CANARY["byok"] not in json.dumps(err.value.body)
    assert gw.oa1.chat_requests()[-1].headers["authorization"] == f"Bearer {CANARY['byok']}"
    assert gw.oa2.chat_requests() == []
    assert balance(db, member.id) == before


def test_models_lists_what_the_user_can_use(gw: Gateway, member: Any) -> None:
    ids = {m.id for m in gw.client(member.token).models.list()}
    assert {"e2e-oa/echo-1", "e2e-an/echo-1", "e2e-oa2/echo-2"} <= ids
    requests.put(gw.url + "/api/user/settings", headers=member.headers, json={"llm_mode": "byok"}, timeout=10)
    assert {m.id for m in gw.client(member.token).models.list()} == set()


# -- errors -------------------------------------------------------------------------------------------------------

def test_missing_or_bad_token_gets_openai_error_shape(gw: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        gw.client("not-a-token").chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.status_code == 401
    resp = requests.post(gw.url + "/v1/chat/completions", json={}, timeout=10)
    assert resp.status_code == 401
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("body,param", [
    ({"messages": MSG}, "model"),
    ({"model": "echo-1"}, "messages"),
    ({"model": "echo-1", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "echo-1", "messages": MSG, "max_tokens": -1}, "max_tokens"),
    ({"model": "echo-1", "messages": MSG, "stream": "yes"}, "stream"),
])
def test_invalid_body_is_400_with_param(gw: Gateway, member: Any, body: dict[str, Any], param: str) -> None:
    resp = requests.post(gw.url + "/v1/chat/completions", json=body, headers=member.headers, timeout=10)
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == param


def test_unknown_model_is_404(gw: Gateway, member: Any) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        chat(gw, member, model="no-such-model")
    assert err.value.body["code"] == "model_not_found"


def _latest_log(db: Any, user_id: str, required: bool = True) -> dict[str, Any] | None:
    with db.as_service() as conn:
        row = conn.execute("select row_to_json(l) from public.llm_request_logs l where user_id = %s"
                           " order by created_at desc limit 1", [user_id]).fetchone()
    if required:
        assert row is not None
    return dict(row[0]) if row else None


def test_zz_canary_keys_never_appear_in_logs_rows_or_responses(gw: Gateway, db: Any) -> None:
    """Runs last in this module: every canary key used above is searched for everywhere it must not be."""
    gw.flush_logs()
    with db.as_service() as conn:
        rows = [r[0] for r in conn.execute("select row_to_json(l)::text from public.llm_request_logs l")]
        rows += [r[0] for r in conn.execute("select row_to_json(l)::text from public.credit_ledger l")]
    haystacks = {"log lines": gw.log_text.getvalue(), "log rows": "\n".join(rows)}
    assert rows, "the requests above wrote log rows"
    for secret in CANARY.values():
        for where, text in haystacks.items():
            assert secret not in text, f"a key leaked into {where}"


def test_every_v1_answer_carries_a_request_id(gw: Gateway, member: Any, make_user: Any) -> None:
    ok = requests.post(gw.url + "/v1/chat/completions", headers=member.headers, timeout=10,
                       json={"model": "echo-1", "messages": MSG})
    poor = make_user()
    short = requests.post(gw.url + "/v1/chat/completions", headers=poor.headers, timeout=10,
                          json={"model": "echo-1", "messages": MSG})
    anonymous = requests.get(gw.url + "/v1/models", timeout=10)
    assert (ok.status_code, short.status_code, anonymous.status_code) == (200, 402, 401)
    for resp in (ok, short, anonymous):
        assert len(resp.headers["X-Request-Id"]) == 36
