"""Money against hostile clients and lying upstreams, end to end: the official openai SDK and raw HTTP against
Switchboard served on loopback, upstreams that ignore output limits and misreport usage.

Rates of the e2e presets: 1,000 micro-credits per prompt token and 2,000 per completion token (x multiplier)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import openai
import psycopg
import pytest
import requests

from tests.e2e.conftest import Gateway, balance, ledger_sum, log_row
from webapp.repos import credits as credits_repo

FLOOD = " ".join(f"w{i}" for i in range(3000))  # a reply far beyond anything a small balance pays for


def funded(make_user: Any, db: Any, micro: int) -> Any:
    user = make_user()
    with db.as_service() as conn:
        credits_repo.adjust(conn, user.id, micro, "hostile-money test", None)
    return user


def post(gw: Gateway, user: Any, body: dict[str, Any], **headers: str) -> requests.Response:
    return requests.post(gw.url + "/v1/chat/completions", json=body, timeout=30,
                         headers={**user.headers, **headers})


def reservation(db: Any, request_id: str) -> tuple[Any, ...]:
    with db.as_service() as conn:
        row = conn.execute("select amount, charged, status, shortfall from public.credit_reservations"
                           " where request_id = %s", [request_id]).fetchone()
    assert row is not None
    return tuple(row)


def assert_books_balance(db: Any, user_id: str) -> None:
    """balance >= 0, balance = sum(ledger), no reservation left open, every charge has exactly one receipt row
    with the same amount."""
    assert balance(db, user_id) >= 0
    assert balance(db, user_id) == ledger_sum(db, user_id)
    with db.as_service() as conn:
        open_ = conn.execute("select count(*) from public.credit_reservations where user_id = %s and"
                             " status = 'reserved'", [user_id]).fetchone()
        unmatched = conn.execute(
            """select r.request_id, r.charged, l.credits from public.credit_reservations r
               left join public.llm_request_logs l on l.request_id = r.request_id
               where r.user_id = %s and (l.request_id is null or l.credits <> r.charged)""", [user_id]).fetchall()
    assert open_ == (0,)
    assert unmatched == [], "a charge without its receipt (or a receipt that disagrees)"


def test_small_balance_default_limit_is_lowered_and_written_upstream(gw: Gateway, make_user: Any, db: Any) -> None:
    user = funded(make_user, db, 100_000)  # 0.1 credits
    resp = post(gw, user, {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.text
    limit = int(resp.headers["X-Switchboard-Output-Limit"])
    assert 16 <= limit < 100 and resp.headers["X-Switchboard-Output-Limit-Reason"] == "balance"
    sent = gw.oa1.chat_requests()[-1].body
    assert sent["max_tokens"] == sent["max_completion_tokens"] == limit
    assert balance(db, user.id) >= 0
    assert_books_balance(db, user.id)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["e2e-oa", "e2e-an"])
def test_upstream_ignoring_limits_cannot_take_more_than_the_balance(gw: Gateway, make_user: Any, db: Any,
                                                                    stream: bool, provider: str) -> None:
    """A member with 0.1 credits, an upstream that produces 3,000 tokens whatever the limit: the charge stops at the
    balance, the uncollected rest is a recorded shortfall on the ledger and the receipt, nothing goes below zero."""
    user = funded(make_user, db, 100_000)
    up = gw.oa1 if provider == "e2e-oa" else gw.an
    up.reply, up.ignore_limits = FLOOD, True
    client = gw.client(user.token)
    if stream:
        with client.chat.completions.with_streaming_response.create(
                model=f"{provider}/echo-1", messages=[{"role": "user", "content": "hi"}], stream=True,
                stream_options={"include_usage": True}) as raw:
            rid = raw.headers["x-request-id"]
            chunks = list(raw.parse())
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 3000
    else:
        raw = client.chat.completions.with_raw_response.create(
            model=f"{provider}/echo-1", messages=[{"role": "user", "content": "hi"}])
        rid = raw.headers["x-request-id"]
        assert raw.parse().usage.completion_tokens >= 3000
    gw.flush_logs()
    _amount, charged, status, shortfall = reservation(db, rid)
    assert status == "settled" and charged == 100_000 and shortfall > 5_000_000
    assert balance(db, user.id) == 0
    row = log_row(db, rid)
    assert row["credits"] == 100_000 and row["shortfall"] == shortfall and row["output_limit"] < 100
    with db.as_service() as conn:
        kinds = [k for (k,) in conn.execute("select kind from public.credit_ledger where request_id = %s order by id",
                                            [rid]).fetchall()]
    assert kinds[0] == "reserve" and kinds[-1] == "shortfall"
    assert_books_balance(db, user.id)


def test_explicit_max_tokens_beyond_balance_is_402_saying_what_fits_and_that_fits(gw: Gateway, make_user: Any,
                                                                                  db: Any) -> None:
    user = funded(make_user, db, 100_000)
    body = {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}
    resp = post(gw, user, body)
    assert resp.status_code == 402, resp.text
    fits = int(resp.headers["X-Switchboard-Max-Tokens-Fit"])
    assert fits >= 1 and f"max_tokens ≤ {fits}" in resp.json()["error"]["message"]
    assert balance(db, user.id) == 100_000  # nothing spent
    ok = post(gw, user, {**body, "max_tokens": fits})  # exactly what was said to fit
    assert ok.status_code == 200, ok.text
    assert "X-Switchboard-Output-Limit-Reason" not in ok.headers
    assert post(gw, user, {**body, "max_tokens": fits + 1}).status_code in (200, 402)
    assert_books_balance(db, user.id)


def test_not_even_a_short_answer_is_402(gw: Gateway, make_user: Any, db: Any) -> None:
    user = funded(make_user, db, 1_000)
    resp = post(gw, user, {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 402 and resp.json()["error"]["code"] == "insufficient_credits"
    assert gw.oa1.chat_requests() == []
    assert balance(db, user.id) == 1_000


def test_monthly_cap_lowers_the_limit(gw: Gateway, make_user: Any, db: Any) -> None:
    user = funded(make_user, db, 100_000_000)
    resp = requests.put(gw.url + "/api/user/settings", headers=user.headers, timeout=10,
                        json={"monthly_credit_cap": "0.1"})
    assert resp.status_code == 200, resp.text
    resp = post(gw, user, {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Switchboard-Output-Limit-Reason"] == "monthly_cap"
    assert int(resp.headers["X-Switchboard-Output-Limit"]) < 100


@pytest.mark.parametrize("lie", ["neg", "huge", "zero", "str", "float"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["e2e-oa", "e2e-an"])
def test_lying_usage_is_corrected_to_what_was_delivered(gw: Gateway, member: Any, db: Any, lie: str,
                                                        stream: bool, provider: str) -> None:
    (gw.oa1 if provider == "e2e-oa" else gw.an).usage_lie = lie
    before = balance(db, member.id)
    body: dict[str, Any] = {"model": f"{provider}/echo-1", "messages": [{"role": "user", "content": "hi"}],
                            "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    resp = post(gw, member, body)
    assert resp.status_code == 200, resp.text
    rid = resp.headers["X-Request-Id"]
    gw.flush_logs()
    row = log_row(db, rid)
    assert row["usage_source"] == "corrected"
    assert row["tokens_out"] == 10  # tiktoken's count of the nine delivered words
    assert before - balance(db, member.id) == row["credits"] == row["tokens_in"] * 1000 + 10 * 2000
    assert_books_balance(db, member.id)


def test_n_multiplies_the_reservation(gw: Gateway, member: Any) -> None:
    reserved = []
    for n in (1, 3):
        resp = post(gw, member, {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}],
                                 "max_tokens": 100, "n": n, "stream": True})
        assert resp.status_code == 200
        reserved.append(float(resp.headers["X-Switchboard-Credits-Reserved"]))
    # 100 tokens x 2,000 micro x 2 more choices, over the same prompt, on the pinned route (e2e-oa, 1x): a pin is
    # never served by another provider, so e2e-oa2 (1.5x) is not reserved for
    assert round((reserved[1] - reserved[0]) * 1_000_000) == 1 * 2 * 100 * 2000


def test_tools_and_schemas_count_in_the_prompt(gw: Gateway, member: Any) -> None:
    base = {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10,
            "stream": True}
    plain = post(gw, member, base)
    tools = [{"type": "function", "function": {"name": "lookup", "description": "x " * 400,
                                               "parameters": {"type": "object", "properties": {}}}}]
    with_tools = post(gw, member, {**base, "tools": tools, "tool_choice": "none"})
    assert plain.status_code == with_tools.status_code == 200
    extra = float(with_tools.headers["X-Switchboard-Credits-Reserved"]) - \
        float(plain.headers["X-Switchboard-Credits-Reserved"])
    assert extra * 1_000_000 >= 400 * 1000  # at least the description's 400 tokens at the prompt rate


def test_hostile_limit_fields_are_replaced_upstream(gw: Gateway, member: Any) -> None:
    resp = post(gw, member, {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": 10, "max_completion_tokens": 200_000, "max_output_tokens": 50_000,
                             "n_predict": -1, "num_predict": -1, "min_tokens": 4000, "max_new_tokens": 90_000,
                             "best_of": 20, "options": {"num_predict": -1}})
    assert resp.status_code == 200, resp.text
    sent = gw.oa1.chat_requests()[-1].body
    assert sent["max_tokens"] == sent["max_completion_tokens"] == 10
    for name in ("max_output_tokens", "n_predict", "num_predict", "min_tokens", "max_new_tokens", "best_of"):
        assert name not in sent
    assert sent["options"] == {}


@pytest.mark.parametrize("extra,param", [
    ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
])
def test_what_cannot_be_priced_is_refused_in_member_mode(gw: Gateway, member: Any, db: Any,
                                                         extra: dict[str, Any], param: str) -> None:
    before = balance(db, member.id)
    resp = post(gw, member, {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}], **extra})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "unpriceable_request" and resp.json()["error"]["param"] == param
    assert balance(db, member.id) == before and gw.oa1.chat_requests() == []


@pytest.mark.parametrize("model", ["e2e-oa/échø", "e2e-oa/a b", "e2e-oa/x\r\nX-Evil: 1", "\u202e", "a" * 201])
def test_model_names_that_cannot_travel_in_a_header_are_400_before_any_charge(gw: Gateway, member: Any, db: Any,
                                                                              model: str) -> None:
    before = balance(db, member.id)
    resp = post(gw, member, {"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
    assert balance(db, member.id) == before


def test_byok_cannot_ride_a_keyless_operator_engine(gw: Gateway, member: Any, db: Any,
                                                    database_urls: tuple[str, str]) -> None:
    """A local engine the operator runs without a key would answer any string as a BYOK key: refused unless the
    admin marks it free for BYOK; the user's own engine address is still fine."""
    slug = "e2e-keyless"
    with psycopg.connect(database_urls[0], autocommit=True) as conn:
        pid = conn.execute(
            """insert into public.llm_providers (slug, name, api_style, base_url, default_model, byok_allowed,
                   custom_base_url_allowed, sort_order) values (%s, 'Keyless', 'openai', %s, 'echo-1', true, true, 90)
               on conflict (slug) do update set free_for_byok = false returning id""",
            [slug, gw.byok.base_url.replace("127.0.0.1", "localhost")]).fetchone()[0]
    try:
        body = {"model": f"{slug}/echo-1", "messages": [{"role": "user", "content": "hi"}]}
        resp = post(gw, member, body, **{"X-BYOK-API-Key": "anything-at-all"})
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "byok_needs_own_engine"
        assert gw.byok.chat_requests() == []
        with psycopg.connect(database_urls[0], autocommit=True) as conn:
            conn.execute("update public.llm_providers set free_for_byok = true where id = %s", [pid])
        resp = post(gw, member, body, **{"X-BYOK-API-Key": "sk-canary-byok-user-0a9b8c7d6e5f"})
        assert resp.status_code == 200, resp.text
        assert resp.headers["X-Switchboard-Mode"] == "byok"
    finally:
        with psycopg.connect(database_urls[0], autocommit=True) as conn:
            conn.execute("delete from public.llm_providers where id = %s", [pid])


def test_concurrent_requests_on_a_small_balance_with_a_flooding_upstream(gw: Gateway, make_user: Any,
                                                                         db: Any) -> None:
    """24 requests at once (JSON and streams, default and explicit limits) from a member with 0.5 credits against
    an upstream that ignores every limit: no balance below zero, ledger = balance, every reservation closed, every
    charge with its one receipt."""
    user = funded(make_user, db, 500_000)
    gw.oa1.reply, gw.oa1.ignore_limits = " ".join(f"w{i}" for i in range(300)), True
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        body: dict[str, Any] = {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": f"hi {i}"}],
                                "stream": i % 2 == 0}
        if i % 3 == 0:
            body["max_tokens"] = 20
        resp = post(gw, user, body)
        _ = resp.content
        with lock:
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    gw.flush_logs()
    print(f"\n[money] 24 concurrent flooding requests on 0.5 credits: statuses {sorted(statuses)}; "
          f"balance after {balance(db, user.id)}")
    assert set(statuses) <= {200, 402, 429}
    assert 200 in statuses
    assert_books_balance(db, user.id)


def test_a_refused_receipt_row_does_not_drop_other_users_rows(gw: Gateway, member: Any, db: Any) -> None:
    """The batching writer meets a row whose user no longer exists: the other rows of its batch are written and
    the refused row is kept aside, not dropped after a minute of retries."""
    from webapp.repos.request_logs import RequestLog

    writer = gw.app.extensions["switchboard"].logs
    ghost, good = str(uuid.uuid4()), [str(uuid.uuid4()) for _ in range(3)]
    rows = [RequestLog(request_id=r, user_id=member.id, mode="byok", status=200) for r in good[:2]]
    rows.append(RequestLog(request_id=ghost, user_id=str(uuid.uuid4()), mode="byok", status=200))
    rows.append(RequestLog(request_id=good[2], user_id=member.id, mode="byok", status=200))
    for row in rows:
        writer.submit(row)
    writer.flush(20)
    for r in good:
        assert log_row(db, r)["user_id"] == member.id
    with db.as_service() as conn:
        kept = conn.execute("select reason from public.request_log_rejects where request_id = %s",
                            [ghost]).fetchone()
    assert kept is not None and "ForeignKeyViolation" in kept[0]


def test_openai_sdk_sees_the_limit_it_was_given(gw: Gateway, make_user: Any, db: Any) -> None:
    user = funded(make_user, db, 100_000)
    client = gw.client(user.token)
    raw = client.chat.completions.with_raw_response.create(
        model="e2e-an/echo-1", messages=[{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": "hi"}])
    limit = int(raw.headers["x-switchboard-output-limit"])
    assert gw.an.chat_requests()[-1].body["max_tokens"] == limit
    assert raw.parse().usage.completion_tokens <= limit
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="e2e-an/echo-1", messages=[{"role": "user", "content": "hi"}],
                                       max_tokens=100_000)
    assert err.value.status_code == 402


def test_shortfalls_show_in_admin_analytics(gw: Gateway, make_user: Any, db: Any) -> None:
    admin = make_user(admin=True)
    before = requests.get(gw.url + "/api/admin/usage", headers=admin.headers, timeout=10).json()["shortfalls"]
    user = funded(make_user, db, 100_000)
    gw.oa1.reply, gw.oa1.ignore_limits = FLOOD, True
    assert post(gw, user, {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": "hi"}]}).ok
    resp = requests.get(gw.url + "/api/admin/usage", headers=admin.headers, timeout=10)
    assert resp.status_code == 200, resp.text
    after = resp.json()["shortfalls"]
    assert after["requests"] == before["requests"] + 1
    assert after["uncollected_micro"] - before["uncollected_micro"] > 5_000_000
