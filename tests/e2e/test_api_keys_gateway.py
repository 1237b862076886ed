"""Personal API keys end to end: the official openai SDK with an `sb_...` key -> Switchboard on a loopback port ->
fake providers on loopback, real Postgres. Member and BYOK modes, the key's monthly cap under concurrency, its
allow-list (directly and through fallbacks), its mode, expiry and revocation (refused on the very next request),
and neither the key nor its hash in any response, log line or log row."""

from __future__ import annotations

import json
import threading
from typing import Any

import openai
import psycopg
import pytest
import requests

from tests.e2e.conftest import CANARY, Gateway, balance, log_row
from tests.support.upstreams import REPLY

MSG = [{"role": "user", "content": "say something nice"}]


def make_key(gw: Gateway, user: Any, **body: Any) -> tuple[str, dict[str, Any]]:
    body.setdefault("name", "e2e script")
    resp = requests.post(gw.url + "/api/user/api-keys", headers=user.headers, json=body, timeout=10)
    assert resp.status_code == 201, resp.text
    return resp.json()["secret"], resp.json()["api_key"]


def key_client(gw: Gateway, secret: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=secret, max_retries=0, timeout=30, **kwargs)


def test_member_mode_with_the_openai_sdk_charges_the_owner_and_logs_the_key(gw: Gateway, member: Any, db: Any,
                                                                            admin_conn: psycopg.Connection) -> None:
    secret, key = make_key(gw, member)
    before = balance(db, member.id)
    raw = key_client(gw, secret).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.parse().choices[0].message.content == REPLY
    assert raw.headers["x-switchboard-mode"] == "member"
    charged = before - balance(db, member.id)
    assert charged > 0 and raw.headers["x-switchboard-credits"] == f"{charged / 1e6:.6f}"
    row = log_row(db, raw.headers["x-request-id"])
    assert row["api_key_id"] == key["id"] and row["user_id"] == member.id
    # A stream too, and the models list.
    stream = key_client(gw, secret).chat.completions.create(model="echo-1", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == REPLY
    assert "e2e-oa/echo-1" in {m.id for m in key_client(gw, secret).models.list()}
    gw.flush_logs()
    # The key list counts this month's requests and credits; usage groups by key and filters by it.
    (listed,) = requests.get(gw.url + "/api/user/api-keys", headers=member.headers, timeout=10).json()["api_keys"]
    assert listed["month"]["requests"] == 2 and listed["month"]["credits_micro"] > 0
    assert listed["last_used_at"] is not None
    usage = requests.get(gw.url + "/api/user/llm/usage?group_by=api_key", headers=member.headers, timeout=10).json()
    (bucket,) = [b for b in usage["buckets"] if b["api_key"] == key["id"]]
    assert bucket["requests"] == 2 and bucket["api_key_name"] == "e2e script"
    only = requests.get(gw.url + f"/api/user/llm/usage?api_key={key['id']}", headers=member.headers,
                        timeout=10).json()
    assert {r["api_key_id"] for r in only["recent"]} == {key["id"]}
    # Neither the key nor its hash anywhere: responses, log lines, log rows.
    (stored,) = admin_conn.execute("select hash from public.api_keys where id = %s", [key["id"]]).fetchone()
    logged = gw.log_text.getvalue()
    rows = json.dumps(admin_conn.execute("select json_agg(l) from public.llm_request_logs l where user_id = %s",
                                         [member.id]).fetchone()[0])
    for text in (logged, rows, json.dumps(usage), json.dumps(listed)):
        assert secret not in text and secret[-43:] not in text and stored not in text


def test_x_api_key_header_is_accepted(gw: Gateway, member: Any) -> None:
    secret, _ = make_key(gw, member)
    resp = requests.post(gw.url + "/v1/chat/completions", headers={"X-Api-Key": secret}, timeout=10,
                         json={"model": "echo-1", "messages": MSG})
    assert resp.status_code == 200, resp.text


def test_byok_mode_key_uses_the_users_own_key_and_never_credits(settings: Any, gw: Gateway, member: Any,
                                                                db: Any) -> None:
    from tests.support.live import serve
    from webapp import create_app

    byok_secret, _ = make_key(gw, member, mode="byok")
    member_secret, _ = make_key(gw, member, mode="member")
    headers = {"X-BYOK-API-Key": CANARY["byok"], "X-BYOK-Provider": "e2e-oa", "X-BYOK-Base-URL": gw.byok.base_url}
    app = create_app(settings.with_overrides(byok_allow_private_urls=True))  # the fake BYOK upstream is loopback
    try:
        with serve(app) as url:
            before = balance(db, member.id)
            client = openai.OpenAI(base_url=url + "/v1", api_key=byok_secret, max_retries=0, default_headers=headers)
            raw = client.chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
            assert raw.parse().choices[0].message.content == REPLY
            assert raw.headers["x-switchboard-mode"] == "byok" and raw.headers["x-switchboard-credits"] == "0.000000"
            assert gw.byok.chat_requests()[-1].headers["authorization"] == f"Bearer {CANARY['byok']}"
            assert balance(db, member.id) == before
            client.close()
            # A member-only key cannot carry a BYOK key.
            with openai.OpenAI(base_url=url + "/v1", api_key=member_secret, max_retries=0,
                               default_headers=headers) as member_only, \
                    pytest.raises(openai.PermissionDeniedError) as err:
                member_only.chat.completions.create(model="echo-1", messages=MSG)
            assert err.value.body["code"] == "mode_not_allowed"
            app.extensions["switchboard"].logs.flush()
    finally:
        app.extensions["switchboard"].db.close()
    # Without a header, a BYOK-only key of a member-mode user with no stored key never falls back to credits.
    with pytest.raises(openai.BadRequestError) as err2:
        key_client(gw, byok_secret).chat.completions.create(model="echo-1", messages=MSG)
    assert err2.value.body["code"] == "byok_key_missing"
    assert balance(db, member.id) == before
    assert {m.id for m in key_client(gw, byok_secret).models.list()} == set()


def test_allow_list_direct_and_through_fallback(gw: Gateway, member: Any) -> None:
    secret, _ = make_key(gw, member, allow=["e2e-oa", "e2e-an/echo-1"])
    client = key_client(gw, secret)
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.chat.completions.create(model="e2e-oa2/echo-2", messages=MSG)
    assert err.value.status_code == 403 and err.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="e2e-an/echo-2", messages=MSG)  # e2e-an: echo-1 only
    assert gw.oa2.chat_requests() == [] and gw.an.chat_requests() == []
    # echo-1 is offered by e2e-oa, e2e-oa2 and e2e-an; oa1 fails, so the fallback skips oa2 (not allowed).
    gw.oa1.behaviour = "500"
    raw = client.chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    assert raw.headers["x-switchboard-provider"] == "e2e-an"
    assert raw.headers["x-switchboard-fallback"] == "e2e-oa:500 > e2e-an:ok"
    assert gw.oa2.chat_requests() == []
    ids = {m.id for m in client.models.list()}
    assert "e2e-an/echo-1" in ids and "e2e-oa/echo-1" in ids
    assert not any(i.startswith("e2e-oa2/") for i in ids) and "e2e-an/echo-2" not in ids


def test_key_cap_holds_under_concurrency(gw: Gateway, member: Any, db: Any) -> None:
    """12 requests at once on a key capped at 0.2 credits (the owner has 100): the key's reservations never pass
    its cap, and what does not fit is a 402 api_key_cap_reached."""
    cap = 200_000
    secret, key = make_key(gw, member, monthly_credit_cap="0.2")
    statuses: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        body: dict[str, Any] = {"model": "e2e-oa/echo-1", "messages": [{"role": "user", "content": f"hi {i}"}],
                                "max_tokens": 20, "stream": i % 2 == 0}
        resp = requests.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {secret}"},
                             json=body, timeout=30)
        _ = resp.content
        code = resp.json()["error"]["code"] if resp.status_code >= 400 else None
        with lock:
            statuses.append((resp.status_code, code))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.as_service() as conn:
        spent = conn.execute("select coalesce(sum(coalesce(charged, amount)), 0), count(*) filter (where status ="
                             " 'reserved') from public.credit_reservations where api_key_id = %s and status <> "
                             "'refunded'", [key["id"]]).fetchone()
    assert spent is not None and 0 < spent[0] <= cap and spent[1] == 0
    assert (200, None) in statuses
    assert (402, "api_key_cap_reached") in statuses
    assert {s for s, _ in statuses} <= {200, 402}
    # The owner's own balance was never the limit.
    assert balance(db, member.id) > 99_000_000


def test_revoke_is_refused_on_the_very_next_request(gw: Gateway, member: Any, make_user: Any) -> None:
    secret, key = make_key(gw, member)
    client = key_client(gw, secret)
    client.chat.completions.create(model="echo-1", messages=MSG)
    other = make_user()
    # Another user cannot revoke it...
    assert requests.delete(gw.url + f"/api/user/api-keys/{key['id']}", headers=other.headers,
                           timeout=10).status_code == 404
    client.chat.completions.create(model="echo-1", messages=MSG)
    # ...the owner can, and the next request is refused, in OpenAI's error shape.
    assert requests.delete(gw.url + f"/api/user/api-keys/{key['id']}", headers=member.headers,
                           timeout=10).status_code == 200
    with pytest.raises(openai.AuthenticationError) as err:
        client.chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.status_code == 401 and err.value.body["code"] == "api_key_revoked"
    resp = requests.get(gw.url + "/v1/models", headers={"Authorization": f"Bearer {secret}"}, timeout=10)
    assert resp.status_code == 401 and set(resp.json()["error"]) == {"message", "type", "param", "code"}


def test_expired_key_is_refused(gw: Gateway, member: Any, admin_conn: psycopg.Connection) -> None:
    secret, key = make_key(gw, member)
    key_client(gw, secret).models.list()
    admin_conn.execute("update public.api_keys set expires_at = now() where id = %s", [key["id"]])
    with pytest.raises(openai.AuthenticationError) as err:
        key_client(gw, secret).chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.body["code"] == "api_key_expired"


def test_unknown_key_is_refused(gw: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as err:
        key_client(gw, "sb_AAAAAAAAAAAA_" + "B" * 43).chat.completions.create(model="echo-1", messages=MSG)
    assert err.value.body["code"] == "invalid_api_key"


def test_a_key_costs_no_extra_round_trip(settings: Any, gw: Gateway, member: Any) -> None:
    """The key is resolved inside the statements a JWT request sends anyway: the same number of statements reach
    Postgres for a member request made with the user's token and with their personal API key."""
    from webapp import create_app

    secret, _ = make_key(gw, member)
    app = create_app(settings)
    client = app.test_client()
    me = threading.get_ident()
    waits = [0]
    original = psycopg.Connection.wait

    def counting(self: Any, *a: Any, **k: Any) -> Any:
        if threading.get_ident() == me:
            waits[0] += 1
        return original(self, *a, **k)

    def count(auth: str, path: str, body: Any = None) -> int:
        for _ in range(3):  # warm: pools, catalog, tiktoken
            client.open(path, method="POST" if body else "GET", json=body, headers={"Authorization": f"Bearer {auth}"})
        waits[0] = 0
        resp = client.open(path, method="POST" if body else "GET", json=body,
                           headers={"Authorization": f"Bearer {auth}"})
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return waits[0]

    body = {"model": "echo-1", "messages": MSG}
    psycopg.Connection.wait = counting  # type: ignore[method-assign]
    try:
        for path, payload in (("/v1/chat/completions", body), ("/v1/models", None), ("/api/user/settings", None),
                              ("/api/user/llm/usage", None)):
            by_key, by_token = count(secret, path, payload), count(member.token, path, payload)
            assert by_key == by_token, f"{path}: {by_key} statements with the key, {by_token} with the token"
    finally:
        psycopg.Connection.wait = original  # type: ignore[method-assign]
        app.extensions["switchboard"].logs.flush()
        app.extensions["switchboard"].db.close()


def test_admin_receipts_and_logs_name_the_key(gw: Gateway, member: Any, make_user: Any) -> None:
    secret, key = make_key(gw, member, name="receipt key")
    raw = key_client(gw, secret).chat.completions.with_raw_response.create(model="echo-1", messages=MSG)
    request_id = raw.headers["x-request-id"]
    admin = make_user(admin=True)
    receipt = requests.get(gw.url + f"/api/admin/logs/{request_id}", headers=admin.headers, timeout=10).json()["log"]
    assert receipt["api_key"] == {"id": key["id"], "name": "receipt key", "prefix": key["prefix"]}
    page = requests.get(gw.url + f"/api/admin/logs?api_key={key['id']}", headers=admin.headers, timeout=10).json()
    assert [e["request_id"] for e in page["logs"]] == [request_id]
    assert secret not in json.dumps(page) and secret not in json.dumps(receipt)
    # With the admin's own personal key, the admin routes stay closed.
    admin_secret, _ = make_key(gw, admin)
    resp = requests.get(gw.url + f"/api/admin/logs/{request_id}", headers={"Authorization": f"Bearer {admin_secret}"},
                        timeout=10)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "api_key_forbidden"


def test_the_user_guide_snippet_runs_as_written(gw: Gateway, member: Any) -> None:
    """The Python snippet of the user guide's "API keys" section, extracted and run in a fresh interpreter."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "docs" / "user-guide.md").read_text()
    section = guide.split("## API keys", 1)[1].split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, re.S)
    secret, _ = make_key(gw, member)
    env = {**os.environ, "SWITCHBOARD_URL": gw.url, "SWITCHBOARD_API_KEY": secret, "SWITCHBOARD_MODEL": "echo-1"}
    done = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == REPLY


def test_the_readme_snippet_runs_as_written(gw: Gateway, member: Any) -> None:
    """The README's "server or script" snippet, read from the README and run in a fresh interpreter."""
    import os
    import subprocess
    import sys

    from tests.support.readme import snippet

    secret, _ = make_key(gw, member)
    env = {**os.environ, "SWITCHBOARD_URL": gw.url, "SWITCHBOARD_API_KEY": secret, "SWITCHBOARD_MODEL": "echo-1"}
    done = subprocess.run([sys.executable, "-c", snippet("python-api-key")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == REPLY
